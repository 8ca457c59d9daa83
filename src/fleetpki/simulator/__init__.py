"""The fleet simulator: many virtual devices, one simulated clock, the real server.

Each virtual device runs the agent's own sans-I/O flow (agent/flow.py); its requests reach
the real EST front end, RA, CA signing and store in-process through a virtual network that
models connectivity windows and CA outages. docs/fleet-renewal.md describes the reference
scenario and what it shows.
"""
