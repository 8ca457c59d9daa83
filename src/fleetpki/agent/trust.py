"""Which CA certificates a device trusts, and the one way a new root gets in.

A device is provisioned with its roots and the SHA-256 fingerprints of the future roots its
operator planned (a root rollover pinned in advance). A root offered later by the server
(EST /cacerts) is added only if its fingerprint is pinned: a compromised or impersonated
enrollment server cannot make the device trust a root of its choosing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER, lower-case hex (what `openssl x509 -fingerprint -sha256` shows,
    without the colons)."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def normalise_pin(text: str) -> str:
    """Accepts 'AB:CD:…', 'abcd…' or 'sha256:abcd…'; raises ValueError for anything else."""
    value = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"'{text[:80]}' is not a SHA-256 fingerprint (64 hex digits)")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class RootOffer:
    added: tuple[x509.Certificate, ...]
    refused: tuple[str, ...]  # fingerprints of roots offered but not pinned


def is_self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def offered_roots(offered: Sequence[x509.Certificate], trusted: Iterable[str],
                  pinned: Iterable[str]) -> RootOffer:
    """Sort the self-signed certificates of a /cacerts answer into the roots to add (new and
    pinned) and those refused (new and not pinned). Intermediates are not roots: the device
    keeps them only as path-building hints, never as anchors."""
    known = set(trusted)
    pins = set(pinned)
    added: list[x509.Certificate] = []
    refused: list[str] = []
    for certificate in offered:
        digest = fingerprint(certificate)
        if digest in known or not is_self_signed(certificate):
            continue
        if digest in pins:
            added.append(certificate)
            known.add(digest)
        else:
            refused.append(digest)
    return RootOffer(tuple(added), tuple(refused))
