"""The metrics a server process updates as it works, and how a scrape reads them back.

Labels stay few and bounded: profile names from profiles.toml, the protocol, the refusal's error
class, the listener, a coarse route and the status class. Never a device id, serial, address or
raw path: each distinct label value is a time series Prometheus keeps for weeks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from fleetpki.metrics import process

__all__ = ["LATENCY_BUCKETS", "EnrollmentCounter", "FleetMetrics", "process_metrics",
           "scrape_registry"]

# From a pre-signed OCSP answer (about 0.2 ms in process) to an RSA enrollment held up by a busy
# database (seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)


@dataclasses.dataclass(frozen=True)
class FleetMetrics:
    issued: Counter
    held: Counter
    refused: Counter
    request_seconds: Histogram
    # Where they are registered; None in multiprocess mode (a scrape reads the shared files).
    registry: CollectorRegistry | None

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> FleetMetrics:
        """Pass None in multiprocess mode, a registry of their own otherwise (tests)."""
        return cls(
            issued=Counter("fleetpki_certificates_issued",
                           "Certificates issued to devices, by profile and protocol.",
                           ["profile", "protocol"], registry=registry),
            held=Counter("fleetpki_enrollments_held",
                         "Enrollments held for an operator's approval, by profile and protocol.",
                         ["profile", "protocol"], registry=registry),
            refused=Counter("fleetpki_enrollments_refused",
                            "Enrollment requests refused, by profile ('-': before one was "
                            "known), protocol and reason (the domain error's class).",
                            ["profile", "protocol", "reason"], registry=registry),
            request_seconds=Histogram(
                "fleetpki_http_request_duration_seconds",
                "Time from a request's arrival at the application to its last byte, by "
                "listener, route (an EST operation, ocsp, crl, api, dashboard, ...) and "
                "status class.",
                ["listener", "route", "status"], buckets=LATENCY_BUCKETS, registry=registry),
            registry=registry)


class EnrollmentCounter:
    """The RA's EnrollmentObserver (ra/observer.py), counting into FleetMetrics."""

    def __init__(self, metrics: FleetMetrics) -> None:
        self._metrics = metrics

    def issued(self, profile: str, protocol: str) -> None:
        self._metrics.issued.labels(profile, protocol).inc()

    def held(self, profile: str, protocol: str) -> None:
        self._metrics.held.labels(profile, protocol).inc()

    def refused(self, profile: str, protocol: str, reason: str) -> None:
        self._metrics.refused.labels(profile, protocol, reason).inc()


_current: tuple[int, FleetMetrics] | None = None


def process_metrics() -> FleetMetrics:
    """This process's metrics, made on first use. A forked child makes its own: metrics made
    before the fork would write to the parent's files, or to memory no scrape reads."""
    global _current
    if _current is None or _current[0] != os.getpid():
        registry = None if process.directory() is not None else CollectorRegistry()
        _current = (os.getpid(), FleetMetrics.create(registry))
    return _current[1]


class _Registered:
    """A registry's metrics as one collector of another registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


def scrape_registry(metrics: FleetMetrics, *extra: Collector) -> CollectorRegistry:
    """What one scrape exposes: every process's counts (through the shared files in
    multiprocess mode, else `metrics`' own registry), and `extra` collectors."""
    registry = CollectorRegistry()
    shared = process.directory()
    if metrics.registry is None and shared is not None:
        MultiProcessCollector(registry, path=str(shared))  # type: ignore[no-untyped-call]
    elif metrics.registry is not None:
        registry.register(_Registered(metrics.registry))
    for collector in extra:
        registry.register(collector)
    return registry
