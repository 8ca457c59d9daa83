"""Output files of a manufacturing run, written only after the store has committed.

CSR runs write `<device>.pem` (the certificate, then the issuing chain unless told otherwise).
Factory key generation writes the key first as `<device>.key.pending` (mode 0600, encrypted when
a bundle passphrase is set) and, once the certificate is committed, either `<device>.key` +
`<device>.pem` or one `<device>.p12`. Every file is written to a temporary name and renamed, so a
crash leaves whole files or none.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from fleetpki.ca.keyfiles import failures_naming, load_key_bytes

_PEM = serialization.Encoding.PEM


class BundleFormat(enum.Enum):
    pem = "pem"
    p12 = "p12"


@dataclasses.dataclass(frozen=True)
class BundleWriter:
    """Writes the run's output files. Frozen; the chain PEM is computed once per process."""

    directory: Path
    chain: tuple[x509.Certificate, ...]  # issuing CAs, nearest first, root excluded
    format: BundleFormat = BundleFormat.pem
    passphrase: bytes | None = dataclasses.field(default=None, repr=False)
    include_chain: bool = True

    def certificate_path(self, device_id: str) -> Path:
        suffix = ".p12" if self.format is BundleFormat.p12 else ".pem"
        return self.directory / f"{device_id}{suffix}"

    def pending_key_path(self, device_id: str) -> Path:
        return self.directory / f"{device_id}.key.pending"

    @functools.cached_property
    def _chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(_PEM) for c in self.chain) if self.include_chain else b""

    def write_certificate(self, device_id: str, der: bytes) -> None:
        """CSR runs: the certificate (and chain) for a device whose key the device holds."""
        body = ssl.DER_cert_to_PEM_cert(der).encode("ascii") + self._chain_pem
        _atomic_write(self.certificate_path(device_id), body, 0o644)

    def write_pending_key(self, device_id: str, key: PrivateKeyTypes) -> None:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self.passphrase) if self.passphrase
            else serialization.NoEncryption())
        data = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, encryption)
        _atomic_write(self.pending_key_path(device_id), data, 0o600)

    def has_pending_key(self, device_id: str) -> bool:
        return self.pending_key_path(device_id).exists()

    def finish(self, device_id: str, certificate: x509.Certificate) -> None:
        pending = self.pending_key_path(device_id)
        if self.format is BundleFormat.pem:
            self.write_certificate(device_id, certificate.public_bytes(serialization.Encoding.DER))
            pending.replace(self.directory / f"{device_id}.key")
            return
        key = load_key_bytes(pending.read_bytes(), self.passphrase, source=str(pending))
        encryption = (serialization.BestAvailableEncryption(self.passphrase) if self.passphrase
                      else serialization.NoEncryption())
        bundle = pkcs12.serialize_key_and_certificates(
            device_id.encode("utf-8"), key, certificate,
            list(self.chain) if self.include_chain else None, encryption)
        _atomic_write(self.certificate_path(device_id), bundle, 0o600)
        pending.unlink()


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Whole file or none, and a failure (a full disk) names `path` and leaves no temporary
    file behind. Not keyfiles.write_atomically: no fsync, since a run writes a file per device
    and a crash is repaired by the next run, which rewrites what is missing from the store;
    and a temporary name without a PID, so that the rerun overwrites what a killed worker
    left (a pending key's temporary file holds a private key)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with failures_naming(path, temporary=tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
