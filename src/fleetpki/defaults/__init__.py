"""Files `fleetpki init` writes into a new data directory."""
