"""Gauges read from the store at scrape time: state every worker shares, so no worker counts it.

- the latest fleet summary (inventory/summary.py, computed apart by the server's summary loop):
  certificates by status, expiring within 7 and 30 days, overdue renewals, and the summary's
  age (a stale summary makes the others stale too);
- each CRL series (issuer, scope, kind) as last published: seconds until its nextUpdate
  (negative once relying parties must reject it) and since its thisUpdate;
- each CA certificate's and each delegated OCSP responder certificate's seconds to expiry;
- the audit log's head sequence number.

A source that cannot be read (a database hiccup) is left out of that scrape and reported with
`fleetpki_metrics_source_up{source} 0`; the counters are still served.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from cryptography import x509
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from fleetpki.core.clock import Clock
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.core.records import CARecord
from fleetpki.store.api import CrlPublication

__all__ = ["FleetCollector", "FleetReader", "ResponderCertificates"]

log = logging.getLogger(__name__)

# (issuing CA name, its delegated OCSP responder's certificate) for each responder.
ResponderCertificates = Callable[[], Iterable[tuple[str, x509.Certificate]]]


class FleetReader(Protocol):
    """The store, read-only, as far as a scrape needs it."""

    def list_cas(self) -> list[CARecord]: ...

    def crl_publications(self, issuer: str) -> list[CrlPublication]: ...

    def latest_summary(self) -> StoredSummary | None: ...

    def audit_head(self) -> tuple[int, str]: ...


class FleetCollector:
    def __init__(self, reader: FleetReader, clock: Clock,
                 responders: ResponderCertificates | None = None) -> None:
        self._reader = reader
        self._clock = clock
        self._responders = responders
        # CA certificates never change under a name; parse each once.
        self._ca_expiry: dict[bytes, dt.datetime] = {}

    def collect(self) -> Iterator[Metric]:
        now = self._clock.now()
        sources: list[tuple[str, Callable[[dt.datetime], list[Metric]]]] = [
            ("summary", self._summary), ("crl", self._crls), ("ca", self._cas),
            ("audit", self._audit)]
        if self._responders is not None:
            sources.append(("ocsp", self._ocsp))
        up = GaugeMetricFamily("fleetpki_metrics_source_up",
                               "1 if the source was read for this scrape, 0 if reading failed.",
                               labels=["source"])
        for name, read in sources:
            try:
                families = read(now)
            except Exception:
                log.exception("metrics source failed", extra={"source": name})
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up

    def _summary(self, now: dt.datetime) -> list[Metric]:
        stored = self._reader.latest_summary()
        if stored is None:  # before the first pass: absent, for absent() to see
            return []
        document = json.loads(stored.document)
        certificates = document["certificates"]
        age = GaugeMetricFamily("fleetpki_inventory_summary_age_seconds",
                                "Seconds since the fleet summary the other fleetpki_certificates "
                                "gauges come from was computed.",
                                value=(now - stored.computed_at).total_seconds())
        by_status = GaugeMetricFamily("fleetpki_certificates",
                                      "Certificates issued, by status, as of the fleet summary.",
                                      labels=["status"])
        for status in ("valid", "expired", "revoked"):
            by_status.add_metric([status], certificates[status])
        expiring = GaugeMetricFamily(
            "fleetpki_certificates_expiring",
            "Valid certificates whose notAfter falls within 7 or 30 days, as of the summary "
            "(the 30-day figure includes the 7-day one).", labels=["within"])
        expiring.add_metric(["7d"], certificates["expiring_7d"])
        expiring.add_metric(["30d"], certificates["expiring_30d"])
        families: list[Metric] = [age, by_status, expiring]
        overdue = document.get("compliance", {}).get("overdue_renewal")
        if overdue is not None:  # summaries stored before compliance views existed lack it
            families.append(GaugeMetricFamily(
                "fleetpki_certificates_overdue_renewal",
                "Devices whose newest certificate in a profile is past its renewal window with "
                "nothing newer issued, as of the summary.", value=overdue))
        return families

    def _crls(self, now: dt.datetime) -> list[Metric]:
        labels = ["issuer", "scope", "kind"]
        until = GaugeMetricFamily("fleetpki_crl_next_update_seconds",
                                  "Seconds until the last published CRL's nextUpdate; negative "
                                  "once it has passed.", labels=labels)
        since = GaugeMetricFamily("fleetpki_crl_age_seconds",
                                  "Seconds since the last published CRL's thisUpdate.",
                                  labels=labels)
        entries = GaugeMetricFamily("fleetpki_crl_entries",
                                    "Revoked certificates listed in the last published CRL.",
                                    labels=labels)
        for ca in self._reader.list_cas():
            for crl in self._reader.crl_publications(ca.name):
                series = [crl.issuer, crl.scope, crl.kind]
                until.add_metric(series, (crl.next_update - now).total_seconds())
                since.add_metric(series, (now - crl.this_update).total_seconds())
                entries.add_metric(series, crl.entries)
        return [until, since, entries]

    def _cas(self, now: dt.datetime) -> list[Metric]:
        expiry = GaugeMetricFamily("fleetpki_ca_certificate_expiry_seconds",
                                   "Seconds until each CA certificate's notAfter.",
                                   labels=["ca", "role"])
        for ca in self._reader.list_cas():
            not_after = self._ca_expiry.get(ca.certificate_der)
            if not_after is None:
                certificate = x509.load_der_x509_certificate(ca.certificate_der)
                not_after = self._ca_expiry[ca.certificate_der] = certificate.not_valid_after_utc
            expiry.add_metric([ca.name, ca.role.value], (not_after - now).total_seconds())
        return [expiry]

    def _ocsp(self, now: dt.datetime) -> list[Metric]:
        assert self._responders is not None
        expiry = GaugeMetricFamily("fleetpki_ocsp_responder_certificate_expiry_seconds",
                                   "Seconds until the delegated OCSP responder certificate of "
                                   "each issuing CA expires (it is renewed automatically well "
                                   "before).", labels=["issuer"])
        for issuer, certificate in self._responders():
            expiry.add_metric([issuer], (certificate.not_valid_after_utc - now).total_seconds())
        return [expiry]

    def _audit(self, now: dt.datetime) -> list[Metric]:
        seq, _ = self._reader.audit_head()
        return [GaugeMetricFamily("fleetpki_audit_log_head_seq",
                                  "Sequence number of the newest audit log entry.", value=seq)]
