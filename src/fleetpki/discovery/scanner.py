"""Fetch the certificate chain each endpoint serves: connect, handshake, read, hang up.

Nothing is verified here, on purpose: a scan must see expired, self-signed and weak
certificates to report them. The client therefore accepts any certificate and, at OpenSSL
security level 0, the legacy protocol versions, ciphers and key sizes that old endpoints
still use. It sends nothing after the handshake.

Concurrency is bounded by a semaphore that also bounds the tasks in flight, so a /16 range
costs `concurrency` sockets and tasks at a time, not 65,536. Each endpoint gets `timeout`
seconds for name resolution, connection and handshake together.
"""

from __future__ import annotations

import _ssl
import asyncio
import dataclasses
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from fleetpki.discovery.targets import Endpoint

DEFAULT_CONCURRENCY = 32
DEFAULT_TIMEOUT = 3.0
# OpenSSL reasons that mean the peer did not answer with TLS at all (an HTTP or SSH server).
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG",
                      "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL"})


@dataclasses.dataclass(frozen=True, slots=True)
class ScanOptions:
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT  # seconds per endpoint

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.timeout <= 0:
            raise ValueError("the timeout must be positive")


@dataclasses.dataclass(frozen=True, slots=True)
class ScanResult:
    """What one endpoint answered: its chain as served (DER, the leaf first), or why not."""

    endpoint: Endpoint
    chain: tuple[bytes, ...] = ()
    error: str | None = None  # 'timeout', 'refused', 'not TLS (...)', ...

    @property
    def answered(self) -> bool:
        return self.error is None


def scan_endpoints(endpoints: Sequence[Endpoint], options: ScanOptions,
                   on_result: Callable[[ScanResult], None] | None = None) -> list[ScanResult]:
    """Scan from synchronous code (the CLI); results in the order of `endpoints`."""
    return asyncio.run(scan(endpoints, options, on_result))


async def scan(endpoints: Sequence[Endpoint], options: ScanOptions,
               on_result: Callable[[ScanResult], None] | None = None) -> list[ScanResult]:
    """Scan every endpoint, at most `options.concurrency` at a time; `on_result` is called
    as each one finishes (a progress bar)."""
    context = client_context()
    slots = asyncio.Semaphore(options.concurrency)
    results: dict[int, ScanResult] = {}
    running: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []  # bugs, not unreachable endpoints

    async def probe_one(index: int, endpoint: Endpoint) -> None:
        try:
            result = await probe(endpoint, context, options.timeout)
        finally:
            slots.release()
        results[index] = result
        if on_result is not None:
            on_result(result)

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            failures.append(error)

    for index, endpoint in enumerate(endpoints):
        await slots.acquire()
        if failures:
            break
        task = asyncio.create_task(probe_one(index, endpoint))
        running.add(task)
        task.add_done_callback(finished)
    await asyncio.gather(*running, return_exceptions=True)
    if failures:
        raise failures[0]
    return [results[i] for i in range(len(endpoints))]


def client_context() -> ssl.SSLContext:
    """A TLS client that takes whatever an endpoint serves. Never use it to trust anything."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # Level 0 lets the handshake complete with the RSA-1024 and SHA-1 certificates and the
    # TLS 1.0 servers the report exists to find; anonymous suites are left out, since they
    # serve no certificate.
    context.set_ciphers("ALL:!aNULL:!eNULL:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


async def probe(endpoint: Endpoint, context: ssl.SSLContext, timeout: float) -> ScanResult:
    """One endpoint: its served chain, or the reason there is none. A name is sent as SNI
    (RFC 6066 §3) so that a virtual host serves its own certificate; an address is not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            endpoint.host, endpoint.port, ssl=context, ssl_handshake_timeout=timeout),
            timeout)
    except OSError as exc:  # TimeoutError, refused, SSLError, gaierror: all OSErrors
        return ScanResult(endpoint, error=failure_reason(exc))
    except (UnicodeError, ValueError) as exc:  # a name the resolver or SNI cannot encode
        return ScanResult(endpoint, error=f"name not usable ({exc})")
    try:
        chain = served_chain(writer.get_extra_info("ssl_object"))
    finally:
        # Abort rather than close: a close_notify exchange could wait on a slow peer, and
        # there is nothing left to say to it.
        writer.transport.abort()
    if not chain:
        return ScanResult(endpoint, error="TLS without a certificate")
    return ScanResult(endpoint, chain=chain)


def served_chain(ssl_object: ssl.SSLObject | None) -> tuple[bytes, ...]:
    """The certificates the peer sent, as sent: the leaf, then the rest of its chain.

    Python 3.13 has SSLObject.get_unverified_chain(). Python 3.11 has the same call on the
    underlying _ssl object (added for 3.10, public from 3.13); failing both, only the leaf
    is known (getpeercert)."""
    if ssl_object is None:
        return ()
    public: Any = getattr(ssl_object, "get_unverified_chain", None)
    if public is not None:
        return tuple(bytes(der) for der in public() or ())
    inner: Any = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if inner is not None:
        served = inner() or ()
        if served:
            return tuple(c.public_bytes(_ssl.ENCODING_DER) for c in served)
    leaf = ssl_object.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()


def failure_reason(exc: OSError) -> str:
    """Why an endpoint gave no chain, in the words an operator acts on."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLEOFError | ConnectionResetError):
        return "closed during the TLS handshake"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or type(exc).__name__
        if reason in _NOT_TLS:
            return f"not TLS ({reason})"
        return f"TLS handshake failed ({reason})"
    return f"unreachable ({exc.strerror or exc})"
