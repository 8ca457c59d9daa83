"""The scrape-time gauges: read from a fake store on a fake clock, checked in the text format
Prometheus itself parses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from fleetpki.ca.ceremony import ca_name, create_issuing, create_root
from fleetpki.core.clock import FakeClock
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.core.keys import KeySpec
from fleetpki.core.records import CARecord, CARole
from fleetpki.metrics.collector import FleetCollector
from fleetpki.metrics.registry import EnrollmentCounter, FleetMetrics, scrape_registry
from fleetpki.store.api import CrlPublication

NOW = dt.datetime(2030, 3, 1, 12, 0, tzinfo=dt.UTC)
ROOT = create_root("root", ca_name("Root", "T"), KeySpec.parse("ec-p256"), now=NOW)
ISSUING = create_issuing("issuing", ca_name("Issuing", "T"), KeySpec.parse("ec-p256"), ROOT,
                         now=NOW)


def _record(signer_name: str, certificate: x509.Certificate, role: CARole) -> CARecord:
    return CARecord(signer_name, role, certificate.public_bytes(serialization.Encoding.DER),
                    None if role is CARole.root else "root", "k", NOW)


def _summary(computed_at: dt.datetime) -> StoredSummary:
    document = {"certificates": {"total": 10, "valid": 7, "expired": 2, "revoked": 1,
                                 "expiring_7d": 3, "expiring_30d": 5},
                "compliance": {"overdue_renewal": 2}}
    return StoredSummary(computed_at=computed_at, seconds=0.5, document=json.dumps(document))


def _crl(kind: str, scope: str = "all") -> CrlPublication:
    return CrlPublication(issuer="issuing", scope=scope, kind=kind, number=4,
                          this_update=NOW - dt.timedelta(hours=2),
                          next_update=NOW + dt.timedelta(hours=22), watermark=1, entries=17,
                          size=900)


@dataclasses.dataclass
class FakeReader:
    summary: StoredSummary | None = None
    failing: set[str] = dataclasses.field(default_factory=set)

    def list_cas(self) -> list[CARecord]:
        return [_record("root", ROOT.certificate, CARole.root),
                _record("issuing", ISSUING.certificate, CARole.issuing)]

    def crl_publications(self, issuer: str) -> list[CrlPublication]:
        if "crl" in self.failing:
            raise RuntimeError("database is locked")
        return [_crl("full"), _crl("delta")] if issuer == "issuing" else []

    def latest_summary(self) -> StoredSummary | None:
        return self.summary

    def audit_head(self) -> tuple[int, str]:
        return 42, "ab" * 32


def scrape(collector: FleetCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}, through the text format."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_summary_gauges_and_their_age() -> None:
    collector = FleetCollector(FakeReader(_summary(NOW - dt.timedelta(minutes=20))),
                               FakeClock(NOW))
    samples = scrape(collector)
    assert samples[("fleetpki_certificates_expiring", (("within", "7d"),))] == 3
    assert samples[("fleetpki_certificates_expiring", (("within", "30d"),))] == 5
    assert samples[("fleetpki_certificates", (("status", "valid"),))] == 7
    assert samples[("fleetpki_certificates", (("status", "revoked"),))] == 1
    assert samples[("fleetpki_certificates_overdue_renewal", ())] == 2
    assert samples[("fleetpki_inventory_summary_age_seconds", ())] == 1200


def test_no_summary_yet_leaves_its_gauges_absent() -> None:
    samples = scrape(FleetCollector(FakeReader(None), FakeClock(NOW)))
    assert not any(name.startswith("fleetpki_certificates") for name, _ in samples)
    assert samples[("fleetpki_metrics_source_up", (("source", "summary"),))] == 1


def test_crl_freshness_per_series() -> None:
    samples = scrape(FleetCollector(FakeReader(), FakeClock(NOW)))
    full = (("issuer", "issuing"), ("kind", "full"), ("scope", "all"))
    assert samples[("fleetpki_crl_next_update_seconds", full)] == 22 * 3600
    assert samples[("fleetpki_crl_age_seconds", full)] == 2 * 3600
    assert samples[("fleetpki_crl_entries", full)] == 17
    delta = (("issuer", "issuing"), ("kind", "delta"), ("scope", "all"))
    assert samples[("fleetpki_crl_next_update_seconds", delta)] == 22 * 3600


def test_a_stale_crl_goes_negative() -> None:
    clock = FakeClock(NOW)
    collector = FleetCollector(FakeReader(), clock)
    clock.advance(dt.timedelta(days=1))
    full = (("issuer", "issuing"), ("kind", "full"), ("scope", "all"))
    assert scrape(collector)[("fleetpki_crl_next_update_seconds", full)] == -2 * 3600


def test_ca_and_responder_certificate_expiry() -> None:
    collector = FleetCollector(FakeReader(), FakeClock(NOW),
                               lambda: [("issuing", ISSUING.certificate)])
    samples = scrape(collector)
    left = (ISSUING.certificate.not_valid_after_utc - NOW).total_seconds()
    assert samples[("fleetpki_ocsp_responder_certificate_expiry_seconds",
                    (("issuer", "issuing"),))] == left
    assert samples[("fleetpki_ca_certificate_expiry_seconds",
                    (("ca", "issuing"), ("role", "issuing")))] == left
    assert (("fleetpki_ca_certificate_expiry_seconds", (("ca", "root"), ("role", "root")))
            in samples)
    assert samples[("fleetpki_audit_log_head_seq", ())] == 42


def test_a_failing_source_is_reported_and_the_rest_still_served() -> None:
    samples = scrape(FleetCollector(FakeReader(_summary(NOW), failing={"crl"}),
                                    FakeClock(NOW)))
    assert samples[("fleetpki_metrics_source_up", (("source", "crl"),))] == 0
    assert samples[("fleetpki_metrics_source_up", (("source", "summary"),))] == 1
    assert not any(name.startswith("fleetpki_crl_") for name, _ in samples)
    assert ("fleetpki_certificates_expiring", (("within", "7d"),)) in samples


def test_no_responders_callable_means_no_ocsp_source() -> None:
    samples = scrape(FleetCollector(FakeReader(), FakeClock(NOW)))
    assert ("fleetpki_metrics_source_up", (("source", "ocsp"),)) not in samples


def test_the_whole_scrape_is_valid_openmetrics_too() -> None:
    metrics = FleetMetrics.create(CollectorRegistry())
    EnrollmentCounter(metrics).issued("sensor", "est")
    metrics.request_seconds.labels("est", "simpleenroll", "2xx").observe(0.01)
    collector = FleetCollector(FakeReader(_summary(NOW)), FakeClock(NOW),
                               lambda: [("issuing", ISSUING.certificate)])
    text = openmetrics_latest(scrape_registry(metrics, collector)).decode()
    names = {family.name for family in openmetrics_families(text)}
    assert {"fleetpki_certificates_issued", "fleetpki_http_request_duration_seconds",
            "fleetpki_certificates", "fleetpki_certificates_expiring",
            "fleetpki_crl_next_update_seconds", "fleetpki_metrics_source_up"} <= names
