"""The RA's secret derivation key (ra/shared_secrets.py): 32 random bytes, made once, kept
encrypted at rest with the CA key passphrase.

It is stored as the seed of an Ed25519 key in an encrypted PKCS#8 file, so that it is written,
encrypted, backed up and read exactly like the CA keys beside it; nothing ever signs with it.
The first process to need it makes it: it is linked into place only if no other process got
there first, and whichever file won is what every process then reads.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from fleetpki.ca.keyfiles import encrypt_key, load_key_bytes
from fleetpki.core.errors import KeyAccessError

FILE_NAME = "secret-derivation-key.pem"


def derivation_key(path: Path, passphrase: bytes) -> bytes:
    if not path.exists():
        _create(path, passphrase)
    key = load_key_bytes(path.read_bytes(), passphrase, source=str(path))
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyAccessError(f"{path} is not a secret derivation key")
    return key.private_bytes_raw()


def _create(path: Path, passphrase: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(encrypt_key(ed25519.Ed25519PrivateKey.generate(), passphrase))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
