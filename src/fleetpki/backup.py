"""Consistent backups of a running fleetpki, and restoring them into a new data directory.

An archive holds the database (SQLite: a snapshot taken with SQLite's online backup API, so
writers keep going; PostgreSQL: `pg_dump --format=custom`), the encrypted CA key files, the
settings and profiles, and a manifest with a SHA-256 of each file. It never holds the key
passphrase: keys and passphrase travel separately, or the encryption protects nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from pathlib import Path

from fleetpki import __version__
from fleetpki.ca.keyfiles import failures_naming
from fleetpki.config import SETTINGS_FILE, Settings
from fleetpki.core.errors import BadInput, Conflict, StoreError

MANIFEST = "manifest.json"
SQLITE_SNAPSHOT = "fleetpki.db"
PG_DUMP = "fleetpki.pgdump"


@dataclasses.dataclass(frozen=True, slots=True)
class BackupReport:
    archive: Path
    files: int
    audit_head: tuple[int, str]


def create_backup(settings: Settings, archive: Path, audit_head: tuple[int, str],
                  now: dt.datetime) -> BackupReport:
    if archive.exists():
        raise Conflict(f"{archive} exists; choose a new name for the backup")
    if not archive.parent.is_dir():
        # Checked before the snapshot, which can take minutes on a large store.
        raise BadInput(f"directory {archive.parent} does not exist; create it or choose "
                       "another place for the backup")
    # Staged beside the archive, not in the system's temporary directory: the copy of the
    # store needs as much room as the store, on the disk the operator chose for the backup
    # (/tmp is often a small tmpfs, in memory).
    # A failure while staging (a full disk) names the archive, not a file already gone.
    with tempfile.TemporaryDirectory(prefix=".fleetpki-backup-", dir=archive.parent) as tmp, \
            failures_naming(archive, temporary=Path(tmp)):
        staging = Path(tmp)
        _snapshot_database(settings.store_url, staging)
        for source, name in ((settings.settings_file, SETTINGS_FILE),
                             (settings.profiles_file, "profiles.toml")):
            if source.exists():
                shutil.copy2(source, staging / name)
        if settings.key_directory.is_dir():
            shutil.copytree(settings.key_directory, staging / "keys")
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        manifest = {
            "fleetpki": __version__, "created_at": now.isoformat(),
            "store": "postgresql" if (staging / PG_DUMP).exists() else "sqlite",
            "audit_head": {"seq": audit_head[0], "hash": audit_head[1]},
            "files": {str(p.relative_to(staging)): _sha256(p) for p in files},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        partial = archive.with_name(f".{archive.name}.partial")
        with failures_naming(archive, temporary=partial):
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as raw:
                    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                        tar.add(staging / MANIFEST, arcname=MANIFEST)
                        for path in files:
                            tar.add(path, arcname=str(path.relative_to(staging)))
                    raw.flush()
                    os.fsync(raw.fileno())  # on disk before it gets its name
                partial.replace(archive)
            except BaseException:  # a full disk, an interrupt: no half archive left behind
                partial.unlink(missing_ok=True)
                raise
    return BackupReport(archive=archive, files=len(files), audit_head=audit_head)


def restore_backup(archive: Path, home: Path) -> dict[str, object]:
    """Unpack into an empty `home`, checking every file against the manifest. Returns the
    manifest. A PostgreSQL dump is left in `home` for `pg_restore` (docs/operations.md)."""
    if home.exists() and any(home.iterdir()):
        raise Conflict(f"{home} is not empty; restore into a new directory")
    try:
        tar = tarfile.open(archive, mode="r:gz")  # noqa: SIM115 - closed by the with below
    except (EOFError, OSError, tarfile.TarError) as exc:
        raise BadInput(f"{archive} is not a fleetpki backup archive: {exc}") from None
    try:
        with tar:
            manifest = _unpack(tar, archive, home)
    except (EOFError, OSError, tarfile.TarError) as exc:
        raise BadInput(f"{archive} is damaged or truncated ({exc}); nothing usable was "
                       "restored") from None
    for name, digest in _files(manifest).items():
        if _sha256(home / name) != digest:
            raise BadInput(f"{archive}: {name} does not match its checksum; the archive is "
                           "damaged")
    for key in (home / "keys").glob("*") if (home / "keys").exists() else ():
        key.chmod(0o600)
    (home / "keys").mkdir(exist_ok=True, mode=0o700)
    return manifest


def _unpack(tar: tarfile.TarFile, archive: Path, home: Path) -> dict[str, object]:
    manifest = _read_manifest(tar, archive)
    expected = _files(manifest)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The 'data' filter refuses absolute paths, '..', links and devices (PEP 706).
    members = [m for m in tar.getmembers() if m.name != MANIFEST]
    names = {m.name for m in members if m.isfile()}
    if names != set(expected):
        raise BadInput(f"{archive}: files differ from its manifest")
    tar.extractall(home, members=members, filter="data")
    return manifest


def _files(manifest: dict[str, object]) -> dict[str, str]:
    files = manifest["files"]
    assert isinstance(files, dict)
    return {str(k): str(v) for k, v in files.items()}


def _snapshot_database(url: str, staging: Path) -> None:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not Path(path).exists():
            raise StoreError(f"database {path} does not exist")
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        target = sqlite3.connect(staging / SQLITE_SNAPSHOT)
        try:
            source.backup(target)  # consistent even while other processes write
        except sqlite3.Error as exc:
            # SQLite reports a full disk as its own error, not as an OSError.
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
            raise StoreError(f"cannot copy the store {path} for the backup: {exc}") from None
        finally:
            target.close()
            source.close()
        return
    if url.startswith("postgresql"):
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            raise StoreError("pg_dump not found: install the PostgreSQL client tools")
        libpq_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        result = subprocess.run([pg_dump, "--format=custom", "--file",
                                 str(staging / PG_DUMP), libpq_url],
                                capture_output=True, text=True, timeout=3600, check=False)
        if result.returncode != 0:
            raise StoreError(f"pg_dump failed: {result.stderr.strip()[:500]}")
        return
    raise StoreError(f"cannot back up a store at {url.split(':', 1)[0]} URLs")


def _read_manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, object]:
    try:
        member = tar.extractfile(MANIFEST)
        if member is None:
            raise KeyError(MANIFEST)
        manifest: dict[str, object] = json.load(io.TextIOWrapper(member, encoding="utf-8"))
    except (KeyError, ValueError):
        raise BadInput(f"{archive} has no readable manifest: not a fleetpki backup") from None
    if not isinstance(manifest.get("files"), dict):
        raise BadInput(f"{archive}: manifest lists no files")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
