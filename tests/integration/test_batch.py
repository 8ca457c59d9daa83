"""`fleetpki batch`: manufacturing runs that survive kill -9 and never issue a device twice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from support.csrs import make_csr
from support.full_disk import fill_disk_for
from support.lint import openssl_verify, require_tool

PEM = serialization.Encoding.PEM
FLEETPKI = [sys.executable, "-m", "fleetpki.cli"]


def manifest(directory: Path, count: int, *, start: int = 0) -> Path:
    (directory / "csrs").mkdir(parents=True, exist_ok=True)
    lines = ["device_id,csr"]
    for i in range(start, start + count):
        device = f"sensor-{i:05d}"
        csr, _ = make_csr(device)
        (directory / "csrs" / f"{device}.csr").write_bytes(csr.public_bytes(PEM))
        lines.append(f"{device},csrs/{device}.csr")
    path = directory / "devices.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def store_rows(home: Path) -> list[tuple[str, str, bytes]]:
    with sqlite3.connect(home / "fleetpki.db") as db:
        return db.execute("select device_id, serial, der from certificates").fetchall()


def assert_outputs_match_store(home: Path, out: Path) -> dict[str, bytes]:
    """Every file written out is a certificate the store knows, byte for byte."""
    stored = {device: der for device, _, der in store_rows(home)}
    devices = [device for device, _, _ in store_rows(home)]
    assert len(devices) == len(set(devices)), "a device was issued twice"
    for path in out.glob("*.pem"):
        leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
        assert leaf.public_bytes(serialization.Encoding.DER) == stored[path.stem], path
    return stored


def test_batch_with_csrs_issues_each_device_once_and_reruns_idempotently(
        fleetpki, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    devices = manifest(tmp_path, 120)
    out = tmp_path / "out"
    first = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out", str(out),
                     "--workers", "2", "--chunk-size", "16")
    assert first.exit_code == 0, first.output
    assert "issued 120" in first.stdout
    stored = assert_outputs_match_store(home, out)
    assert len(stored) == 120
    (out / "sensor-00007.pem").unlink()
    second = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(out), "--workers", "2")
    assert second.exit_code == 0, second.output
    assert "issued 0, already issued 120 (1 files rewritten)" in second.stdout
    assert assert_outputs_match_store(home, out) == stored
    chain = out / "sensor-00007.pem"
    root = tmp_path / "root.pem"
    root.write_text(fleetpki("ca", "export-chain", "root").stdout)
    openssl_verify(chain, [chain], root)
    assert fleetpki("audit", "verify").exit_code == 0


def test_batch_refusals_go_to_rejects_file_and_issue_the_rest(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    devices = manifest(tmp_path, 5)
    with devices.open("a") as handle:
        handle.write("sensor-00001,csrs/sensor-00001.csr\n")  # listed twice
        handle.write("other-device,csrs/sensor-00002.csr\n")  # CSR names another device
        handle.write("missing-csr,csrs/none.csr\n")
    (tmp_path / "csrs" / "garbage.csr").write_bytes(b"not a csr")
    with devices.open("a") as handle:
        handle.write("garbage,csrs/garbage.csr\n")
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(tmp_path / "out"))
    assert result.exit_code == 3
    rejects = (tmp_path / "out" / "rejects.csv").read_text()
    assert "listed twice" in rejects
    assert "the device list says 'other-device'" in rejects
    assert "cannot read CSR" in rejects
    assert "not a valid PKCS#10" in rejects
    assert len(store_rows(home)) == 5
    with sqlite3.connect(home / "fleetpki.db") as db:
        reserved = db.execute("select count(*) from serials where state = 'reserved'").fetchone()
    assert reserved == (0,)  # refused devices consumed no serial


def test_oversized_csr_is_refused_with_its_own_size(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    devices = manifest(tmp_path, 1)
    (tmp_path / "csrs" / "huge.csr").write_bytes(b"A" * 300_000)
    with devices.open("a") as handle:
        handle.write("huge,csrs/huge.csr\n")
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(tmp_path / "out"))
    assert result.exit_code == 3, result.output
    rejects = (tmp_path / "out" / "rejects.csv").read_text()
    assert "huge.csr is 300000 bytes; the limit is 65536 bytes (64 KiB)" in rejects
    assert len(store_rows(home)) == 1


@pytest.mark.parametrize("bad", ["device_id\n../escape\n", "serial,csr\nx,y\n",
                                 "device_id,colour\nx,red\n",
                                 # which of two same-named columns wins would be silent
                                 "device_id,CN,CN\nsensor-1,sensor-1,sensor-2\n",
                                 "device_id,device_id\nsensor-1,sensor-2\n",
                                 # good lines first: the bad one near the end still stops
                                 # the run before the first chunk is issued
                                 "device_id\n" + "".join(f"ok-{i}\n" for i in range(30))
                                 + "../late\n"])
def test_malformed_device_list_refused_before_anything_is_issued(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path, bad: str) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text(bad)
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(tmp_path / "out"), "--keygen", "ec-p256", "--chunk-size", "5")
    assert result.exit_code == 2, result.output
    assert "devices.csv" in result.stderr
    assert store_rows(home) == []
    assert not (tmp_path / "out").exists()  # nothing written, not even the directory
    with sqlite3.connect(home / "fleetpki.db") as db:
        assert db.execute("select count(*) from serials").fetchone() == (0,)


def test_binary_device_list_gets_a_message_not_a_crash(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01")
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(tmp_path / "out"), "--keygen", "ec-p256")
    assert result.exit_code == 2, result.output
    assert "not a readable CSV file" in result.stderr and "UTF-8" in result.stderr
    assert "internal error" not in result.output
    assert store_rows(home) == []


def test_spreadsheet_export_with_bom_crlf_and_semicolons_is_issued(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    plain = manifest(tmp_path, 3).read_text().splitlines()
    exported = tmp_path / "export.csv"
    exported.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(
        line.replace(",", ";") for line in plain).encode() + b"\r\n")
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(exported), "--out",
                      str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert sorted(device for device, _, _ in store_rows(home)) == [
        "sensor-00000", "sensor-00001", "sensor-00002"]


def test_factory_keygen_pem_bundles(fleetpki, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,serialNumber,san\n"
                       "sensor-k1,SN-0001,uri:urn:dev:mac:00112233aabb\n"
                       "sensor-k2,SN-0002,\n")
    out = tmp_path / "out"
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(out), "--keygen", "ec-p256")
    assert result.exit_code == 0, result.output
    key = serialization.load_pem_private_key((out / "sensor-k1.key").read_bytes(), None)
    leaf = x509.load_pem_x509_certificates((out / "sensor-k1.pem").read_bytes())[0]
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.rfc4514_string() == "2.5.4.5=SN-0001,CN=sensor-k1"
    assert oct((out / "sensor-k1.key").stat().st_mode & 0o777) == "0o600"
    assert not list(out.glob("*.pending"))


def test_keygen_row_whose_attributes_cannot_form_a_name_is_rejected_alone(  # type: ignore[no-untyped-def]
        fleetpki, home: Path, tmp_path: Path) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,C\n"
                       "sensor-n1,USA\n")  # a country name is two letters
    out = tmp_path / "out"
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(out), "--keygen", "ec-p256")
    assert "internal error" not in result.output
    assert result.exit_code != 70, result.output
    assert not (out / "sensor-n1.pem").exists()
    rejects = (out / "rejects.csv").read_text()
    assert "sensor-n1" in rejects and "cannot form a name" in rejects
    with sqlite3.connect(home / "fleetpki.db") as db:
        states = db.execute("select state, count(*) from serials group by state").fetchall()
    assert "reserved" not in dict(states), states


def test_factory_keygen_pkcs12_bundles_open_with_openssl(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id\nsensor-p1\nsensor-p2\n")
    out = tmp_path / "out"
    env = {"FLEETPKI_BUNDLE_PASSPHRASE": "factory-line-7-passphrase"}
    nopass = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(out), "--keygen", "ec-p256", "--format", "p12")
    assert nopass.exit_code == 2 and "FLEETPKI_BUNDLE_PASSPHRASE" in nopass.stderr
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(out), "--keygen", "ec-p256", "--format", "p12", env=env)
    assert result.exit_code == 0, result.output
    key, cert, extra = pkcs12.load_key_and_certificates(
        (out / "sensor-p1.p12").read_bytes(), b"factory-line-7-passphrase")
    assert cert is not None and key is not None and cert.public_key() == key.public_key()
    assert len(extra) == 1  # the issuing CA
    openssl = require_tool("openssl")
    shown = subprocess.run([openssl, "pkcs12", "-in", str(out / "sensor-p2.p12"), "-nokeys",
                            "-passin", "env:FLEETPKI_BUNDLE_PASSPHRASE"],
                           env={**os.environ, **env}, capture_output=True, text=True,
                           timeout=30, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "CN = sensor-p2" in shown.stdout


def test_keygen_refused_when_profile_forbids_the_key_type(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id\nsensor-r1\n")
    result = fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                      str(tmp_path / "out"), "--keygen", "rsa-2048")
    assert result.exit_code == 2
    assert "RSA keys are not allowed" in result.output


@pytest.mark.slow
def test_kill_9_mid_batch_leaves_no_unknown_certificate_and_rerun_finishes(
        home: Path, tmp_path: Path) -> None:
    """Kill the whole batch (parent and workers) at several points; after each kill, every file
    on disk is a certificate the store holds, and re-running finishes without issuing twice."""
    total = 3000
    devices = manifest(tmp_path, total)
    out = tmp_path / "out"
    command = [*FLEETPKI, "--home", str(home), "batch", "--profile", "sensor", "--devices",
               str(devices), "--out", str(out), "--workers", "2", "--chunk-size", "25"]
    kills = 0
    for threshold in (150, 900, 1800):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if len(list(out.glob("*.pem"))) >= threshold:
                os.killpg(process.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.02)
        process.wait(timeout=30)
        assert_outputs_match_store(home, out)
    assert kills >= 2, "the batch finished before it could be interrupted"
    final = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert final.returncode == 0, final.stdout + final.stderr
    stored = assert_outputs_match_store(home, out)
    assert len(stored) == total
    assert len(list(out.glob("*.pem"))) == total
    with sqlite3.connect(home / "fleetpki.db") as db:
        issued = db.execute("select count(*) from serials where state = 'issued'").fetchone()[0]
    assert issued == total
    check = subprocess.run([*FLEETPKI, "--home", str(home), "audit", "verify"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stderr


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_workers_die_with_a_killed_batch(home: Path, tmp_path: Path) -> None:
    """Workers hold the decrypted CA key: kill -9 of the batch process alone must not leave
    them running as orphans."""
    devices = manifest(tmp_path, 3000)
    process = subprocess.Popen(
        [*FLEETPKI, "--home", str(home), "batch", "--profile", "sensor", "--devices",
         str(devices), "--out", str(tmp_path / "out"), "--workers", "2", "--chunk-size", "25"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2 and process.poll() is None:
            workers = children_of(process.pid)
            time.sleep(0.05)
        assert len(workers) >= 2, "the batch never started its workers"
        process.kill()  # the parent only
        process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists()
                                                  for w in workers):
            time.sleep(0.05)
        alive = {w for w in workers if Path(f"/proc/{w}").exists()}
        assert not alive, f"workers {alive} outlived their batch"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        for worker in workers:  # only if the test failed: they are ours to end
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)


def jsonl_devices(path: Path) -> dict[str, bytes]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {line["device_id"]: x509.load_pem_x509_certificate(line["certificate"].encode())
            .public_bytes(serialization.Encoding.DER) for line in lines}


def test_jsonl_layout_writes_one_line_per_device_and_repairs_itself(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path) -> None:
    devices = manifest(tmp_path, 60)
    out = tmp_path / "out"
    args = ("batch", "--profile", "sensor", "--devices", str(devices), "--out", str(out),
            "--layout", "jsonl", "--chunk-size", "16")
    assert fleetpki(*args).exit_code == 0
    log = out / "certificates.jsonl"
    stored = {device: der for device, _, der in store_rows(home)}
    assert jsonl_devices(log) == stored and len(stored) == 60
    assert len(x509.load_pem_x509_certificates((out / "chain.pem").read_bytes())) == 1
    # A lost line and a torn last line, as a crash could leave them:
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:10] + lines[11:]) + lines[11][:40])
    rerun = fleetpki(*args)
    assert rerun.exit_code == 0, rerun.output
    assert "issued 0, already issued 60 (1 files rewritten)" in rerun.stdout
    assert jsonl_devices(log) == stored
    assert len(log.read_text().splitlines()) == 60
    assert fleetpki("batch", "--profile", "sensor", "--devices", str(devices), "--out",
                    str(out), "--layout", "jsonl", "--keygen", "ec-p256").exit_code == 2
    # A line in the middle that no crash could leave: refused by line, nothing issued.
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join([*lines[:5], "{not json\n", *lines[5:]]))
    damaged = fleetpki(*args)
    assert damaged.exit_code == 2, damaged.output
    assert "certificates.jsonl:6 is not a line fleetpki wrote" in damaged.stderr
    assert len(store_rows(home)) == 60


@pytest.mark.parametrize(("layout", "name"), [("files", "sensor-00001.pem"),
                                           ("jsonl", "certificates.jsonl")])
def test_full_disk_names_the_file_and_the_rerun_writes_it(  # type: ignore[no-untyped-def]
        fleetpki, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str,
        name: str) -> None:
    devices = manifest(tmp_path, 3)
    out = tmp_path / "out"
    args = ("batch", "--profile", "sensor", "--devices", str(devices), "--out", str(out),
            "--layout", layout, "--workers", "1")
    fill_disk_for(monkeypatch, name)
    full = fleetpki(*args)
    assert full.exit_code == 11, full.output
    assert f"error: {out / name}: No space left on device; the certificates issued so far " \
           "are stored" in full.stderr
    assert "run the same command again" in full.stderr and full.stderr.count("\n") == 1
    assert not list(out.glob(".*"))  # no temporary file left behind
    assert not (out / name).exists() or (out / name).read_bytes() == b""
    assert len(store_rows(home)) == 3
    monkeypatch.undo()
    again = fleetpki(*args)
    assert again.exit_code == 0, again.output
    assert "issued 0, already issued 3" in again.stdout
    stored = {device: der for device, _, der in store_rows(home)}
    if layout == "jsonl":
        assert jsonl_devices(out / name) == stored
    else:
        assert len(assert_outputs_match_store(home, out)) == 3
        assert len(list(out.glob("*.pem"))) == 3


def test_kill_9_mid_jsonl_batch_leaves_only_committed_lines(home: Path, tmp_path: Path) -> None:
    total = 2000
    devices = manifest(tmp_path, total)
    out = tmp_path / "out"
    log = out / "certificates.jsonl"
    command = [*FLEETPKI, "--home", str(home), "batch", "--profile", "sensor", "--devices",
               str(devices), "--out", str(out), "--workers", "2", "--chunk-size", "25",
               "--layout", "jsonl"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.stat().st_size > 300_000:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(timeout=30)
    stored = {device: der for device, _, der in store_rows(home)}
    complete = log.read_bytes()[:log.read_bytes().rfind(b"\n") + 1]
    written = {json.loads(line)["device_id"]: line for line in complete.splitlines()}
    assert 0 < len(written) < total, "the batch was not interrupted"
    for device in written:
        assert device in stored  # nothing on disk that the store does not know
    final = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert final.returncode == 0, final.stdout + final.stderr
    assert jsonl_devices(log) == {device: der for device, _, der in store_rows(home)}
    assert len(jsonl_devices(log)) == total
