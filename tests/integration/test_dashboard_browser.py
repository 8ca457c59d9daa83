"""The dashboard in Debian's Chromium against a real `fleetpki serve`: log in with a token,
read the charts' data, search, revoke with a confirmation, find the audit entry.

Screenshots of each step land in tests/artifacts/screenshots/<test name>/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from fleetpki.core.issuance_plan import Request
from fleetpki.core.serials import serial_hex
from fleetpki.wiring import open_fleet
from support.admin_rig import OPERATOR
from support.browser import artifacts_dir, chromium_page, save_screenshot
from support.csrs import make_csr, make_key
from support.fleet_server import fleet_server

pytestmark = pytest.mark.slow


def _token(home: Path, role: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "fleetpki.cli", "--home", str(home), "admin", "token",
         "create", "--name", f"{role}-in-browser", "--role", role],
        capture_output=True, text=True, timeout=60, check=True)
    return made.stdout.strip()


def _populate(home: Path) -> dict[str, int]:
    """Six sensors (P-256) and two gateways (P-384); returns device id -> serial."""
    fleet = open_fleet(home)
    try:
        serials = {}
        for name, profile, key in ([(f"sensor-{i:03d}", "sensor", "ec-p256") for i in range(6)]
                                   + [(f"gw-{i:03d}", "gateway", "ec-p384") for i in range(2)]):
            csr, _ = make_csr(name, key=make_key(key))
            serials[name] = fleet.issuance.issue(Request.from_csr(csr), profile, OPERATOR).serial
        return serials
    finally:
        fleet.close()


def _wait_until(page: Page, expression: str, seconds: float = 10) -> None:
    """Poll with page.evaluate: wait_for_function evaluates its predicate with eval(), which
    the dashboard's Content-Security-Policy rightly forbids."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {seconds} s: {expression}"
        page.wait_for_timeout(100)


def _log_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Fleet overview")


def test_operator_logs_in_reads_charts_searches_revokes_and_sees_the_audit_entry(
        home: Path, request: pytest.FixtureRequest) -> None:
    serials = _populate(home)
    operator = _token(home, "operator")
    shots = artifacts_dir(request.node.name)
    with fleet_server(home) as server, chromium_page(shots) as page:
        base = server.admin_base
        page.goto(base + "/login")
        page.fill("#token", operator[:-3] + "xyz")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_contain_text("unknown API token")

        _log_in(page, base, operator)
        # The server computes a summary right after it starts; recompute so that it
        # certainly includes the certificates issued above.
        page.click("text=Recompute now")
        # Ours, plus the server's TLS certificate, the OCSP responder's, the SCEP RA
        # certificate (the default gateway profile serves SCEP) and the CMP server's, which
        # serve issued itself.
        # The pass runs in the background; the page reloads itself until it is done.
        expect(page.locator("#recomputing")).to_have_count(0, timeout=15_000)
        expect(page.locator("#count-valid")).to_have_text("12")
        for finding in ("weak_key", "validity_too_long", "missing_extension",
                        "profile_removed"):
            expect(page.locator(f"#finding-{finding} .count")).to_have_text("0")
        _wait_until(page, "!!(window.Chart && Chart.getChart('expiry-chart') "
                    "&& Chart.getChart('algorithm-chart'))")
        timeline = page.evaluate("Chart.getChart('expiry-chart').data.datasets[0].data")
        assert sum(timeline) == 12 and timeline[0] == 0  # nothing expired yet
        algorithms = page.evaluate(
            "(() => { const c = Chart.getChart('algorithm-chart');"
            " return Object.fromEntries(c.data.labels.map((l, i) =>"
            " [l, c.data.datasets[0].data[i]])); })()")
        assert algorithms["ec-p384"] == 2 and algorithms["ec-p256"] >= 7
        assert algorithms["rsa-3072"] == 1  # the SCEP RA certificate
        assert sum(algorithms.values()) == 12
        save_screenshot(page, shots / "1-overview.png")

        page.click("nav >> text=Certificates")
        page.fill("input[name=device_id]", "gw-001")
        page.click("#search button[type=submit]")
        rows = page.locator("#certificate-table tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(serial_hex(serials["gw-001"]))
        assert "device_id=gw-001" in page.url  # htmx pushed the search into the address
        save_screenshot(page, shots / "2-search.png")

        rows.first.locator("a").nth(1).click()
        expect(page.locator("h1")).to_have_text("Device gw-001")
        serial = serial_hex(serials["gw-001"])
        dialogs: list[str] = []

        def confirm(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", confirm)
        page.select_option(f"#cert-{serial} select[name=reason]", "keyCompromise")
        page.click(f"#cert-{serial} button.danger")
        expect(page.locator(f"#status-{serial}")).to_contain_text("revoked")
        expect(page.locator(f"#status-{serial}")).to_contain_text("keyCompromise")
        assert dialogs and serial in dialogs[0] and "cannot be undone" in dialogs[0]
        save_screenshot(page, shots / "3-revoked.png")

        page.click("nav >> text=Audit log")
        expect(page.locator("#chain-status")).to_contain_text("Hash chain intact")
        # The sensor profile re-signs its CRL at each revocation: that entry comes after.
        expect(page.locator("#audit-table tbody tr").first).to_contain_text("crl.full_signed")
        page.fill("input[name=action]", "certificate.revoked")
        page.click("form.filters button[type=submit]")
        expect(page.locator("#audit-table tbody tr")).to_have_count(1)
        first = page.locator("#audit-table tbody tr").first
        expect(first).to_contain_text("certificate.revoked")
        expect(first).to_contain_text(serial)
        expect(first).to_contain_text("token:operator-in-browser/")
        save_screenshot(page, shots / "4-audit.png")

        # A form posted without the dashboard's CSRF value changes nothing.
        forged = page.request.post(f"{base}/certificates/{serial_hex(serials['gw-000'])}"
                                   "/revoke", form={"reason": "superseded", "issuer": "issuing"})
        assert forged.status == 403
    fleet = open_fleet(home)
    try:
        assert fleet.store.get_certificate(serials["gw-001"]).revoked_at is not None  # type: ignore[union-attr]
        assert fleet.store.get_certificate(serials["gw-000"]).revoked_at is None  # type: ignore[union-attr]
    finally:
        fleet.close()


def test_an_auditor_sees_everything_and_can_change_nothing(
        home: Path, request: pytest.FixtureRequest) -> None:
    serials = _populate(home)
    auditor = _token(home, "auditor")
    shots = artifacts_dir(request.node.name)
    with fleet_server(home) as server, chromium_page(shots) as page:
        _log_in(page, server.admin_base, auditor)
        expect(page.locator("text=Recompute now")).to_have_count(0)
        page.goto(f"{server.admin_base}/devices/sensor-000")
        expect(page.locator("#history tbody tr")).to_have_count(1)
        expect(page.locator("button.danger")).to_have_count(0)
        save_screenshot(page, shots / "auditor-device.png")
        page.click("nav >> text=Discovered")
        expect(page.locator("#discovered-table")).to_contain_text("Nothing discovered yet")
        # Even a hand-made request with the right CSRF value is refused for the role.
        csrf = json.loads(page.locator("body").get_attribute("hx-headers") or "{}")
        refused = page.request.post(
            f"{server.admin_base}/certificates/{serial_hex(serials['sensor-000'])}/revoke",
            form={"reason": "superseded", "issuer": "issuing",
                  "csrf": csrf["X-CSRF-Token"]})
        assert refused.status == 403
        assert "operator role" in refused.text()
