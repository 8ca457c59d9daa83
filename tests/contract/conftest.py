"""Fixtures for the store contract: one fresh, empty SqlStore per test and per backend.

Every contract test runs twice, against SQLite (a file in tmp_path) and against a real
PostgreSQL server. The server is started once per session (the first time a postgres-marked
test needs it) and stopped at the end; each test gets its own freshly created database, so
tests never see each other's rows.

If the PostgreSQL server binaries are missing, the postgres tests FAIL with PostgresServer's
message (they are not skipped: a contract that silently runs on one backend proves nothing).
Run only the SQLite half explicitly with ``-m "not postgres"``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpki.store.sql.store import SqlStore
from support.postgres import PostgresServer


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh, empty database on the backend named by the parameter."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url: str = server.create_database(f"contract_{uuid.uuid4().hex}")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """A migrated, empty SqlStore; its connections are closed after the test."""
    opened = SqlStore(store_url)
    try:
        yield opened
    finally:
        opened.close()
