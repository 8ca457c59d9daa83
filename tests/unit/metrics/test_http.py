"""The latency middleware and the scrape endpoint, in process (Starlette's TestClient)."""

from __future__ import annotations

import asyncio
import bisect

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from fleetpki.core.errors import NotAuthenticated
from fleetpki.metrics.http import (
    FLUSH_SECONDS,
    MetricsEndpoint,
    RequestTimer,
    by_last_segment,
    by_prefix,
    with_endpoint,
)
from fleetpki.metrics.registry import EnrollmentCounter, FleetMetrics, scrape_registry

Counts = dict[tuple[str, str, str], float]


def histogram_counts(registry: CollectorRegistry) -> Counts:
    """fleetpki_http_request_duration_seconds_count by (listener, route, status)."""
    text = generate_latest(registry).decode()
    return {(s.labels["listener"], s.labels["route"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "fleetpki_http_request_duration_seconds_count"}


async def fine(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def broken(request: Request) -> PlainTextResponse:
    raise RuntimeError("a bug")


def inner_app() -> Starlette:
    return Starlette(routes=[Route("/ocsp", fine, methods=["GET", "POST"]),
                             Route("/ocsp/{rest:path}", fine),
                             Route("/crl/{name:path}", fine),
                             Route("/broken", broken)])


@pytest.fixture
def metrics() -> FleetMetrics:
    return FleetMetrics.create(CollectorRegistry())


def test_route_labels_are_coarse_and_fixed() -> None:
    revocation = by_prefix([("/ocsp", "ocsp"), ("/crl", "crl")], "other")
    assert revocation("/ocsp") == "ocsp"
    assert revocation("/ocsp/MEIwQDA%2BMDwwOjAJBgUrDgMCGgUABBQ") == "ocsp"
    assert revocation("/crl/issuing.crl") == "crl"
    assert revocation("/ocspx") == "other"
    assert revocation("/") == "other"
    est = by_last_segment("/.well-known/est", ["simpleenroll", "cacerts"], "other")
    assert est("/.well-known/est/simpleenroll") == "simpleenroll"
    assert est("/.well-known/est/sensor/simpleenroll") == "simpleenroll"
    assert est("/.well-known/est/sensor-0001-made-up") == "other"
    assert est("/elsewhere/simpleenroll") == "other"


def test_requests_are_timed_by_listener_route_and_status_class(metrics: FleetMetrics) -> None:
    timer = RequestTimer(inner_app(), metrics.request_seconds, "revocation",
                         by_prefix([("/ocsp", "ocsp"), ("/crl", "crl")], "other"))
    client = TestClient(timer)
    for _ in range(3):
        assert client.post("/ocsp", content=b"x").status_code == 200
    assert client.get("/ocsp/c29tZXRoaW5n").status_code == 200
    assert client.get("/crl/issuing.crl").status_code == 200
    assert client.get("/no/such/serial/0a1b2c").status_code == 404
    assert not any(histogram_counts(registry_of(metrics)).values())  # tallied, not written
    timer.flush()
    counts = histogram_counts(registry_of(metrics))
    assert counts == {("revocation", "ocsp", "2xx"): 4, ("revocation", "crl", "2xx"): 1,
                      ("revocation", "other", "4xx"): 1}


def test_a_failing_request_counts_as_5xx(metrics: FleetMetrics) -> None:
    timer = RequestTimer(inner_app(), metrics.request_seconds, "admin",
                         by_prefix([], "dashboard"))
    client = TestClient(timer, raise_server_exceptions=False)
    assert client.get("/broken").status_code == 500
    timer.flush()

    async def dies_before_answering(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("no answer at all")

    bare_timer = RequestTimer(dies_before_answering, metrics.request_seconds, "admin",
                              by_prefix([], "dashboard"))
    bare = TestClient(bare_timer, raise_server_exceptions=False)
    assert bare.get("/").status_code == 500
    bare_timer.flush()
    assert histogram_counts(registry_of(metrics)) == {("admin", "dashboard", "5xx"): 2}


def test_latency_lands_in_the_buckets(metrics: FleetMetrics) -> None:
    timer = RequestTimer(inner_app(), metrics.request_seconds, "revocation",
                         by_prefix([("/ocsp", "ocsp")], "other"))
    TestClient(timer).post("/ocsp", content=b"x")
    timer.flush()
    text = generate_latest(registry_of(metrics)).decode()
    buckets = {s.labels["le"]: s.value for f in text_string_to_metric_families(text)
               for s in f.samples if s.name.endswith("_bucket")}
    assert buckets["+Inf"] == 1
    assert buckets["10.0"] == 1


def test_tallies_write_what_observe_would(metrics: FleetMetrics) -> None:
    """The tally writes into prometheus_client's Histogram storage; it must read back exactly
    as the same values observed one by one (bucket edges included)."""
    values = [0.0001, 0.0005, 0.00051, 0.003, 0.003, 0.1, 0.25, 9.99, 10.0, 12.5, 400.0]
    reference = FleetMetrics.create(CollectorRegistry())
    for value in values:
        reference.request_seconds.labels("revocation", "ocsp", "2xx").observe(value)
    timer = RequestTimer(inner_app(), metrics.request_seconds, "revocation",
                         by_prefix([("/ocsp", "ocsp")], "other"))
    tally = timer._tally(("ocsp", 2))
    for value in values:
        tally.counts[bisect.bisect_left(timer._bounds, value)] += 1
        tally.total += value
    timer.flush()
    timer.flush()  # nothing new: writes nothing
    assert _samples(registry_of(metrics)) == _samples(registry_of(reference))


def test_observations_are_written_within_a_second_by_the_loop(metrics: FleetMetrics) -> None:
    timer = RequestTimer(inner_app(), metrics.request_seconds, "revocation",
                         by_prefix([("/ocsp", "ocsp")], "other"))

    async def requests() -> None:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=timer),
                                   base_url="http://test")
        async with client:
            await client.post("/ocsp", content=b"x")
            await client.post("/ocsp", content=b"x")
        assert not any(histogram_counts(registry_of(metrics)).values())
        await asyncio.sleep(FLUSH_SECONDS + 0.2)
        assert histogram_counts(registry_of(metrics)) == {("revocation", "ocsp", "2xx"): 2}

    asyncio.run(requests())


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if not s.name.endswith("_created")}


def registry_of(metrics: FleetMetrics) -> CollectorRegistry:
    assert metrics.registry is not None
    return metrics.registry


# -- GET /metrics -------------------------------------------------------------------------


def authenticate(text: str) -> object:
    if text != "fpk_good_secret":
        raise NotAuthenticated("unknown API token or wrong secret")
    return "auditor"


@pytest.fixture
def scraped(metrics: FleetMetrics) -> TestClient:
    EnrollmentCounter(metrics).issued("sensor", "est")
    EnrollmentCounter(metrics).refused("-", "est", "NotAuthenticated")

    async def admin(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("the admin app")(scope, receive, send)

    endpoint = MetricsEndpoint(lambda: scrape_registry(metrics), authenticate)
    return TestClient(with_endpoint("/metrics", endpoint, admin))


def test_metrics_need_a_token(scraped: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"},
                    {"Authorization": "Bearer fpk_bad_secret"}, {"Authorization": "Bearer "}):
        reply = scraped.get("/metrics", headers=headers)
        assert reply.status_code == 401, headers
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert "fleetpki_" not in reply.text


def test_metrics_with_a_token(scraped: TestClient) -> None:
    reply = scraped.get("/metrics", headers={"Authorization": "bearer fpk_good_secret"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.headers["cache-control"] == "no-store"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(reply.text) for s in f.samples}
    assert samples[("fleetpki_certificates_issued_total",
                    (("profile", "sensor"), ("protocol", "est")))] == 1
    assert samples[("fleetpki_enrollments_refused_total",
                    (("profile", "-"), ("protocol", "est"), ("reason", "NotAuthenticated")))] == 1


def test_openmetrics_when_asked_for(scraped: TestClient) -> None:
    reply = scraped.get("/metrics", headers={
        "Authorization": "Bearer fpk_good_secret",
        "Accept": "application/openmetrics-text;version=1.0.0"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    assert reply.text.rstrip().endswith("# EOF")


def test_only_get(scraped: TestClient) -> None:
    reply = scraped.post("/metrics", headers={"Authorization": "Bearer fpk_good_secret"})
    assert reply.status_code == 405


def test_every_other_path_is_the_admin_apps(scraped: TestClient) -> None:
    for path in ("/", "/metrics/", "/api/v1/metrics", "/metricsx"):
        assert scraped.get(path).text == "the admin app", path
