"""Discovery scans: find the certificates TLS endpoints serve, and say whose they are.

targets.py turns what an operator typed into endpoints; scanner.py fetches each endpoint's
chain (network I/O, nothing verified); chain.py describes what came back and ownership.py
tells our certificates from everyone else's; report.py says what expires or breaks policy.
The CLI composes them with the store (`fleetpki discover`, docs/operations.md).
"""
