"""Pure domain: no I/O beyond what callers hand in, no knowledge of storage or protocols."""
