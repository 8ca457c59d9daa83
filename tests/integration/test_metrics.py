"""`GET /metrics` on the real `fleetpki serve` with two workers: an enrollment with curl, a
refused one, then scrapes with curl, parsed by prometheus_client's own parser. Whichever worker
answers a scrape must report what every worker counted (multiprocess mode)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.est_home import Home, new_csr
from support.fleet_server import RunningServer, fleet_server
from support.lint import require_tool

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Served:
    server: RunningServer
    home: Home
    work: Path
    token: str

    def curl(self, url: str, *args: str, body: bytes | None = None) -> tuple[int, str, str]:
        """One request; returns (status, lower-cased headers text, body)."""
        headers = self.work / "headers.txt"
        command = [require_tool("curl"), "-sS", "--max-time", "30", "--cacert",
                   str(self.server.tls_chain), "-D", str(headers), "-o", "-", url, *args]
        if body is not None:
            command += ["--data-binary", "@-"]
        result = subprocess.run(command, input=body, capture_output=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        head = headers.read_text(encoding="latin-1")
        return int(head.split()[1]), head.lower(), result.stdout.decode()

    def scrape(self) -> Samples:
        status, _, text = self.curl(f"{self.server.admin_base}/metrics", "-H",
                                    f"Authorization: Bearer {self.token}")
        assert status == 200, text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def served(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("metrics")
    home = base / "home"
    shutil.copytree(initialised_home_template, home)
    work = base / "work"
    work.mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "fleetpki.cli", "--home", str(home), "admin", "token", "create",
         "--name", "prom", "--role", "auditor"], capture_output=True, timeout=60, check=True)
    token = made.stdout.decode().strip()
    with fleet_server(home, workers=2) as server:
        yield Served(server, Home(home), work, token)


def _enroll(served: Served, password: str | None) -> int:
    credential = served.home.credential("sensor")
    _, csr = new_csr(served.work, f"device-{password}", "sensor-0001")
    status, _, _ = served.curl(
        f"{served.server.base}/simpleenroll", "-u",
        f"{credential.id}:{password or credential.secret}",
        "-H", "Content-Type: application/pkcs10", body=base64.b64encode(csr.read_bytes()))
    return status


def test_metrics_without_a_token_are_refused(served: Served) -> None:
    status, headers, text = served.curl(f"{served.server.admin_base}/metrics")
    assert status == 401
    assert "www-authenticate: bearer" in headers
    assert "fleetpki_" not in text
    status, _, _ = served.curl(f"{served.server.admin_base}/metrics", "-H",
                               "Authorization: Bearer fpk_0000000000000000_wrong")
    assert status == 401


def test_enrollments_requests_and_freshness_add_up_across_workers(served: Served) -> None:
    assert _enroll(served, None) == 200
    assert _enroll(served, "wrong-password") == 401
    served.curl(f"{served.server.revocation_base}/crl/no-such.crl")
    # OCSP GET and POST, answered outside ASGI (serving/direct.py), counted all the same:
    # garbage gets an OCSP malformedRequest, which travels as HTTP 200.
    assert served.curl(f"{served.server.revocation_base}/ocsp/AAAA")[0] == 200
    assert served.curl(f"{served.server.revocation_base}/ocsp", "-H",
                       "Content-Type: application/ocsp-request", body=b"\x30\x00")[0] == 200
    ocsp = ("fleetpki_http_request_duration_seconds_count",
            (("listener", "revocation"), ("route", "ocsp"), ("status", "2xx")))
    # The summary loop computes its first pass just after start, and each worker writes its
    # request timings within a second: wait for both (bounded).
    summary = ("fleetpki_certificates_expiring", (("within", "7d"),))
    crl = ("fleetpki_http_request_duration_seconds_count",
           (("listener", "revocation"), ("route", "crl"), ("status", "4xx")))
    deadline = time.monotonic() + 60
    first = served.scrape()
    while summary not in first or not first.get(crl) or first.get(ocsp, 0) < 2:
        assert time.monotonic() < deadline, "no fleet summary or request timings within 60 s"
        time.sleep(0.5)
        first = served.scrape()
    time.sleep(1.5)  # the enrollment's timings too, if another worker took it
    first = served.scrape()
    # Each curl is a new connection, spread over both workers: every answer must hold it all.
    for samples in [first] + [served.scrape() for _ in range(5)]:
        assert samples[("fleetpki_certificates_issued_total",
                        (("profile", "sensor"), ("protocol", "est")))] == 1
        refused = sum(value for (name, labels), value in samples.items()
                      if name == "fleetpki_enrollments_refused_total"
                      and dict(labels)["protocol"] == "est")
        assert refused >= 1
        est = {labels: value for (name, labels), value in samples.items()
               if name == "fleetpki_http_request_duration_seconds_count"
               and dict(labels)["listener"] == "est"}
        assert est[(("listener", "est"), ("route", "simpleenroll"), ("status", "2xx"))] == 1
        assert est[(("listener", "est"), ("route", "simpleenroll"), ("status", "4xx"))] == 1
        assert samples[("fleetpki_http_request_duration_seconds_count",
                        (("listener", "revocation"), ("route", "crl"), ("status", "4xx")))] == 1
        assert samples[ocsp] == 2
        assert ("fleetpki_certificates_expiring", (("within", "30d"),)) in samples
        assert samples[("fleetpki_inventory_summary_age_seconds", ())] >= 0
    issuing = [dict(labels)["ca"] for (name, labels), _ in samples.items()
               if name == "fleetpki_ca_certificate_expiry_seconds"
               and dict(labels)["role"] == "issuing"]
    assert issuing
    for ca in issuing:
        fresh = [value for (name, labels), value in samples.items()
                 if name == "fleetpki_crl_next_update_seconds" and dict(labels)["issuer"] == ca
                 and dict(labels)["kind"] == "full"]
        assert fresh and all(value > 0 for value in fresh)
        assert samples[("fleetpki_ocsp_responder_certificate_expiry_seconds",
                        (("issuer", ca),))] > 0
    assert all(value == 1 for (name, _), value in samples.items()
               if name == "fleetpki_metrics_source_up")


def test_no_metric_names_a_device_or_serial(served: Served) -> None:
    text = served.curl(f"{served.server.admin_base}/metrics", "-H",
                       f"Authorization: Bearer {served.token}")[2]
    assert "sensor-0001" not in text
    assert "bt-" not in text
