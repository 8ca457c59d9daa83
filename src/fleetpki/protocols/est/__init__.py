"""Enrollment over Secure Transport (RFC 7030, updated by RFC 8951).

codec.py turns EST bodies into bytes and certificates and back; csrattrs.py encodes the CSR
Attributes response (RFC 7030 §4.5.2). Both are pure: no HTTP, no I/O, usable on a device.
"""
