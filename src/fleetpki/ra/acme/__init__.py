"""The RA's ACME service: accounts, orders, authorizations, finalization (RFC 8555)."""
