"""ACME (RFC 8555) front end, with renewal information (RFC 9773)."""
