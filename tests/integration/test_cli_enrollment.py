"""The enrollment CLI: credentials shown once and listed without secrets, manufacturers,
approvals; bad input refused with a message and nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Cli
from support.est_home import make_factory_pki


def test_bootstrap_secret_is_shown_once_and_never_listed(fleetpki: Cli) -> None:
    made = fleetpki("bootstrap", "create", "--profile", "sensor", "--uses", "5", "--expires",
                    "2d", "--id", "line-7")
    assert made.exit_code == 0, made.output
    secret = made.output.split("secret:")[1].split()[0]
    listed = fleetpki("bootstrap", "list")
    assert "line-7" in listed.output and "0/5" in listed.output
    assert secret not in listed.output
    audit = fleetpki("audit", "list", "--limit", "1000")
    assert secret not in audit.output and "bootstrap.created" in audit.output
    assert secret not in (fleetpki.home / "logs" / "fleetpki.log").read_text()
    assert fleetpki("bootstrap", "disable", "line-7").exit_code == 0
    assert "line-7" not in fleetpki("bootstrap", "list").output
    assert "disabled" in fleetpki("bootstrap", "list", "--all").output


def test_bootstrap_refusals_change_nothing(fleetpki: Cli) -> None:
    for args, says in [
        (["--profile", "nope"], "no profile named 'nope'"),
        (["--profile", "sensor", "--uses", "0"], "--uses"),
        (["--profile", "sensor", "--device", "sensor-1", "--uses", "3"], "per-device"),
        (["--profile", "sensor", "--id", "has:colon"], "user name"),
        (["--profile", "sensor", "--expires", "forever"], "--expires"),
    ]:
        result = fleetpki("bootstrap", "create", *args)
        assert result.exit_code != 0 and says in result.output, (args, result.output)
    assert "bt-" not in fleetpki("bootstrap", "list", "--all").output
    duplicate = [fleetpki("bootstrap", "create", "--profile", "sensor", "--id", "same")
                 for _ in range(2)]
    assert duplicate[0].exit_code == 0 and "already exists" in duplicate[1].output


def test_per_device_secrets_for_a_factory_go_to_one_private_file(fleetpki: Cli,
                                                                  tmp_path: Path) -> None:
    devices = tmp_path / "line-7.txt"
    devices.write_text("# line 7, lot 2026-11\nsensor-0001\n\nsensor-0002\nsensor-0003\n")
    out = tmp_path / "secrets" / "line-7.csv"
    missing = fleetpki("bootstrap", "create", "--profile", "sensor", "--devices", str(devices),
                       "--out", str(out), "--expires", "14d")
    assert missing.exit_code == 2 and "does not exist" in missing.output, missing.output
    assert not out.parent.exists()  # not created: a typo must not scatter secrets
    assert "sensor-0001" not in fleetpki("bootstrap", "list", "--all").output
    out.parent.mkdir()
    made = fleetpki("bootstrap", "create", "--profile", "sensor", "--devices", str(devices),
                    "--out", str(out), "--expires", "14d")
    assert made.exit_code == 0, made.output
    assert "3 per-device credential(s)" in made.output and "only copy" in made.output
    assert out.stat().st_mode & 0o777 == 0o600
    lines = out.read_text().splitlines()
    assert lines[0] == "device_id,id,secret,expires_at"
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == ["sensor-0001", "sensor-0002", "sensor-0003"]
    listed = fleetpki("bootstrap", "list").output
    for device, credential_id, secret, _ in rows:
        assert credential_id in listed and device in listed and secret not in listed
    assert not list(out.parent.glob(".*"))  # no partial file left beside it
    again = fleetpki("bootstrap", "create", "--profile", "sensor", "--devices", str(devices),
                     "--out", str(out))
    assert again.exit_code == 2 and "never overwrites" in again.output
    assert out.read_text().splitlines() == lines


@pytest.mark.parametrize(("content", "extra", "says"), [
    ("sensor-1\nsensor-1\n", [], "listed twice"),
    ("sensor-1\n", ["--uses", "5"], "leave out --device, --id, --uses"),
    ("sensor-1\n", ["--profile", "nope"], "no profile named 'nope'"),
])
def test_per_device_secrets_refused_write_nothing(fleetpki: Cli, tmp_path: Path, content: str,
                                                  extra: list[str], says: str) -> None:
    devices = tmp_path / "ids.txt"
    devices.write_text(content)
    out = tmp_path / "out.csv"
    result = fleetpki("bootstrap", "create", "--profile", "sensor", "--devices", str(devices),
                      "--out", str(out), *extra)
    assert result.exit_code != 0 and says in result.output, result.output
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert "bt-" not in fleetpki("bootstrap", "list", "--all").output
    alone = fleetpki("bootstrap", "create", "--profile", "sensor", "--devices", str(devices))
    assert alone.exit_code == 2 and "--devices and --out go together" in alone.output


def add_acme_with_allow_list(fleetpki: Cli, tmp_path: Path, allow_list: bytes) -> Path:
    """Trust a manufacturer CA named acme with this allow list, which names two devices."""
    ca = make_factory_pki(tmp_path / "factory", [])
    ids = tmp_path / "ids.txt"
    ids.write_bytes(allow_list)
    added = fleetpki("manufacturers", "add", "acme", "--ca", str(ca), "--profile", "sensor",
                     "--allow-list", str(ids))
    assert added.exit_code == 0 and "2 device ids allowed" in added.output, added.output
    return ids


def test_manufacturer_with_allow_list(fleetpki: Cli, tmp_path: Path) -> None:
    ids = add_acme_with_allow_list(fleetpki, tmp_path, b"# shipped to us\nACME-1\nACME-2\n\n")
    more = tmp_path / "more.txt"
    more.write_text("ACME-2\nACME-3\n")
    assert "1 new device id(s)" in fleetpki("manufacturers", "allow", "acme", str(more)).output
    listed = fleetpki("manufacturers", "list").output
    assert "acme" in listed and "sensor" in listed
    not_a_ca = fleetpki("manufacturers", "add", "other", "--ca", str(ids), "--profile", "sensor")
    assert not_a_ca.exit_code == 2 and "not a certificate" in not_a_ca.output


def test_allow_list_from_a_windows_editor_and_a_binary_one(fleetpki: Cli, tmp_path: Path) -> None:
    add_acme_with_allow_list(fleetpki, tmp_path, b"\xef\xbb\xbfACME-1\r\nACME-2\r\n")
    # The byte-order mark did not become part of the first id: it is known already.
    again = tmp_path / "again.txt"
    again.write_text("ACME-1\n")
    assert "0 new device id(s)" in fleetpki("manufacturers", "allow", "acme", str(again)).output
    binary = tmp_path / "ids.bin"
    binary.write_bytes(b"ACME-\xff\n")
    refused = fleetpki("manufacturers", "allow", "acme", str(binary))
    assert refused.exit_code == 2, refused.output
    assert "not UTF-8 text" in refused.output and "internal error" not in refused.output


def test_approvals_of_unknown_ids_are_refused(fleetpki: Cli) -> None:
    assert json.loads("[" + ",".join(fleetpki("approvals", "list", "--json").output.split())
                      + "]") == []
    missing = fleetpki("approvals", "approve", "0123456789abcdef")
    assert missing.exit_code == 5 and "approvals list" in missing.output
