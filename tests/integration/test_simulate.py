"""The fleet simulator against the real RA, CA and store, and its command line.

Small fleets with harsh conditions (short certificates, long offline stretches, a CA outage)
so that the policies' difference shows within seconds: the default policy keeps every device
alive, the naive one loses the devices that were away when their certificate ran out.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.cli.main import cli
from fleetpki.simulation_setup import run_shard
from fleetpki.simulator.engine import combine
from fleetpki.simulator.scenario import DAY, EarlyRenewal, MassRevocation, Outage, Scenario
from fleetpki.wiring import open_fleet
from support.lint import lint_certificate, require_tool

pytestmark = pytest.mark.slow

HARSH = Scenario(devices=150, duration=240 * DAY, rollout=20 * DAY, lifetime=30 * DAY,
                 missed_windows=0.05, offline_share=0.1, offline_days=(40, 80),
                 outages=(Outage(60 * DAY, 7 * DAY),), grace_after_expiry=10 * DAY,
                 info_interval=30 * DAY, seed=11)


def test_default_policy_keeps_every_device_and_naive_loses_the_offline_ones(
        tmp_path: Path) -> None:
    default = combine([run_shard(HARSH, "default", tmp_path)])
    naive = combine([run_shard(HARSH, "naive", tmp_path)])
    assert default.offline_devices > 5
    assert default.dark == 0 and default.ever_dark == 0
    # Devices back from a stretch longer than validity + grace re-enrolled with the IDevID.
    assert default.fallback_enrollments > 0
    assert naive.fallback_enrollments == 0
    assert naive.dark > 0
    assert naive.gap_device_days > default.gap_device_days
    # Every device renewed several times; the CA outage showed up as failed sessions.
    assert default.outcomes["renewed"] > 150 * 5
    assert default.outcomes["failed"] > 0
    assert sum(default.enrollments_per_day) == default.load.enrollments


def test_a_run_replays_exactly_from_its_seed(tmp_path: Path) -> None:
    small = Scenario(devices=40, duration=120 * DAY, rollout=10 * DAY, lifetime=20 * DAY,
                     outages=(Outage(30 * DAY, 5 * DAY),), seed=5)
    first = combine([run_shard(small, "default", tmp_path / "a")])
    again = combine([run_shard(small, "default", tmp_path / "b")])
    assert first.enrollments_per_day == again.enrollments_per_day
    assert first.outcomes == again.outcomes
    assert first.without_certificate_per_day == again.without_certificate_per_day
    other = combine([run_shard(small.__class__(**{**_fields(small), "seed": 6}), "default",
                               tmp_path / "c")])
    assert other.enrollments_per_day != first.enrollments_per_day


def _fields(scenario: Scenario) -> dict[str, object]:
    return {name: getattr(scenario, name) for name in scenario.__dataclass_fields__}


def test_mass_revocation_and_early_renewal_go_through_the_real_ra(tmp_path: Path) -> None:
    scenario = Scenario(devices=100, duration=120 * DAY, rollout=10 * DAY, lifetime=60 * DAY,
                        missed_windows=0.0, offline_share=0.0, outages=(),
                        revocations=(MassRevocation(15 * DAY, 0.2),),
                        early_renewals=(EarlyRenewal(30 * DAY, 5 * DAY),),
                        info_interval=2 * DAY, seed=3)
    result = combine([run_shard(scenario, "default", tmp_path)])
    assert 5 < result.revoked < 40
    # Each revoked device learned it from renewalinfo and enrolled again with its IDevID.
    assert result.fallback_enrollments >= result.revoked
    assert result.dark == 0
    # The advisory (day 30, within 5 days) brought every device issued before it forward:
    # with 60-day certificates nobody would otherwise renew before day 40.
    early = sum(result.enrollments_per_day[30:36])
    assert early >= 90, result.enrollments_per_day[25:45]
    # The RA recorded which advisory opened each early renewal.
    fleet = open_fleet(tmp_path / "default-0")
    try:
        actions = [e for e in fleet.store.audit_entries()
                   if e.action == "certificate.issued" and "renewal_advisory" in e.details]
        assert len(actions) >= 80
    finally:
        fleet.close()


def test_simulated_certificates_verify_with_openssl_and_pkilint(tmp_path: Path) -> None:
    scenario = Scenario(devices=10, duration=40 * DAY, rollout=5 * DAY, lifetime=10 * DAY,
                        outages=(), seed=2)
    run_shard(scenario, "default", tmp_path)
    fleet = open_fleet(tmp_path / "default-0")
    try:
        cas = {ca.name: x509.load_der_x509_certificate(ca.certificate_der)
               for ca in fleet.store.list_cas()}
        issued = [c for c in fleet.store.audit_entries() if c.action == "certificate.issued"]
        assert len(issued) >= 30
        serial = int(issued[-1].subject, 16)
        record = fleet.store.get_certificate(serial, "issuing")
        assert record is not None
    finally:
        fleet.close()
    pem = serialization.Encoding.PEM
    (tmp_path / "root.pem").write_bytes(cas["root"].public_bytes(pem))
    (tmp_path / "issuing.pem").write_bytes(cas["issuing"].public_bytes(pem))
    leaf = x509.load_der_x509_certificate(record.der)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    moment = int((leaf.not_valid_before_utc + dt.timedelta(hours=1)).timestamp())
    verified = subprocess.run(
        [require_tool("openssl"), "verify", "-x509_strict", "-attime", str(moment),
         "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "issuing.pem"),
         str(tmp_path / "leaf.pem")], capture_output=True, text=True, timeout=30, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert lint_certificate(record.der) == []


def test_the_command_writes_a_report_and_refuses_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "report"
    result = runner.invoke(cli, ["simulate", "--devices", "30", "--days", "60", "--lifetime",
                                 "15", "--outage", "20:3", "--workers", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "devices dark at the end" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [run["policy"] for run in summary] == ["default", "naive"]
    assert summary[0]["dark"] == 0
    for chart in ("enrollments-per-day.svg", "devices-without-certificate.svg"):
        root = ET.fromstring((out / chart).read_text())  # noqa: S314 - our own output
        assert root.tag.endswith("svg") and len(root.findall(".//{*}polyline")) == 2
    assert "<svg" in (out / "report.html").read_text()

    bad = runner.invoke(cli, ["simulate", "--outage", "twenty", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "DAY:VALUE" in bad.output
    assert not (tmp_path / "x").exists()
