"""`fleetpki backup` while a batch is writing, then `fleetpki restore` into a new directory."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from fleetpki.cli.main import cli
from support.csrs import make_csr
from support.full_disk import fill_disk_for

FLEETPKI = [sys.executable, "-m", "fleetpki.cli"]


def test_backup_during_batch_restores_to_a_consistent_verifiable_store(
        home: Path, tmp_path: Path) -> None:
    (tmp_path / "csrs").mkdir()
    lines = ["device_id,csr"]
    for i in range(6000):
        csr, _ = make_csr(f"sensor-{i:05d}")
        (tmp_path / "csrs" / f"{i}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        lines.append(f"sensor-{i:05d},csrs/{i}.csr")
    (tmp_path / "devices.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    batch = subprocess.Popen([*FLEETPKI, "--home", str(home), "batch", "--profile", "sensor",
                              "--devices", str(tmp_path / "devices.csv"), "--out", str(out),
                              "--chunk-size", "10", "--workers", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.pem"))) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        archive = tmp_path / "backup.tar.gz"
        made = subprocess.run([*FLEETPKI, "--home", str(home), "backup", "--to", str(archive)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert made.returncode == 0, made.stderr
    finally:
        assert batch.wait(timeout=300) == 0
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "fleetpki.db", "keys/root.key.pem", "keys/issuing.key.pem"} <= names
    assert not any("passphrase" in name for name in names)
    assert oct(archive.stat().st_mode & 0o777) == "0o600"

    restored = tmp_path / "restored"
    result = CliRunner().invoke(cli, ["restore", str(archive), "--into", str(restored)])
    assert result.exit_code == 0, result.output
    assert "audit chain OK" in result.stdout
    with sqlite3.connect(restored / "fleetpki.db") as db:
        certs = db.execute("select count(*) from certificates").fetchone()[0]
        issued_audit = db.execute("select count(*) from audit_log where action = "
                                  "'certificate.issued'").fetchone()[0]
    # Taken while the batch was writing (some certificates, not all: whether the batch is still
    # running once the backup command returns depends on how busy the machine is), and one
    # consistent point in time.
    assert 0 < certs < 6000
    assert certs == issued_audit
    # With the passphrase supplied separately, the restored CA signs again.
    passphrase = (home / "secrets" / "key-passphrase").read_text()
    csr, _ = make_csr("sensor-after-restore")
    (tmp_path / "after.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    issued = CliRunner().invoke(cli, ["--home", str(restored), "issue", "--profile", "sensor",
                                      "--csr", str(tmp_path / "after.csr")],
                                env={"FLEETPKI_KEY_PASSPHRASE": passphrase})
    assert issued.exit_code == 0, issued.output


def test_restore_refuses_non_empty_target_and_damaged_archive(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "b.tar.gz"
    assert fleetpki("backup", "--to", str(archive)).exit_code == 0
    assert fleetpki("backup", "--to", str(archive)).exit_code == 6  # never overwrites
    nowhere = fleetpki("backup", "--to", str(tmp_path / "missing" / "b.tar.gz"))
    assert nowhere.exit_code == 2 and "does not exist; create it" in nowhere.output
    assert not (tmp_path / "missing").exists()
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    runner = CliRunner()
    assert runner.invoke(cli, ["restore", str(archive), "--into", str(occupied)]).exit_code == 6
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(archive.read_bytes()[:200])
    result = runner.invoke(cli, ["restore", str(damaged), "--into", str(tmp_path / "new")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_backup_to_a_full_disk_names_the_archive_and_leaves_nothing(  # type: ignore[no-untyped-def]
        fleetpki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    media = tmp_path / "media"
    media.mkdir()
    archive = media / "b.tar.gz"
    fill_disk_for(monkeypatch, "b.tar.gz")
    result = fleetpki("backup", "--to", str(archive))
    assert result.exit_code == 11, result.output
    assert f"error: {archive}: No space left on device; no backup was written" in result.stderr
    assert result.stderr.count("\n") == 1
    assert list(media.iterdir()) == []


def test_backup_with_no_room_for_the_store_copy_names_the_archive_and_leaves_nothing(  # type: ignore[no-untyped-def]
        fleetpki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite reports a full disk as SQLITE_FULL, not as an OSError: here its copy of the
    store may grow to one page, as if the disk filled up under it."""
    media = tmp_path / "media"
    media.mkdir()
    archive = media / "b.tar.gz"
    real_connect = sqlite3.connect

    def cramped(database: object, *args: object, **kwargs: object) -> sqlite3.Connection:
        connection = real_connect(database, *args, **kwargs)  # type: ignore[arg-type]
        if str(database).startswith(str(media)):
            connection.execute("PRAGMA max_page_count=1")
        return connection

    monkeypatch.setattr("fleetpki.backup.sqlite3.connect", cramped)
    result = fleetpki("backup", "--to", str(archive))
    assert result.exit_code == 11, result.output
    assert f"error: {archive}: No space left on device; no backup was written" in result.stderr
    assert "Traceback" not in result.output
    assert list(media.iterdir()) == []


def test_backup_stages_beside_the_archive_not_in_the_system_temporary_directory(  # type: ignore[no-untyped-def]
        fleetpki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A /tmp that cannot hold a copy of the store must not matter: here there is none at all.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-temporary-directory"))
    media = tmp_path / "media"
    media.mkdir()
    result = fleetpki("backup", "--to", str(media / "b.tar.gz"))
    assert result.exit_code == 0, result.output
    assert [p.name for p in media.iterdir()] == ["b.tar.gz"]
