"""Conditional GETs for what the revocation endpoints serve (CRLs and OCSP answers)."""

from __future__ import annotations


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110 §13.1.2: If-None-Match is '*' or a list of entity tags, compared weakly."""
    candidates = [tag.strip() for tag in if_none_match.split(b",")]
    return any(tag == b"*" or tag.removeprefix(b"W/") == etag for tag in candidates)
