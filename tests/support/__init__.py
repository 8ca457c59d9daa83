"""Test-support helpers shared by the fleetpki test suite (PostgreSQL server, linters)."""
