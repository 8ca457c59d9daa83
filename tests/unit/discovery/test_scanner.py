"""The scanner against real sockets on 127.0.0.1: whole chains fetched without verification,
each kind of failure named, the timeout and the concurrency bound honoured."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from fleetpki.discovery.scanner import (
    ScanOptions,
    ScanResult,
    failure_reason,
    scan,
    scan_endpoints,
    served_chain,
)
from fleetpki.discovery.targets import Endpoint, parse_targets
from support.ports import free_port
from support.tls_endpoints import (
    PlainEndpoint,
    SilentEndpoint,
    TlsEndpoint,
    chain_pem,
    key_pem,
    legacy_certificate,
    make_certificate,
    rsa_key,
)

FAST = ScanOptions(concurrency=8, timeout=2.0)


def test_the_whole_served_chain_comes_back_leaf_first_unverified() -> None:
    root = make_certificate("Scan Root", ca=True)
    issuing = make_certificate("Scan Issuing", issuer=root, ca=True)
    leaf = make_certificate("scan-leaf", issuer=issuing)
    with TlsEndpoint(chain_pem(leaf.cert, issuing.cert), key_pem(leaf.key)) as server:
        [result] = scan_endpoints(parse_targets([server.target]), FAST)
    assert result.answered and result.error is None
    assert result.chain == (leaf.cert.public_bytes(Encoding.DER),
                            issuing.cert.public_bytes(Encoding.DER))


def test_weak_and_expired_certificates_are_fetched_all_the_same() -> None:
    weak = legacy_certificate("old-box", rsa_key(1024))
    expired = make_certificate("gone", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
                               days=1)
    with TlsEndpoint(chain_pem(weak.cert), key_pem(weak.key)) as old, \
            TlsEndpoint(chain_pem(expired.cert), key_pem(expired.key)) as gone:
        results = scan_endpoints(parse_targets([old.target, gone.target]), FAST)
    assert [r.chain for r in results] == [(weak.cert.public_bytes(Encoding.DER),),
                                          (expired.cert.public_bytes(Encoding.DER),)]


def test_failures_are_named_refused_not_tls_timeout() -> None:
    closed = Endpoint("127.0.0.1", free_port())
    with PlainEndpoint() as plain, SilentEndpoint() as silent:
        started = time.monotonic()
        results = scan_endpoints(
            [closed, *parse_targets([plain.target, silent.target])],
            ScanOptions(concurrency=4, timeout=0.5))
        elapsed = time.monotonic() - started
    assert results[0].error == "refused"
    assert results[1].error is not None and results[1].error.startswith("not TLS (")
    assert results[2].error == "timeout"
    assert all(not r.answered and r.chain == () for r in results)
    assert elapsed < 3, "the silent endpoint was given more than its timeout"


def test_results_keep_the_order_of_the_endpoints_and_report_progress() -> None:
    leaf = make_certificate("ordered")
    seen: list[ScanResult] = []
    with TlsEndpoint(chain_pem(leaf.cert), key_pem(leaf.key)) as server:
        endpoints = [Endpoint("127.0.0.1", free_port()), *parse_targets([server.target]),
                     Endpoint("127.0.0.1", free_port())]
        results = scan_endpoints(endpoints, FAST, seen.append)
    assert [r.endpoint for r in results] == endpoints
    assert sorted(map(id, seen)) == sorted(map(id, results))


def test_no_more_than_concurrency_endpoints_are_open_at_once() -> None:
    """Twelve silent endpoints, two at a time, half a second each: three seconds, and the
    listeners never see more than two connections open together."""
    with SilentEndpoint() as silent:
        endpoints = [Endpoint("127.0.0.1", silent.port)] * 6
        started = time.monotonic()
        results = asyncio.run(scan(endpoints, ScanOptions(concurrency=2, timeout=0.5)))
        elapsed = time.monotonic() - started
        assert silent.connections == 6
    assert all(r.error == "timeout" for r in results)
    assert 1.4 < elapsed < 4


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ScanOptions(concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        ScanOptions(timeout=0)


@pytest.mark.parametrize(("error", "reason"), [
    (TimeoutError(), "timeout"),
    (ConnectionRefusedError(111, "Connection refused"), "refused"),
    (ConnectionResetError(104, "reset"), "closed during the TLS handshake"),
    (OSError(113, "No route to host"), "unreachable (No route to host)"),
])
def test_failure_reasons(error: OSError, reason: str) -> None:
    assert failure_reason(error) == reason


class _LeafOnly:
    """An SSL object of a Python with no way to read the unverified chain."""

    def getpeercert(self, binary_form: bool = False) -> bytes:
        assert binary_form
        return b"leaf der"


class _Python313:
    def get_unverified_chain(self) -> list[bytes]:
        return [b"leaf der", b"issuer der"]


def test_the_chain_falls_back_to_the_public_call_then_to_the_leaf_alone() -> None:
    assert served_chain(_Python313()) == (b"leaf der", b"issuer der")  # type: ignore[arg-type]
    assert served_chain(_LeafOnly()) == (b"leaf der",)  # type: ignore[arg-type]
    assert served_chain(None) == ()
