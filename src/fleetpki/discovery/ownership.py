"""Which discovered certificates fleetpki issued.

A certificate is ours when its issuer name is the subject of one of our CA certificates AND
its signature verifies with that CA's public key. The name alone proves nothing: anyone can
make a certificate that names our CA as its issuer. The signature alone is not checked across
every CA either: RFC 5280 §6.1.3 (a)(4) chains by name, so a name match picks the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from fleetpki.core.records import CARecord


class OurCAs:
    """Our CA certificates, by subject; each one is parsed once per scan, not per finding."""

    def __init__(self, cas: Iterable[tuple[str, bytes]]) -> None:
        self._by_subject: dict[x509.Name, list[tuple[str, x509.Certificate]]] = {}
        self._ders: set[bytes] = set()
        for name, der in cas:
            certificate = x509.load_der_x509_certificate(der)
            self._by_subject.setdefault(certificate.subject, []).append((name, certificate))
            self._ders.add(der)

    @classmethod
    def of(cls, records: Iterable[CARecord]) -> OurCAs:
        """From the store's CA records, revoked ones included: a certificate a revoked CA
        signed is still ours to report."""
        return cls((r.name, r.certificate_der) for r in records)

    def issuer_of(self, certificate: x509.Certificate) -> str | None:
        """The name of our CA that signed `certificate`, or None if none of ours did."""
        for name, ca in self._by_subject.get(certificate.issuer, ()):
            try:
                certificate.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                # ValueError: an algorithm cryptography cannot verify (e.g. RSA-PSS with
                # odd parameters); TypeError: a key type that cannot sign. Not ours either way.
                continue
            return name
        return None

    def is_our_ca(self, der: bytes) -> bool:
        """Whether `der` is one of our CA certificates itself (served as part of a chain)."""
        return der in self._ders
