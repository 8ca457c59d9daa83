"""CA lifecycle as an operator runs it: create, import, take a key offline, bring it back,
revoke an issuing CA and sign the root's CRL. Every step is audited.

The root key is meant to live offline: `take_offline` exports it encrypted under a separate
passphrase (checked by decrypting the export) and only then deletes the online copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from fleetpki.ca import ceremony
from fleetpki.ca.crl_signing import CrlFields, sign_crl
from fleetpki.ca.file_signers import FileSignerSource
from fleetpki.ca.keyfiles import encrypt_key, load_key_bytes, write_key_file, write_private_file
from fleetpki.ca.signer import Signer
from fleetpki.core.clock import Clock
from fleetpki.core.errors import BadInput, Conflict, KeyAccessError, NotFound
from fleetpki.core.keys import KeySpec
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CARecord, CARole, RevokedEntry
from fleetpki.store.api import AuditEvent, CARegistry, CARevocationWriter

ROOT_CRL_VALIDITY = dt.timedelta(days=365)
log = logging.getLogger(__name__)


class CAAdmin:
    def __init__(self, registry: CARegistry, revocations: CARevocationWriter,
                 signers: FileSignerSource, key_directory: Path,
                 passphrase: Callable[[], bytes], clock: Clock, actor: str) -> None:
        self._registry = registry
        self._revocations = revocations
        self._signers = signers
        self._keys = key_directory
        self._passphrase = passphrase
        self._clock = clock
        self._actor = actor

    def create_root(self, name: str, subject: x509.Name, spec: KeySpec) -> Signer:
        self._refuse_existing(name)
        signer = ceremony.create_root(name, subject, spec, now=self._clock.now())
        self._persist(signer, CARole.root, parent=None, imported=False)
        return signer

    def create_issuing(self, name: str, subject: x509.Name, spec: KeySpec, parent: str
                       ) -> Signer:
        self._refuse_existing(name)
        parent_record = self._record(parent)
        if parent_record.revoked_at is not None:
            raise Conflict(f"CA '{parent}' is revoked and cannot sign a new CA")
        signer = ceremony.create_issuing(name, subject, spec, self._signers.signer(parent),
                                         now=self._clock.now())
        self._persist(signer, CARole.issuing, parent=parent, imported=False)
        return signer

    def import_issuing(self, name: str, certificate_pem: bytes, key_data: bytes,
                       key_passphrase: bytes | None) -> Signer:
        self._refuse_existing(name)
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError:
            try:
                certificate = x509.load_der_x509_certificate(certificate_pem)
            except ValueError:
                raise BadInput("the CA certificate file is neither PEM nor DER") from None
        der = certificate.public_bytes(serialization.Encoding.DER)
        for known in self._registry.list_cas():
            if known.certificate_der == der:
                raise Conflict(f"this certificate is already CA '{known.name}'; one CA, one name")
        key = load_key_bytes(key_data, key_passphrase, source="imported key")
        signer = ceremony.check_importable_ca(name, certificate, key, now=self._clock.now())
        parent = self._known_parent(certificate)
        self._persist(signer, CARole.issuing, parent=parent, imported=True)
        return signer

    def take_offline(self, name: str, export_to: Path, export_passphrase: bytes) -> None:
        record = self._record(name)
        if record.key_file is None:
            raise Conflict(f"the key of CA '{name}' is already offline")
        signer = self._signers.signer(name)
        exported = encrypt_key(signer.private_key, export_passphrase)
        # Prove the export opens with its passphrase before deleting the only online copy.
        if load_key_bytes(exported, export_passphrase, source=str(export_to)).public_key() \
                != signer.private_key.public_key():
            raise KeyAccessError("the exported key does not verify; the online key was kept")
        write_private_file(export_to, exported, make_parents=False)
        self._registry.set_ca_key_file(name, None, self._event("ca.key_offline", name, {
            "exported_to": str(export_to)}), at=self._clock.now())
        with contextlib.suppress(FileNotFoundError):
            (self._keys / record.key_file).unlink()
        self._signers.forget(name)

    def restore_key(self, name: str, source: Path, export_passphrase: bytes) -> None:
        record = self._record(name)
        if record.key_file is not None:
            raise Conflict(f"the key of CA '{name}' is already online")
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {source}: {exc.strerror}") from None
        key = load_key_bytes(data, export_passphrase, source=str(source))
        certificate = x509.load_der_x509_certificate(record.certificate_der)
        if certificate.public_key() != key.public_key():
            raise BadInput(f"{source} holds a different key than CA '{name}'")
        path = self._key_path(name)
        write_key_file(path, key, self._passphrase())
        self._registry.set_ca_key_file(name, path.name, self._event("ca.key_online", name, {}),
                                       at=self._clock.now())

    def revoke_issuing(self, name: str, reason: RevocationReason) -> None:
        record = self._record(name)
        if record.role is not CARole.issuing:
            raise Conflict("only issuing CAs are revoked this way; a root is retired by "
                           "removing it from every trust store")
        self._revocations.revoke_ca(name, reason, at=self._clock.now(),
                                    event=self._event("ca.revoked", name,
                                                      {"reason": reason.value}))

    def sign_root_crl(self, root: str) -> x509.CertificateRevocationList:
        """The CRL of a root covers the issuing CAs it signed (RFC 5280 §5)."""
        record = self._record(root)
        if record.role is not CARole.root:
            raise Conflict(f"CA '{root}' is not a root")
        signer = self._signers.signer(root)
        entries = [
            # RFC 5280 §5.3.1: no reasonCode rather than 'unspecified'.
            RevokedEntry(x509.load_der_x509_certificate(c.certificate_der).serial_number,
                         c.revoked_at,
                         None if c.revocation_reason is RevocationReason.unspecified
                         else c.revocation_reason)
            for c in self._registry.list_cas()
            if c.parent == root and c.revoked_at is not None
        ]
        now = self._clock.now()
        number = self._registry.next_crl_number(root)
        crl = x509.load_der_x509_crl(sign_crl(signer, CrlFields(
            number=number, this_update=now, next_update=now + ROOT_CRL_VALIDITY), entries))
        self._registry.audit([self._event("ca.crl_signed", root, {
            "revoked": str(len(entries)), "crl_number": str(number)})], at=now)
        return crl

    def _persist(self, signer: Signer, role: CARole, *, parent: str | None, imported: bool
                 ) -> None:
        path = self._key_path(signer.name)
        write_key_file(path, signer.private_key, self._passphrase())
        now = self._clock.now()
        record = CARecord(
            name=signer.name, role=role,
            certificate_der=signer.certificate.public_bytes(serialization.Encoding.DER),
            parent=parent, key_file=path.name, created_at=now, imported=imported)
        try:
            self._registry.add_ca(record, self._event(
                "ca.imported" if imported else "ca.created", signer.name, {
                    "role": role.value, "parent": parent or "",
                    "subject": signer.certificate.subject.rfc4514_string(),
                    "not_after": signer.certificate.not_valid_after_utc.isoformat()}), at=now)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def _known_parent(self, certificate: x509.Certificate) -> str | None:
        for record in self._registry.list_cas():
            candidate = x509.load_der_x509_certificate(record.certificate_der)
            if candidate.subject == certificate.issuer:
                try:
                    certificate.verify_directly_issued_by(candidate)
                    return record.name
                except (ValueError, TypeError, InvalidSignature):
                    continue
        return None

    def _record(self, name: str) -> CARecord:
        record = self._registry.get_ca(name)
        if record is None:
            known = ", ".join(r.name for r in self._registry.list_cas()) or "none"
            raise NotFound(f"no CA named '{name}' (CAs: {known})")
        return record

    def _refuse_existing(self, name: str) -> None:
        if self._registry.get_ca(name) is not None:
            raise Conflict(f"a CA named '{name}' already exists")
        check_ca_name(name)

    def _key_path(self, name: str) -> Path:
        return self._keys / f"{name}.key.pem"

    def _event(self, action: str, subject: str, details: dict[str, str]) -> AuditEvent:
        log.info(action.replace(".", " ").replace("_", " "),
                 extra={"actor": self._actor, "ca": subject, **details})
        return AuditEvent(actor=self._actor, action=action, subject=subject, details=details)


def check_ca_name(name: str, *, option: str | None = None) -> None:
    """CA names become key file names: letters, digits, '-' and '_', nothing a path could
    use to leave the key directory."""
    if not name or not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
        prefix = f"{option}: " if option else ""
        raise BadInput(f"{prefix}CA names are letters, digits, '-' and '_' (at most 64)")
