"""The same CLI on PostgreSQL: init, issue, batch, audit, backup with pg_dump."""

from __future__ import annotations

import tarfile
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from fleetpki.cli.main import cli
from support.csrs import make_csr
from support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def test_fleetpki_runs_on_postgresql(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.create_database(f"cli_{uuid.uuid4().hex}")
    home = tmp_path / "home"
    home.mkdir()
    (home / "fleetpki.toml").write_text(f'[store]\nurl = "{url}"\n')
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("init")
    assert not (home / "fleetpki.db").exists()  # nothing went to SQLite
    csr, _ = make_csr("sensor-pg-1")
    (tmp_path / "d.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    run("issue", "--profile", "sensor", "--csr", str(tmp_path / "d.csr"))
    (tmp_path / "devices.csv").write_text("device_id\n" + "".join(
        f"sensor-pg-b{i}\n" for i in range(50)))
    run("batch", "--profile", "sensor", "--devices", str(tmp_path / "devices.csv"), "--out",
        str(tmp_path / "out"), "--keygen", "ec-p256")
    assert "51 certificate(s)" in run("certs", "list", "--limit", "500")
    assert "audit log OK: 53 entries" in run("audit", "verify")
    archive = tmp_path / "pg.tar.gz"
    run("backup", "--to", str(archive))
    with tarfile.open(archive) as tar:
        assert "fleetpki.pgdump" in tar.getnames()
    restored = tmp_path / "restored"
    out = runner.invoke(cli, ["restore", str(archive), "--into", str(restored)])
    assert out.exit_code == 0, out.output
    assert "pg_restore" in out.stdout
    assert (restored / "fleetpki.pgdump").stat().st_size > 0
