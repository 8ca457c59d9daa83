"""The device side: an agent that enrolls, renews and keeps a working identity on disk.

It imports only `core` and the protocol codecs (DESIGN.md §1), so the device and the server
speak through the same code, and it installs without the server's dependencies. The flow is
sans-I/O (flow.py): the real HTTPS transport on a device and the fleet simulator's virtual
transport drive the same decisions.
"""
