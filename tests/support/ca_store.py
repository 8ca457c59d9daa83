"""A store holding a fresh root and issuing CA (P-256), for RA tests on a fake clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from fleetpki.ca.ceremony import ca_name, create_issuing, create_root
from fleetpki.ca.signer import Signer
from fleetpki.core.keys import KeySpec
from fleetpki.core.records import CARecord, CARole
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.store import SqlStore


class OneSigner:
    """A SignerSource with a single CA in it."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def signer(self, ca_name: str) -> Signer:
        assert ca_name == self._signer.name
        return self._signer


def store_with_cas(directory: Path, now: dt.datetime) -> tuple[SqlStore, Signer]:
    """SQLite store in `directory` with CAs 'root' and 'issuing'; returns the issuing signer."""
    root = create_root("root", ca_name("Root", "T"), KeySpec.parse("ec-p256"), now=now)
    issuing = create_issuing("issuing", ca_name("Issuing", "T"), KeySpec.parse("ec-p256"), root,
                             now=now)
    store = SqlStore(f"sqlite:///{directory / 'store.db'}")
    for signer, role, parent in ((root, CARole.root, None), (issuing, CARole.issuing, "root")):
        store.add_ca(CARecord(signer.name, role, signer.certificate.public_bytes(
            serialization.Encoding.DER), parent, "k", now),
            AuditEvent("t", "ca.created", signer.name), at=now)
    return store, issuing
