"""The enrollment CLI: credentials shown once and listed without secrets, manufacturers,
approvals; bad input refused with a message and nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_manufacturer_with_allow_list(fleetpki: Cli, tmp_path: Path) -> None:
    ca = make_factory_pki(tmp_path / "factory", [])
    ids = tmp_path / "ids.txt"
    ids.write_text("# shipped to us\nACME-1\nACME-2\n\n")
    added = fleetpki("manufacturers", "add", "acme", "--ca", str(ca), "--profile", "sensor",
                     "--allow-list", str(ids))
    assert added.exit_code == 0 and "2 device ids allowed" in added.output, added.output
    more = tmp_path / "more.txt"
    more.write_text("ACME-2\nACME-3\n")
    assert "1 new device id(s)" in fleetpki("manufacturers", "allow", "acme", str(more)).output
    listed = fleetpki("manufacturers", "list").output
    assert "acme" in listed and "sensor" in listed
    not_a_ca = fleetpki("manufacturers", "add", "other", "--ca", str(ids), "--profile", "sensor")
    assert not_a_ca.exit_code == 2 and "not a certificate" in not_a_ca.output


def test_approvals_of_unknown_ids_are_refused(fleetpki: Cli) -> None:
    assert json.loads("[" + ",".join(fleetpki("approvals", "list", "--json").output.split())
                      + "]") == []
    missing = fleetpki("approvals", "approve", "0123456789abcdef")
    assert missing.exit_code == 5 and "approvals list" in missing.output
