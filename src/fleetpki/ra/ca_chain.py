"""A CA's certificate chain as the store knows it: the CA, then its parents up to the root."""

from __future__ import annotations

from cryptography import x509

from fleetpki.core.errors import ConfigError, NotFound
from fleetpki.store.api import CAReader

_MAX_DEPTH = 8


def issuer_chain(cas: CAReader, issuer: str) -> list[x509.Certificate]:
    """Nearest first. What devices get with /cacerts and what verifiers need to build a path."""
    chain: list[x509.Certificate] = []
    name: str | None = issuer
    while name is not None:
        record = cas.get_ca(name)
        if record is None:
            raise NotFound(f"no CA named '{name}'")
        chain.append(x509.load_der_x509_certificate(record.certificate_der))
        name = record.parent
        if len(chain) > _MAX_DEPTH:
            raise ConfigError(f"CA hierarchy deeper than {_MAX_DEPTH} levels: the parent links "
                              "loop")
    return chain
