"""CA keys at rest: encrypted PKCS#8 files, mode 0600, written atomically.

The passphrase never comes from a command-line argument (visible in `ps`): callers get it from an
environment variable or a file (see config.PassphraseSource).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)

from fleetpki.core.errors import BadInput, KeyAccessError

MIN_PASSPHRASE_BYTES = 12


def encrypt_key(key: PrivateKeyTypes, passphrase: bytes) -> bytes:
    if len(passphrase) < MIN_PASSPHRASE_BYTES:
        raise KeyAccessError(f"key passphrase must be at least {MIN_PASSPHRASE_BYTES} bytes")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def write_private_file(path: Path, data: bytes, *, make_parents: bool = True) -> None:
    """Write data readable by the owner only, atomically: a crash leaves the old file or none."""
    write_atomically(path, data, mode=0o600, make_parents=make_parents)


def write_atomically(path: Path, data: bytes, *, mode: int, make_parents: bool = True) -> None:
    """Readers (a web server, a CDN sync) see the old file or the new one, never a torn one;
    after a crash the file is the old or the new, fsynced with its directory entry.

    `make_parents=False` for places the user names (an export medium, a secrets file): a
    missing directory there is an unmounted stick or a typo, and creating it would put the
    file somewhere nobody meant."""
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise BadInput(f"directory {path.parent} does not exist: mount the medium or create "
                       f"the directory first (nothing was written)")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with failures_naming(path, temporary=tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)


@contextlib.contextmanager
def failures_naming(path: Path, *, temporary: Path | None = None) -> Iterator[None]:
    """An OSError inside names `path`, the file the caller set out to write. A write() or
    fsync() that fails (ENOSPC on a full disk, EIO) carries no file name, and the name of a
    temporary file (or of anything in a temporary directory) means nothing to whoever asked
    for `path`: either would leave the person guessing which file and which disk. An error
    naming some other file (one being read) is left as it is. The errno, and so the OSError
    subclass, is kept."""
    try:
        yield
    except OSError as exc:
        named = None if exc.filename is None else str(exc.filename)
        if named is not None and not _within(named, temporary):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _within(named: str, temporary: Path | None) -> bool:
    return temporary is not None and (named == str(temporary)
                                      or named.startswith(f"{temporary}{os.sep}"))


def write_key_file(path: Path, key: PrivateKeyTypes, passphrase: bytes) -> None:
    write_private_file(path, encrypt_key(key, passphrase))


def load_key_file(path: Path, passphrase: bytes) -> CertificateIssuerPrivateKeyTypes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyAccessError(f"CA key file {path} does not exist (is the key kept offline? "
                             "see `fleetpki ca restore-key`)") from None
    except PermissionError:
        raise KeyAccessError(f"cannot read CA key file {path}: permission denied") from None
    return load_key_bytes(data, passphrase, source=str(path))


def load_key_bytes(data: bytes, passphrase: bytes | None, *, source: str
                   ) -> CertificateIssuerPrivateKeyTypes:
    if not data.strip():
        # Without this, decryption fails on nothing and the message blames the passphrase:
        # the operator would hunt for the right passphrase of a file truncated by a full disk
        # or a botched copy.
        found = "0 bytes" if not data else f"{len(data)} bytes of blank space"
        raise KeyAccessError(f"{source} is empty ({found}): there is no key in it")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, passphrase)
        else:
            key = serialization.load_der_private_key(data, passphrase)
    except TypeError as exc:
        if "not encrypted" in str(exc):
            raise KeyAccessError(f"{source}: key is not encrypted but a passphrase was given"
                                 ) from None
        raise KeyAccessError(f"{source}: key is encrypted; set the passphrase") from None
    except ValueError:
        raise KeyAccessError(f"{source}: cannot decrypt the key: wrong passphrase, or not a "
                             "private key file") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                      | ed25519.Ed25519PrivateKey):
        raise BadInput(f"{source}: {type(key).__name__} cannot sign certificates here")
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
