"""`fleetpki simulate --live`: real agents over HTTPS against a running `fleetpki serve`.

A profile with two-minute certificates that renew after half their life, so that every
device enrolls and renews at least once in a run of a little more than a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetpki.cli.main import cli
from support.est_home import prepare_est_home
from support.fleet_server import fleet_server

pytestmark = pytest.mark.slow

PROFILE = """
[profiles.live]
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = { default = "120s", maximum = "120s", backdate = "0s" }
subject.attributes.CN = { required = true, pattern = "^live-[0-9]{5}$" }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 0.6, info_interval = "1m" }
"""


def test_live_agents_enroll_and_renew_against_a_real_server(
        initialised_home_template: Path, tmp_path: Path) -> None:
    home = prepare_est_home(initialised_home_template, tmp_path / "home")
    with (home.path / "profiles.toml").open("a") as profiles:
        profiles.write(PROFILE)
    credential = home.credential("live", uses=12)
    roots = tmp_path / "root.pem"
    roots.write_text(home.cli("ca", "export-chain", "root"))
    with fleet_server(home.path) as server:
        out = tmp_path / "report"
        result = CliRunner().invoke(cli, [
            "simulate", "--live", f"https://127.0.0.1:{server.port}",
            "--roots", str(roots), "--bootstrap",
            f"{credential.id}:{credential.secret}", "--label", "live", "--devices", "12",
            "--minutes", "1.4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "live.json").read_text())
    assert report["devices"] == 12
    assert report["with_valid_certificate"] == 12 and report["dark"] == 0
    assert report["outcomes"]["enrolled"] == 12
    # Renewal opens 48 s into a 120 s certificate: every device renewed at least once.
    assert report["outcomes"].get("renewed", 0) >= 12
    assert report["certificates_issued"] >= 24
    issued = [line for line in home.cli("certs", "list", "--json", "--limit", "1000",
                                        "--profile", "live").splitlines() if line.strip()]
    assert len(issued) == report["certificates_issued"]


def test_live_mode_says_what_it_needs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "--live", "https://127.0.0.1:9",
                                      "--devices", "2", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "--roots" in result.output and "--bootstrap" in result.output
