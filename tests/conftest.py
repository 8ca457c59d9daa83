"""Fixtures shared by every test layer."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetpki.cli.main import cli
from support.postgres import PostgresServer


@pytest.fixture(scope="session")
def initialised_home_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `fleetpki init` per session; tests get a copy (CA creation with RSA-4096 is slow)."""
    home = tmp_path_factory.mktemp("template") / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "init", "--org", "Test Fleet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture
def home(initialised_home_template: Path, tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "home"
    shutil.copytree(initialised_home_template, target)
    yield target


class Cli:
    """Runs the real `fleetpki` command in-process against one data directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(cli, ["--home", str(self.home), *args], env=env,
                                  catch_exceptions=False)


@pytest.fixture
def fleetpki(home: Path) -> Cli:
    return Cli(home)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session."""
    server = PostgresServer()
    failure: str | None = None
    try:
        server.start()
    except RuntimeError as exc:
        failure = str(exc)
    if failure is not None:
        # Missing binaries or a server that will not come up: fail loudly, never skip.
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        server.stop()
