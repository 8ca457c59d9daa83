"""HTTP side of the metrics: a latency middleware for every listener, and `GET /metrics`.

The middleware sits in front of the OCSP responder, the busiest thing a PKI serves, so it does
only what it must per request: two clock reads, a route label from a few string comparisons, a
dict lookup and a bisection, two additions in memory. Writing each observation to the shared
files of multiprocess mode costs more than all of that together (two locked writes to a memory
map: about 8 µs per request in front of the responder, measured, against about 2 µs for the rest),
so observations are tallied in the worker and written at most once a second (`FLUSH_SECONDS`):
a scrape sees them that much later, and a worker killed outright loses its last second of them.

Routes are coarse and fixed (an EST operation, "ocsp", "crl", "api", ...): a raw path carries
labels, serials and base64 requests, and every distinct label value would be a time series of
its own.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Collection, Sequence

from prometheus_client import Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetpki.core.errors import NotAuthenticated

__all__ = ["FLUSH_SECONDS", "MetricsEndpoint", "RequestTimer", "by_last_segment", "by_prefix",
           "with_endpoint"]

RouteOf = Callable[[str], str]
_STATUS_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")


def by_prefix(routes: Sequence[tuple[str, str]], otherwise: str) -> RouteOf:
    """The label of the first (prefix, label) whose prefix is the path, or the path's leading
    segments; `otherwise` for any other path."""
    pairs = tuple((prefix, prefix + "/", label) for prefix, label in routes)

    def route_of(path: str) -> str:
        for exact, under, label in pairs:
            if path == exact or path.startswith(under):
                return label
        return otherwise

    return route_of


def by_last_segment(prefix: str, names: Collection[str], otherwise: str) -> RouteOf:
    """Under `prefix`, the path's last segment when it is one of `names` (EST: the operation,
    with or without a label before it); `otherwise` for any other path."""
    under, known = prefix + "/", frozenset(names)

    def route_of(path: str) -> str:
        if path.startswith(under):
            last = path.rpartition("/")[2]
            if last in known:
                return last
        return otherwise

    return route_of


FLUSH_SECONDS = 1.0


class _Tally:
    """Observations of one labelled histogram not yet written to it: a count per bucket (not
    cumulative, as the histogram keeps them) and their sum."""

    __slots__ = ("child", "counts", "total")

    def __init__(self, child: Histogram, buckets: int) -> None:
        self.child = child
        self.counts = [0] * buckets
        self.total = 0.0

    def write(self) -> None:
        """Add the tally to the histogram: what `observe` does for each value, at once. This
        reaches into prometheus_client's Histogram (`_sum`, `_buckets`: the values `observe`
        increments), which has no public call for it; tests/unit/metrics check the result
        against `observe`, so a change of the library fails them instead of skewing figures."""
        counts, total = self.counts, self.total
        self.counts, self.total = [0] * len(counts), 0.0
        if not any(counts):
            return
        self.child._sum.inc(total)
        for bucket, count in zip(self.child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


class RequestTimer:
    """ASGI middleware observing each HTTP request's duration in a histogram labelled
    (listener, route, status class). A request that fails before it answers counts as 5xx:
    that is what the server sends then. Observations reach the histogram within
    `FLUSH_SECONDS`, or at once with `flush()`."""

    def __init__(self, app: ASGIApp, histogram: Histogram, listener: str,
                 route_of: RouteOf) -> None:
        self._app = app
        self._histogram = histogram
        self._listener = listener
        self._route_of = route_of
        self._bounds: list[float] = list(histogram._upper_bounds)  # +Inf last
        # Bounded: the route labels times the five status classes.
        self._tallies: dict[tuple[str, int], _Tally] = {}
        self._due: float | None = None  # when the scheduled flush should have run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, timed_send)
        finally:
            self.observe(scope["path"], status, started)

    def observe(self, path: str, status: int, started: float) -> None:
        """Count a request to `path` that began at `started` (time.perf_counter()) and ends
        now. Call it on the event loop."""
        self.observe_route(self._route_of(path), status, started)

    def observe_route(self, route: str, status: int, started: float) -> None:
        """`observe` for a caller that knows the route label already: requests answered
        outside the app (serving/direct.py)."""
        elapsed = time.perf_counter() - started
        key = (route, status // 100)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tally(key)
        tally.counts[bisect.bisect_left(self._bounds, elapsed)] += 1
        tally.total += elapsed
        if self._due is None:
            self._due = started + FLUSH_SECONDS
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
        elif started > self._due + FLUSH_SECONDS:  # its loop ended before it ran
            self.flush()

    def flush(self) -> None:
        """Write what was tallied to the histogram."""
        self._due = None
        for tally in list(self._tallies.values()):
            tally.write()

    def _tally(self, key: tuple[str, int]) -> _Tally:
        route, hundreds = key
        label = _STATUS_CLASSES[hundreds] if 0 <= hundreds < len(_STATUS_CLASSES) else "5xx"
        child = self._histogram.labels(self._listener, route, label)
        tally = self._tallies[key] = _Tally(child, len(self._bounds))
        return tally


Authenticate = Callable[[str], object]  # raises NotAuthenticated


class MetricsEndpoint:
    """`GET /metrics` in Prometheus' text format (or OpenMetrics, when asked for), for holders
    of an admin API token of any role (`Authorization: Bearer <token>`): the figures say how
    busy the CA is and which profiles enroll, which is not for anyone who can reach the port.
    The token check and the collection read the store: both run off the event loop."""

    def __init__(self, registry: Callable[[], CollectorRegistry],
                 authenticate: Authenticate | None) -> None:
        self._registry = registry
        self._authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._respond(scope)
        await response(scope, receive, send)

    async def _respond(self, scope: Scope) -> Response:
        if scope["method"] != "GET":
            return PlainTextResponse("Method Not Allowed\n", 405, headers={"Allow": "GET"})
        headers = _headers(scope)
        if self._authenticate is not None:
            refusal = await self._refusal(headers.get("authorization"))
            if refusal is not None:
                return PlainTextResponse(
                    f"{refusal}\n", 401,
                    headers={"WWW-Authenticate": 'Bearer realm="fleetpki metrics"'})
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        body = await run_in_threadpool(lambda: encoder(self._registry()))
        return Response(body, headers={"Content-Type": content_type,
                                       "Cache-Control": "no-store"})

    async def _refusal(self, authorization: str | None) -> str | None:
        """Why the request may not read the metrics; None if it may."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ("send an admin API token: `Authorization: Bearer <token>` (make one with "
                    "`fleetpki admin token create --role auditor`)")
        assert self._authenticate is not None
        try:
            await run_in_threadpool(self._authenticate, token)
        except NotAuthenticated as error:
            return str(error)
        return None


def _headers(scope: Scope) -> dict[str, str]:
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}


def with_endpoint(path: str, endpoint: ASGIApp, app: ASGIApp) -> ASGIApp:
    """`app`, except that HTTP requests for exactly `path` go to `endpoint`."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        target = endpoint if scope["type"] == "http" and scope["path"] == path else app
        await target(scope, receive, send)

    return dispatch
