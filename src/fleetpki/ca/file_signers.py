"""Signers whose keys are encrypted PKCS#8 files on local disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from fleetpki.ca.keyfiles import load_key_file
from fleetpki.ca.signer import Signer
from fleetpki.core.errors import BadInput, KeyAccessError, NotFound


class CAKeyLocation:
    """Where a CA's certificate and key are: what the store tells the signer source."""

    def __init__(self, name: str, certificate_der: bytes, key_file: str | None) -> None:
        self.name, self.certificate_der, self.key_file = name, certificate_der, key_file


class FileSignerSource:
    """Decrypts each CA key once per process and keeps the signer for reuse."""

    def __init__(self, locate: Callable[[str], CAKeyLocation | None], key_directory: Path,
                 passphrase: Callable[[], bytes]) -> None:
        """Key file names from the store are relative to `key_directory`, so a data directory
        can be moved or restored elsewhere."""
        self._locate = locate
        self._key_directory = key_directory
        self._passphrase = passphrase
        self._cache: dict[str, Signer] = {}

    def signer(self, ca_name: str) -> Signer:
        cached = self._cache.get(ca_name)
        if cached is not None:
            return cached
        location = self._locate(ca_name)
        if location is None:
            raise NotFound(f"no CA named '{ca_name}'")
        if location.key_file is None:
            raise KeyAccessError(f"the key of CA '{ca_name}' is kept offline; bring it back "
                                 f"with `fleetpki ca restore-key {ca_name} --from FILE`")
        key = load_key_file(self._key_directory / location.key_file, self._passphrase())
        certificate = x509.load_der_x509_certificate(location.certificate_der)
        if certificate.public_key() != key.public_key():
            raise BadInput(f"key file {location.key_file} does not belong to CA '{ca_name}'")
        signer = Signer(name=ca_name, certificate=certificate, private_key=key)
        self._cache[ca_name] = signer
        return signer

    def forget(self, ca_name: str) -> None:
        self._cache.pop(ca_name, None)
