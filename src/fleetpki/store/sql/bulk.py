"""Bulk inserts for the hot paths (batch issuance, audit): straight to the driver's executemany.

SQLAlchemy's per-row parameter processing costs more than SQLite's own insert at thousands of
rows per second. These inserts bypass it with rows already in the driver's form. Only
timestamps need converting, and they are converted here the way the UtcDateTime column type
stores them, so reads through SQLAlchemy see the same values (the store contract tests cover
both paths on SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
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


@functools.lru_cache(maxsize=64)
def _format_markers(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")
