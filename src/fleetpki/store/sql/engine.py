"""Opening a database: engine settings per dialect, migrations to head, error translation."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fleetpki.core.errors import Conflict, StoreError
from fleetpki.store.migrations import SCHEMA_HEAD

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_engines(url: str, *, durable: bool = True) -> tuple[sa.Engine, sa.Engine]:
    """(writer, reader). On SQLite the writer begins IMMEDIATE transactions, so concurrent
    writers queue on the lock instead of failing half-way with 'database is locked'.

    `durable=False` skips fsync on SQLite: only for throwaway databases (the fleet simulator's),
    where a power loss may lose the last transactions and nobody minds."""
    if url.startswith("sqlite"):
        return (_sqlite_engine(url, immediate=True, durable=durable),
                _sqlite_engine(url, immediate=False, durable=durable))
    engine = sa.create_engine(url, pool_pre_ping=True)
    return engine, engine


def _sqlite_engine(url: str, *, immediate: bool, durable: bool) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling defers it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Without durability (a throwaway database), a rollback journal in memory: no WAL to
        # write and checkpoint at every commit. Durable stores keep WAL (readers never wait).
        # Measured for the fleet simulator, one shard per core side by side: WAL saved 10 %
        # of the CPU at 1,000 devices but cost 4 % more at 10,000, as checkpoints grow.
        cursor.execute("PRAGMA journal_mode=WAL" if durable else "PRAGMA journal_mode=MEMORY")
        # FULL: a committed certificate survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # 64 MiB of page cache instead of 2: the serial and key-fingerprint indexes take random
        # keys, and beyond the cache every insert into them reads pages back from the OS.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    if immediate:
        _queue_writers(engine)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        if immediate:
            _take_writer_turn(connection)
        # On the driver connection: SQLAlchemy's statement machinery would cost more than
        # the BEGIN itself, twice per issuance.
        connection.connection.driver_connection.execute(  # type: ignore[union-attr]
            "BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


_TURN = "fleetpki_writer_turn"


def _queue_writers(engine: sa.Engine) -> None:
    """Writers from every process of one database wait for their turn on a lock file.

    SQLite's own busy handler polls, sleeping longer after each failed try: with several
    server workers one of them could wait seconds while the others took the lock again and
    again. A blocking flock() wakes a waiter as soon as the lock is free. It is taken just
    before BEGIN IMMEDIATE and released when the connection goes back to the pool, after its
    COMMIT or ROLLBACK. SQLite's lock still guards the data; this only orders the queue."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    lock_path = f"{database}-writers.lock"

    @sa.event.listens_for(engine, "connect")
    def _open_turn(_dbapi_connection: sqlite3.Connection, record: Any) -> None:
        record.info[_TURN] = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    @sa.event.listens_for(engine, "checkin")
    def _end_turn(_dbapi_connection: sqlite3.Connection, record: Any) -> None:
        fd = record.info.get(_TURN) if record is not None else None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @sa.event.listens_for(engine, "close")
    def _close_turn(_dbapi_connection: sqlite3.Connection, record: Any) -> None:
        fd = record.info.pop(_TURN, None) if record is not None else None
        if fd is not None:
            os.close(fd)


def _take_writer_turn(connection: sa.Connection) -> None:
    fd = connection.connection.info.get(_TURN)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def release_writer_turn(connection: sa.Connection) -> None:
    """End the turn after COMMIT or ROLLBACK, for a connection kept open across transactions
    (group_commit.py): check-in, which ends it otherwise, does not happen then."""
    if connection.closed or connection.invalidated:
        return
    fd = connection.connection.info.get(_TURN)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision. When it is already there this is one query and
    Alembic is not even imported (importing it costs about a second on every CLI start)."""
    with translate_errors(), engine.connect() as connection:
        try:
            current = connection.execute(
                sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.DatabaseError:
            current = None  # a new database: no version table yet
    if current == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with translate_errors(), engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Database failures become StoreError with a next step; the transaction has rolled back."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        raise StoreError(_explain(str(exc.orig))) from None
    except sa.exc.DatabaseError as exc:
        raise StoreError(f"database error: {str(exc.orig).splitlines()[0]}") from None


@contextlib.contextmanager
def integrity_is_conflict(message: str) -> Iterator[None]:
    """A constraint violation (most often a row that a racing request inserted first) as
    Conflict. Enter it inside translate_errors and outside the transaction, so that the
    transaction has rolled back when Conflict is raised."""
    try:
        yield
    except sa.exc.IntegrityError:
        raise Conflict(message) from None


def _explain(message: str) -> str:
    first = message.splitlines()[0] if message else "unknown database error"
    lowered = first.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return ("the database is read-only: check the file and directory permissions of the "
                "data directory; nothing was changed")
    if "disk is full" in lowered or "no space" in lowered:
        return "the disk holding the database is full: free space and retry; nothing was changed"
    if "unable to open" in lowered:
        return ("cannot open the database file: check that the data directory exists and is "
                "writable")
    if "locked" in lowered:
        return "the database stayed locked for 30 s by another writer; retry"
    if "connection" in lowered or "could not" in lowered:
        return f"cannot reach the database: {first}"
    return f"database error: {first}"
