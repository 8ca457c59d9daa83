"""Inventory and lifecycle from the CLI: search, show, revoke, export; the audit trail."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.csrs import make_csr, make_key

PEM = serialization.Encoding.PEM


def issue(fleetpki, tmp_path: Path, cn: str, *, profile: str = "sensor",  # type: ignore[no-untyped-def]
          key: str = "ec-p256", validity: str | None = None) -> int:
    csr, _ = make_csr(cn, key=make_key(key))
    path = tmp_path / f"{cn}.csr"
    path.write_bytes(csr.public_bytes(PEM))
    args = ["issue", "--profile", profile, "--csr", str(path)]
    if validity:
        args += ["--validity", validity]
    result = fleetpki(*args)
    assert result.exit_code == 0, result.output
    return x509.load_pem_x509_certificate(result.stdout.encode()).serial_number


def listed(fleetpki, *args: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    result = fleetpki("certs", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_search_by_device_profile_status_key_and_expiry(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s1 = issue(fleetpki, tmp_path, "sensor-a1", validity="10d")
    issue(fleetpki, tmp_path, "sensor-a2", key="ec-p384")
    issue(fleetpki, tmp_path, "gw-b1", profile="gateway", key="rsa-2048")
    assert [c["device_id"] for c in listed(fleetpki, "--device", "sensor-a1")] == ["sensor-a1"]
    assert {c["device_id"] for c in listed(fleetpki, "--profile", "sensor")} >= {
        "sensor-a1", "sensor-a2"}
    assert [c["device_id"] for c in listed(fleetpki, "--key", "rsa-2048")] == ["gw-b1"]
    soon = listed(fleetpki, "--expiring-before", "2100-01-01", "--limit", "1")
    assert soon[0]["serial"] == format(s1, "x")  # soonest expiry first
    # A duration counts from now: only the 10-day certificate expires within 30 days.
    assert [c["device_id"] for c in listed(fleetpki, "--expiring-before", "30d")] == [
        "sensor-a1"]
    bad = fleetpki("certs", "list", "--expiring-before", "soon")
    assert bad.exit_code == 2 and "duration from now" in bad.output
    assert fleetpki("certs", "revoke", format(s1, "x"), "--reason", "keyCompromise").exit_code == 0
    revoked = listed(fleetpki, "--status", "revoked")
    assert [c["device_id"] for c in revoked] == ["sensor-a1"]
    assert revoked[0]["revocation_reason"] == "keyCompromise"
    assert "sensor-a1" not in {c["device_id"] for c in listed(fleetpki, "--status", "valid")}
    assert [c["device_id"] for c in listed(fleetpki, "--subject", "gw-b")] == ["gw-b1"]


def test_list_by_unknown_profile_is_not_found_but_a_retired_one_still_lists(  # type: ignore[no-untyped-def]
        fleetpki, home: Path, tmp_path: Path) -> None:
    issue(fleetpki, tmp_path, "sensor-k1")
    typo = fleetpki("certs", "list", "--profile", "sensr")
    assert typo.exit_code == 5, typo.output
    assert "no profile named 'sensr'" in typo.stderr
    assert "(profiles: edge, gateway, sensor)" in typo.stderr
    assert typo.stderr.count("\n") == 1
    assert listed(fleetpki, "--profile", "edge") == []  # defined, nothing issued yet: no error
    # The profile leaves profiles.toml; its certificates stay in the store and stay listable.
    profiles = home / "profiles.toml"
    profiles.write_text(profiles.read_text().replace("[profiles.sensor", "[profiles.probe"))
    assert [c["device_id"] for c in listed(fleetpki, "--profile", "sensor")] == ["sensor-k1"]
    assert listed(fleetpki, "--profile", "sensor", "--status", "revoked") == []
    gone = fleetpki("certs", "list", "--profile", "sensr")
    assert gone.exit_code == 5 and "(profiles: edge, gateway, probe)" in gone.stderr


def test_revoke_twice_is_a_conflict_and_unknown_serial_not_found(fleetpki, tmp_path: Path  # type: ignore[no-untyped-def]
                                                                ) -> None:
    serial = format(issue(fleetpki, tmp_path, "sensor-c1"), "x")
    assert fleetpki("certs", "revoke", serial, "--reason", "superseded").exit_code == 0
    again = fleetpki("certs", "revoke", serial, "--reason", "superseded")
    assert again.exit_code == 6
    assert "already revoked" in again.stderr
    missing = fleetpki("certs", "revoke", "abcdef0123", "--reason", "superseded")
    assert missing.exit_code == 5


def test_revoke_with_unknown_reason_lists_reasons(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    serial = format(issue(fleetpki, tmp_path, "sensor-d1"), "x")
    result = fleetpki("certs", "revoke", serial, "--reason", "bored")
    assert result.exit_code == 2
    assert "keyCompromise" in result.output


def test_show_and_export_with_colon_serial(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    serial = issue(fleetpki, tmp_path, "sensor-e1")
    colon = ":".join(f"{b:02x}" for b in serial.to_bytes(16, "big"))
    shown = fleetpki("certs", "show", colon)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["device_id"] == "sensor-e1"
    exported = fleetpki("certs", "export", format(serial, "x"), "--root")
    certs = x509.load_pem_x509_certificates(exported.stdout.encode())
    assert certs[0].serial_number == serial
    assert len(certs) == 3
    assert certs[2].subject == certs[2].issuer  # root last
    leaf_only = fleetpki("certs", "export", format(serial, "x"), "--no-chain")
    assert len(x509.load_pem_x509_certificates(leaf_only.stdout.encode())) == 1


def test_export_refuses_root_without_chain(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    serial = format(issue(fleetpki, tmp_path, "sensor-e2"), "x")
    result = fleetpki("certs", "export", serial, "--no-chain", "--root")
    assert result.exit_code == 2, result.output
    assert "cannot be combined with --no-chain" in result.stderr
    assert result.stdout == ""  # nothing printed: not even the leaf


def tamper(home: Path, sql: str) -> None:
    with sqlite3.connect(home / "fleetpki.db") as db:
        db.execute(sql)


@pytest.mark.parametrize(("sql", "message"), [
    ("update audit_log set actor = 'operator:mallory' where seq = 3", "entry 3 was modified"),
    ("update audit_log set details = '{}' where seq = 2", "entry 2 was modified"),
    ("delete from audit_log where seq = 3", "missing or out of order"),
    ("update audit_log set seq = seq + 100 where seq = 2", "missing or out of order"),
    ("update audit_log set at = 'garbage' where seq = 2", "cannot be read"),
    ("update audit_log set details = '{' where seq = 3", "entry 3 cannot be read"),
    ("update audit_log set details = '[1]' where seq = 3", "entry 3 cannot be read"),
])
def test_audit_verify_detects_tampering(fleetpki, home: Path, tmp_path: Path, sql: str,  # type: ignore[no-untyped-def]
                                        message: str) -> None:
    issue(fleetpki, tmp_path, "sensor-f1")
    issue(fleetpki, tmp_path, "sensor-f2")
    assert fleetpki("audit", "verify").exit_code == 0
    tamper(home, sql)
    result = fleetpki("audit", "verify")
    assert result.exit_code == 10
    assert message in result.stderr


def test_audit_verify_detects_swapped_entries(fleetpki, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    issue(fleetpki, tmp_path, "sensor-g1")
    issue(fleetpki, tmp_path, "sensor-g2")
    tamper(home, "update audit_log set seq = -1 where seq = 3")
    tamper(home, "update audit_log set seq = 3 where seq = 4")
    tamper(home, "update audit_log set seq = 4 where seq = -1")
    assert fleetpki("audit", "verify").exit_code == 10


def test_audit_verify_detects_truncation_against_recorded_head(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                               tmp_path: Path) -> None:
    issue(fleetpki, tmp_path, "sensor-h1")
    head = fleetpki("audit", "head").stdout.strip()
    seq = int(head.split(":")[0])
    tamper(home, f"delete from audit_log where seq = {seq}")
    tamper(home, f"update audit_head set seq = {seq - 1}, hash = (select hash from audit_log "
                 f"where seq = {seq - 1})")
    assert fleetpki("audit", "verify").exit_code == 0  # self-consistent after truncation...
    result = fleetpki("audit", "verify", "--expect-head", head)
    assert result.exit_code == 10  # ...but not against the head recorded elsewhere
    assert "removed from the end" in result.stderr


def test_every_action_is_audited_with_actor(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    serial = format(issue(fleetpki, tmp_path, "sensor-i1"), "x")
    fleetpki("certs", "revoke", serial, "--reason", "superseded")
    entries = [json.loads(line) for line in
               fleetpki("audit", "list", "--limit", "100").stdout.splitlines()]
    actions = [e["action"] for e in entries]
    assert actions[:2] == ["ca.created", "ca.created"]
    # The sensor profile re-signs its CRL at each revocation: recorded right after it.
    assert actions[-3:] == ["certificate.issued", "certificate.revoked", "crl.full_signed"]
    assert all(e["actor"].startswith("operator:") for e in entries[:-1])
    assert entries[-1]["actor"] == "fleetpki:crl"
