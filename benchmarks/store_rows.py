"""Fill a fleetpki SQLite store with certificate rows fast, for the revocation benchmarks.

A million issuances through the RA would take longer than the measurement they set up. The
rows written here are what `fleetpki batch` writes (a serial reservation and a certificate
row), minus the certificate bytes, a placeholder no revocation mechanism reads. The store
must exist (SqlStore has run its migrations) and hold the issuing CA.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from rich.progress import Progress

from fleetpki.core.reasons import RevocationReason

_CHUNK = 50_000
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    serial: int
    not_after: dt.datetime
    crl_shard: int | None = None
    revoked_at: dt.datetime | None = None
    reason: RevocationReason | None = None
    invalidity_date: dt.datetime | None = None


def fill(db: Path, issuer: str, profile: str, rows: Iterable[Row], *, total: int,
         issued_at: dt.datetime) -> None:
    """Insert `rows` (one transaction per chunk) and set the issuer's revocation sequence so
    that every revoked row counts as one change, as revocations through the store would."""
    stamp = _text(issued_at)
    changes = 0
    with sqlite3.connect(db) as c, Progress(transient=True) as progress:
        task = progress.add_task(f"filling the store with {total:,} certificates", total=total)
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == _CHUNK:
                changes = _insert(c, issuer, profile, chunk, stamp, changes)
                progress.advance(task, len(chunk))
                chunk = []
        changes = _insert(c, issuer, profile, chunk, stamp, changes)
        progress.advance(task, len(chunk))
        c.execute("UPDATE cas SET revocation_seq = ? WHERE name = ?", (changes, issuer))


def _insert(c: sqlite3.Connection, issuer: str, profile: str, rows: list[Row], stamp: str,
            changes: int) -> int:
    serials = [f"{r.serial:x}" for r in rows]
    c.executemany("INSERT INTO serials VALUES (?, ?, ?, ?, ?, 'issued')",
                  [(issuer, s, f"dev-{s[:12]}", profile, stamp) for s in serials])
    values = []
    for row, serial in zip(rows, serials, strict=True):
        seq = None
        if row.revoked_at is not None:
            changes += 1
            seq = changes
        values.append((issuer, serial, f"dev-{serial[:12]}", profile, f"CN=dev-{serial[:12]}",
                       serial.rjust(64, "0"), stamp, _text(row.not_after), stamp,
                       _text(row.revoked_at), row.reason.value if row.reason else None,
                       row.crl_shard, _text(row.invalidity_date), seq))
    c.executemany(
        "INSERT INTO certificates (issuer, serial, device_id, profile, subject, sans, key_spec, "
        "key_fingerprint, not_before, not_after, issued_at, der, revoked_at, revocation_reason, "
        "crl_shard, invalidity_date, revocation_seq) "
        "VALUES (?, ?, ?, ?, ?, '', 'ec-p256', ?, ?, ?, ?, x'3000', ?, ?, ?, ?, ?)", values)
    return changes


def _text(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).strftime(_SQLITE_TIME)
