"""Certificates and CRLs a device asks for by issuer and serial (SCEP GetCert and GetCRL,
RFC 8894 §3.3.4 and §3.3.5).

GetCert returns a certificate to the device it names: the requester signs with a certificate
of ours for the same device (the one asked for, or another of its certificates). Anyone else
is refused, so that the fleet's device names cannot be read serial by serial. GetCRL returns
the CRL the certificate points at, as published (the RA never signs one here).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Protocol

from cryptography import x509

from fleetpki.core.errors import NotAuthorized, NotFound
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.serials import serial_hex
from fleetpki.store.api import CAReader, CertificateReader


class RetrievalStore(CertificateReader, CAReader, Protocol):
    pass


# The published CRL at a URL path of ours (e.g. "/crl/issuing.crl"), or None.
PublishedCrl = Callable[[str], bytes | None]


class CertificateRetrieval:
    def __init__(self, store: RetrievalStore, identify: Callable[[bytes], IssuedCertificate],
                 published_crl: PublishedCrl) -> None:
        """`identify`: the stored certificate for DER bytes a requester signed with
        (NotAuthorized if it is not one of ours)."""
        self._store = store
        self._identify = identify
        self._published_crl = published_crl

    def certificate(self, issuer: bytes, serial: int, requester: bytes) -> IssuedCertificate:
        record = self._find(issuer, serial)
        holder = self._identify(requester)
        if holder.device_id != record.device_id:
            raise NotAuthorized(f"certificate {serial_hex(serial)} belongs to another device: "
                                "sign GetCert with a certificate of the device it names")
        return record

    def crl(self, issuer: bytes, serial: int) -> bytes:
        record = self._find(issuer, serial)
        certificate = x509.load_der_x509_certificate(record.der)
        try:
            points = certificate.extensions.get_extension_for_class(
                x509.CRLDistributionPoints).value
        except x509.ExtensionNotFound:
            raise NotFound(f"certificate {serial_hex(serial)} names no CRL (its profile "
                           f"'{record.profile}' issues short-lived certificates)") from None
        for point in points:
            for name in point.full_name or ():
                if isinstance(name, x509.UniformResourceIdentifier):
                    published = self._published_crl(urllib.parse.urlsplit(name.value).path)
                    if published is not None:
                        return published
        raise NotFound(f"the CRL of certificate {serial_hex(serial)} is not published yet: "
                       "run `fleetpki crl publish`")

    def _find(self, issuer: bytes, serial: int) -> IssuedCertificate:
        for ca in self._store.list_cas():
            subject = x509.load_der_x509_certificate(ca.certificate_der).subject.public_bytes()
            if subject == issuer:
                record = self._store.get_certificate(serial, ca.name)
                if record is not None:
                    return record
        raise NotFound(f"no certificate {serial_hex(serial)} from that issuer")
