"""Device-facing enrollment front ends, one folder per protocol (EST, later SCEP, CMP, ACME).

Each speaks to the RA through its API only; the codecs are pure and shared with the agent.
"""
