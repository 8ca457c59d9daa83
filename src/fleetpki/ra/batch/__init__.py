"""Manufacturing runs: many devices, one profile, every core busy, safe to re-run after a crash."""
