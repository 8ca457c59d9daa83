"""Revocation: the OCSP responder (and, next to it, the CRL publishing job).

Reads certificate status through the narrow, read-only Protocols it declares itself, and signs
with delegated responder keys handed to it; it never writes to the store (DESIGN.md §1).
"""
