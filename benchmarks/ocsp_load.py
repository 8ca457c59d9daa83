"""A load generator for OCSP responders over plain HTTP/1.1: POSTs of pre-built DER requests.

    .venv/bin/python benchmarks/ocsp_load.py URL --issuer ca.pem --certs 'leaves/*.pem'
        [--connections 32] [--duration 10] [--warmup 1] [--no-keepalive] [--nonce]
        [--hash sha1] [--processes 1] [--server-pid PID] [--json]
    .venv/bin/python benchmarks/ocsp_load.py URL --request a.der --request b.der ...

``run_load`` (the same from Python) opens ``connections`` connections, each sending the
requests round-robin, one at a time (closed loop: a connection sends its next request when
the previous answer is in), until ``duration`` has passed. It reads Content-Length-framed
responses and counts an answer only if it is HTTP 200 with OCSP responseStatus successful;
anything else is an error, with a few samples kept. With ``keep_alive`` a connection carries
requests until the server closes it (then the next request opens a new one, as any client
would); without, every request opens its own connection (``Connection: close``).

It is written to cost the server's machine as little as possible (both share two cores in
the benchmarks): a bare asyncio Protocol per connection driven by callbacks, no coroutine or
future per request, uvloop when installed, and the request bytes built before timing. One
process sustains well over 10,000 answers/s on one core; ``processes`` forks more.

`openssl ocsp -port` answers HTTP/1.0 and keeps a connection open only when asked with
``Connection: keep-alive``, which this generator always sends in keep-alive mode; its
responder also serves one connection at a time per process (``-multi N`` for N), so keep
``connections`` at N there, or measure it without keep-alive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import glob
import json
import multiprocessing
import os
import re
import resource
import secrets
import sys
import time
import typing
import urllib.parse
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

_new_loop: Callable[[], asyncio.AbstractEventLoop] | None
try:
    import uvloop

    _new_loop = uvloop.new_event_loop
except ImportError:  # plain asyncio: slower, but the generator still works
    _new_loop = None

REQUEST_TIMEOUT = 10.0  # seconds for one answer before it counts as an error
_DRAIN = 5.0  # seconds, after the duration, for answers still on their way
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
_KEEP = re.compile(rb"\r\nconnection:[ \t]*keep-alive", re.IGNORECASE)
_FORK = multiprocessing.get_context("fork")


@dataclasses.dataclass(frozen=True)
class LoadResult:
    responses: int  # HTTP 200 with a successful OCSP response
    errors: int
    seconds: float  # from the first request sent to the last answer received
    p50_ms: float
    p99_ms: float
    connections: int = 0  # opened, including reconnections
    error_samples: tuple[str, ...] = ()
    cpu_seconds: float = 0.0  # the generator's own CPU time (user + system, all processes)

    @property
    def rate(self) -> float:
        """Answers per second."""
        return self.responses / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass
class _Tally:
    """One process's counts; latencies in seconds."""

    latencies: list[float] = dataclasses.field(default_factory=list)  # every answer
    ok: int = 0  # answers that were HTTP 200 and OCSP successful
    errors: int = 0
    samples: list[str] = dataclasses.field(default_factory=list)
    connections: int = 0
    start: float = 0.0
    end: float = 0.0
    cpu: float = 0.0

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(text[:300])


@dataclasses.dataclass
class _Run:
    """What every connection of one process shares."""

    host: str
    port: int
    messages: list[bytes]  # complete HTTP requests
    keep_alive: bool
    stop_at: float  # loop time after which no request is started
    tally: _Tally
    cursor: int = 0  # next message, shared round-robin
    in_flight: set[_Client] = dataclasses.field(default_factory=set)

    def next_message(self) -> bytes:
        message = self.messages[self.cursor]
        self.cursor = (self.cursor + 1) % len(self.messages)
        return message


class _Client(asyncio.Protocol):
    """One connection: sends a request, waits for its answer, sends the next."""

    def __init__(self, run: _Run, done: asyncio.Future[None]) -> None:
        self._run = run
        self._done = done
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head_end = -1
        self._length = -1
        self._reused = False  # a request was answered on this connection already
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = typing.cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        self._run.in_flight.add(self)
        self.sent_at = time.perf_counter()
        self._transport.write(self._run.next_message())

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._head_end < 0:
            self._head_end = buffer.find(b"\r\n\r\n")
            if self._head_end < 0:
                return
            length = _CONTENT_LENGTH.search(buffer, 0, self._head_end + 2)
            self._length = int(length.group(1)) if length else -1
            if self._length < 0:
                return  # delimited by the end of the connection: see eof_received
        total = self._head_end + 4 + self._length
        if len(buffer) >= total:
            self._answered(total)

    def eof_received(self) -> bool | None:
        if self._head_end >= 0 and self._length < 0:  # HTTP/1.0 without Content-Length
            self._length = len(self._buffer) - self._head_end - 4
            self._answered(len(self._buffer))
        return None

    def _answered(self, total: int) -> None:
        run, tally, buffer = self._run, self._run.tally, self._buffer
        tally.latencies.append(time.perf_counter() - self.sent_at)
        run.in_flight.discard(self)
        head_end = self._head_end
        status = buffer[9:12]
        body = buffer[head_end + 4:total]
        close = not run.keep_alive or _CLOSE.search(buffer, 0, head_end + 2) is not None or (
            buffer.startswith(b"HTTP/1.0") and not _KEEP.search(buffer, 0, head_end + 2))
        if status != b"200":
            tally.error(f"HTTP {status.decode('ascii', 'replace')}: {bytes(body[:100])!r}")
        elif (ocsp_status := _ocsp_status(body)) != 0:
            tally.error(f"OCSP responseStatus {ocsp_status}")
        else:
            tally.ok += 1
        del buffer[:total]
        self._head_end = self._length = -1
        self._reused = True
        if close or self._loop.time() >= run.stop_at:
            if self._transport is not None:
                self._transport.close()
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self._run
        if self in run.in_flight:
            run.in_flight.discard(self)
            if not self._reused or self._buffer:
                run.tally.error(f"connection lost before the answer ({exc})")
            else:
                # The server closed an idle kept-alive connection as we sent on it: not an
                # answer lost, the request goes again on a new connection.
                run.cursor = (run.cursor - 1) % len(run.messages)
        if not self._done.done():
            self._done.set_result(None)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _ocsp_status(body: bytes | bytearray) -> int:
    """OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, ... } (RFC 6960 §4.2.1)."""
    if len(body) < 5 or body[0] != 0x30:
        return -1
    offset = 2 + (body[1] & 0x7F if body[1] & 0x80 else 0)
    if body[offset:offset + 2] != b"\x0a\x01":
        return -1
    return body[offset + 2]


async def _slot(run: _Run) -> None:
    """One connection's worth of load: reconnects until the time is up."""
    loop = asyncio.get_running_loop()
    while loop.time() < run.stop_at:
        done: asyncio.Future[None] = loop.create_future()
        run.tally.connections += 1
        try:
            await asyncio.wait_for(loop.create_connection(
                functools.partial(_Client, run, done), run.host, run.port), REQUEST_TIMEOUT)
        except (OSError, TimeoutError) as error:
            run.tally.error(f"connect: {error!r}")
            await asyncio.sleep(0.05)  # a refused connection must not spin
            continue
        await done


async def _watchdog(run: _Run) -> None:
    """Aborts connections whose answer is overdue (they count as errors)."""
    while True:
        await asyncio.sleep(0.25)
        now = time.perf_counter()
        for client in [c for c in run.in_flight if now - c.sent_at > REQUEST_TIMEOUT]:
            run.in_flight.discard(client)
            run.tally.error(f"no answer within {REQUEST_TIMEOUT} s")
            client.abort()


async def _drive(run: _Run, connections: int) -> None:
    loop = asyncio.get_running_loop()
    watchdog = asyncio.create_task(_watchdog(run))
    run.tally.start = time.perf_counter()
    try:
        slots = [asyncio.create_task(_slot(run)) for _ in range(connections)]
        _, pending = await asyncio.wait(slots, timeout=max(0.0, run.stop_at - loop.time())
                                        + REQUEST_TIMEOUT + _DRAIN)
        for task in pending:
            task.cancel()
        for client in list(run.in_flight):
            client.abort()
    finally:
        run.tally.end = time.perf_counter()
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog


def _messages(url: str, requests: Sequence[bytes], keep_alive: bool
              ) -> tuple[str, int, list[bytes]]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url}: only http:// URLs (OCSP is not served over TLS)")
    port = parts.port or 80
    path = parts.path or "/"
    connection = b"keep-alive" if keep_alive else b"close"
    head = (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ocsp-request\r\n"
            b"Connection: %s\r\n" % (path.encode(), parts.netloc.encode(), connection))
    return parts.hostname, port, [head + b"Content-Length: %d\r\n\r\n" % len(r) + r
                                  for r in requests]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_here(host: str, port: int, messages: list[bytes], connections: int, duration: float,
              keep_alive: bool, offset: int, start: Callable[[], None] | None = None
              ) -> _Tally:
    tally = _Tally()

    async def main() -> None:
        if start is not None:
            start()
        loop = asyncio.get_running_loop()
        run = _Run(host, port, messages, keep_alive, loop.time() + duration, tally,
                   cursor=offset % len(messages))
        cpu = _cpu()
        await _drive(run, connections)
        tally.cpu = _cpu() - cpu

    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())
    return tally


def _child(args: tuple[str, int, list[bytes], int, float, bool, int], barrier: object,
           pipe: Connection) -> None:
    def wait() -> None:
        barrier.wait(timeout=60)  # type: ignore[attr-defined]

    try:
        pipe.send(_run_here(*args, start=wait))
    except Exception as error:  # noqa: BLE001 - reported to the parent
        tally = _Tally()
        tally.error(f"generator process failed: {error!r}")
        pipe.send(tally)
    pipe.close()


def run_load(url: str, requests: list[bytes], *, connections: int, duration: float,
             keep_alive: bool, processes: int = 1) -> LoadResult:
    """POST ``requests`` (DER OCSPRequests) round-robin over ``connections`` connections for
    ``duration`` seconds; with ``processes`` > 1 the connections are split between that many
    forked generator processes that start together."""
    if not requests or connections < 1 or duration <= 0 or processes < 1:
        raise ValueError("run_load needs requests, a connection and a positive duration")
    host, port, messages = _messages(url, requests, keep_alive)
    processes = min(processes, connections)
    if processes == 1:
        tallies = [_run_here(host, port, messages, connections, duration, keep_alive, 0)]
    else:
        tallies = _run_forked(host, port, messages, connections, duration, keep_alive,
                              processes)
    latencies = sorted(x for t in tallies for x in t.latencies)
    errors = sum(t.errors for t in tallies)
    seconds = max(t.end for t in tallies) - min(t.start for t in tallies)

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3

    return LoadResult(
        responses=sum(t.ok for t in tallies), errors=errors, seconds=seconds,
        p50_ms=percentile(0.50), p99_ms=percentile(0.99),
        connections=sum(t.connections for t in tallies),
        error_samples=tuple(s for t in tallies for s in t.samples)[:10],
        cpu_seconds=sum(t.cpu for t in tallies))


def _run_forked(host: str, port: int, messages: list[bytes], connections: int,
                duration: float, keep_alive: bool, processes: int) -> list[_Tally]:
    barrier = _FORK.Barrier(processes)
    children, pipes = [], []
    for p in range(processes):
        share = connections // processes + (p < connections % processes)
        receiver, sender = _FORK.Pipe(duplex=False)
        args = (host, port, messages, share, duration, keep_alive, p * len(messages) // processes)
        child = _FORK.Process(target=_child, args=(args, barrier, sender), daemon=True)
        child.start()
        sender.close()
        children.append(child)
        pipes.append(receiver)
    tallies = []
    deadline = time.monotonic() + 60 + duration + REQUEST_TIMEOUT + _DRAIN
    try:
        for pipe in pipes:
            if pipe.poll(max(0.0, deadline - time.monotonic())):
                tallies.append(pipe.recv())
            else:
                tally = _Tally()
                tally.error("generator process did not report")
                tallies.append(tally)
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()  # by PID: our own child
                child.join(timeout=5)
    return tallies


# -- command line ----------------------------------------------------------------------------


def build_requests(issuer_pem: str, cert_files: Sequence[str], *, hash_name: str = "sha1",
                   nonce: bool = False) -> list[bytes]:
    """One DER OCSPRequest per certificate (with a random 16-octet nonce if asked)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import ocsp

    algorithm = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(),  # noqa: S303
                 "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[hash_name]
    with open(issuer_pem, "rb") as handle:
        issuer = x509.load_pem_x509_certificate(handle.read())
    requests = []
    for name in cert_files:
        with open(name, "rb") as handle:
            for cert in x509.load_pem_x509_certificates(handle.read()):
                builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
                if nonce:
                    builder = builder.add_extension(x509.OCSPNonce(secrets.token_bytes(16)),
                                                    critical=False)
                requests.append(builder.build().public_bytes(Encoding.DER))
    return requests


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the responder's POST URL, e.g. http://127.0.0.1:8080/ocsp")
    parser.add_argument("--request", action="append", default=[], metavar="DER",
                        help="a DER OCSP request file (repeatable)")
    parser.add_argument("--issuer", help="PEM of the CA the --certs were issued by")
    parser.add_argument("--certs", action="append", default=[], metavar="GLOB",
                        help="PEM certificate files to ask about (repeatable; globs expand)")
    parser.add_argument("--hash", default="sha1", choices=["sha1", "sha256", "sha384", "sha512"],
                        help="the CertID hash of built requests")
    parser.add_argument("--nonce", action="store_true",
                        help="give each built request a nonce (defeats pre-signed answers)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of untimed load first (fills the responder's cache)")
    parser.add_argument("--no-keepalive", action="store_true",
                        help="a new connection per request")
    parser.add_argument("--processes", type=int, default=1, help="generator processes")
    parser.add_argument("--server-pid", type=int, action="append", default=[],
                        help="report this process's (and its children's) CPU per answer")
    parser.add_argument("--json", action="store_true", help="the result as one JSON object")
    args = parser.parse_args(argv)
    requests = []
    for name in args.request:
        with open(name, "rb") as handle:
            requests.append(handle.read())
    if args.certs:
        if not args.issuer:
            parser.error("--certs needs --issuer")
        files = sorted(f for pattern in args.certs for f in glob.glob(pattern)) or args.certs
        requests += build_requests(args.issuer, files, hash_name=args.hash, nonce=args.nonce)
    if not requests:
        parser.error("give --request files or --issuer and --certs")
    server_cpu = _server_cpu(args.server_pid)
    if args.warmup > 0:
        run_load(args.url, requests, connections=args.connections, duration=args.warmup,
                 keep_alive=not args.no_keepalive, processes=args.processes)
    before = server_cpu()
    result = run_load(args.url, requests, connections=args.connections,
                      duration=args.duration, keep_alive=not args.no_keepalive,
                      processes=args.processes)
    report = {**dataclasses.asdict(result), "rate": result.rate,
              "generator_cpu_us_per_answer": _per(result.cpu_seconds, result.responses)}
    if args.server_pid:
        report["server_cpu_us_per_answer"] = _per(server_cpu() - before, result.responses)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        mode = "keep-alive" if not args.no_keepalive else "a connection per request"
        print(f"{result.responses} answers in {result.seconds:.2f} s = {result.rate:,.0f}/s "
              f"({args.connections} connections, {mode}, {len(requests)} distinct requests)")
        print(f"latency p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms; "
              f"{result.connections} connections opened; {result.errors} errors")
        print(f"generator CPU {report['generator_cpu_us_per_answer']:.1f} us/answer"
              + (f", server CPU {report['server_cpu_us_per_answer']:.1f} us/answer"
                 if args.server_pid else ""))
        for sample in result.error_samples:
            print(f"  error: {sample}")
    return 0 if result.responses and not result.errors else 1


def _per(seconds: float, count: int) -> float:
    return seconds / count * 1e6 if count else 0.0


def _server_cpu(pids: list[int]) -> Callable[[], float]:
    """CPU seconds of the given processes and their children (est_load's /proc reading)."""
    if not pids:
        return lambda: 0.0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from est_load import cpu_seconds, process_tree

    tree = sorted({p for pid in pids for p in process_tree(pid)})
    return lambda: cpu_seconds(tree)


if __name__ == "__main__":
    sys.exit(main())
