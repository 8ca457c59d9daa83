"""Bulk inserts for the hot paths (batch issuance, audit): straight to the driver's executemany.

SQLAlchemy's per-row parameter processing costs more than SQLite's own insert at thousands of
rows per second. These inserts bypass it with rows already in the driver's form. Only
timestamps need converting, and they are converted here the way the UtcDateTime column type
stores them, so reads through SQLAlchemy see the same values (the store contract tests cover
both paths on SQLite and PostgreSQL).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def timestamp_converter(dialect: sa.Dialect) -> Callable[[dt.datetime | None], Any]:
    if dialect.name == "sqlite":
        return _to_sqlite
    return lambda value: value


@functools.lru_cache(maxsize=64)
def _to_sqlite(value: dt.datetime | None) -> str | None:
    """Cached: a batch chunk shares its notBefore, notAfter and issue time across every row."""
    return None if value is None else value.astimezone(dt.UTC).strftime(_SQLITE_TIME)


def insert_many(connection: sa.Connection, table: sa.Table, columns: Sequence[str],
                rows: Sequence[tuple[Any, ...]]) -> None:
    """INSERT rows given as tuples in `columns` order (timestamps already converted)."""
    if not rows:
        return
    unknown = set(columns) - set(table.columns.keys())
    if unknown:  # names come from our schema, never from input; refuse anything else
        raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608 - schema names only
           f"VALUES ({', '.join(['?'] * len(columns))})")
    execute_driver(connection, sql, list(rows))


def execute_driver(connection: sa.Connection, sql: str,
                   parameters: tuple[Any, ...] | list[tuple[Any, ...]]) -> Any:
    """Run SQL written with `?` markers on the DBAPI cursor of the connection's transaction:
    the few statements every enrollment executes, where SQLAlchemy's per-statement machinery
    (events, result wrapping) costs several times what SQLite does. A list of tuples runs as
    executemany. The text is ours (never input); values always travel as parameters.
    Returns the DBAPI cursor (rowcount, fetchone)."""
    if connection.dialect.paramstyle != "qmark":
        sql = _format_markers(sql)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    driver_error = connection.dialect.loaded_dbapi.Error
    try:
        if isinstance(parameters, list):
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
    except driver_error as error:
        # The same exception types SQLAlchemy would raise, so callers and translate_errors
        # treat both paths alike (IntegrityError for a duplicate serial, and so on).
        raise sa.exc.DBAPIError.instance(sql, parameters, error, driver_error) from None
    return cursor


def stream_driver(connection: sa.Connection, sql: str, parameters: tuple[Any, ...], *,
                  batch: int) -> Iterator[tuple[Any, ...]]:
    """Rows of a `?`-marker query straight from the DBAPI cursor, `batch` at a time, for
    reads of a million rows where SQLAlchemy's row objects cost more than the database. On
    PostgreSQL the cursor is server-side (named), so the rows are not all held in memory."""
    postgres = connection.dialect.name == "postgresql"
    if connection.dialect.paramstyle != "qmark":
        sql = _format_markers(sql)
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor(name="fleetpki_stream") if postgres else dbapi.cursor()
    driver_error = connection.dialect.loaded_dbapi.Error
    try:
        cursor.execute(sql, parameters)
        while rows := cursor.fetchmany(batch):
            yield from rows
    except driver_error as error:
        raise sa.exc.DBAPIError.instance(sql, parameters, error, driver_error) from None
    finally:
        cursor.close()


class PointReads:
    """One-row reads on a DBAPI connection kept per thread, for the lookups a responder makes
    per request: a pool checkout and SQLAlchemy's statement machinery cost more than the
    indexed read itself. Autocommit on SQLite (each read sees the latest commit); on other
    databases each read ends its transaction, so none stays open."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()
        self._sqlite = engine.dialect.name == "sqlite"
        self._qmark = engine.dialect.paramstyle == "qmark"
        self._error = engine.dialect.loaded_dbapi.Error

    def one(self, sql: str, parameters: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not self._qmark:
            sql = _format_markers(sql)
        connection = self._connection()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, parameters)
            row = cursor.fetchone()
            cursor.close()
            if not self._sqlite:
                connection.rollback()
            return tuple(row) if row is not None else None
        except self._error as error:
            self._forget(connection)  # a broken connection is replaced on the next read
            raise sa.exc.DBAPIError.instance(sql, parameters, error, self._error) from None

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                with contextlib.suppress(Exception):
                    connection.close()
            self._opened.clear()
        self._local = threading.local()

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # Detached from the pool: this thread keeps it; the engine's connect hooks (SQLite
            # pragmas, autocommit) have run on it.
            fairy = self._engine.raw_connection()
            fairy.detach()
            connection = fairy.dbapi_connection
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    def _forget(self, connection: Any) -> None:
        self._local.connection = None
        with self._lock, contextlib.suppress(ValueError):
            self._opened.remove(connection)
        with contextlib.suppress(Exception):
            connection.close()


@functools.lru_cache(maxsize=64)
def _format_markers(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")
