"""ACME challenge validation (RFC 8555 §8): one module per challenge type."""
