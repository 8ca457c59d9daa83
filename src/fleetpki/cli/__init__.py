"""The `fleetpki` command: thin, everything real happens behind wiring."""
