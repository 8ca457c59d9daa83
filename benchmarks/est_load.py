"""The load side of benchmarks/est_enroll.py: the EST client load generator, the bare TLS
reference server, and the CPU accounting of every process during a phase.

The same client code drives both servers, so whatever it costs, it costs the same against each.
It runs in forked processes (one uvloop loop each) and speaks HTTP/1.1 by hand over a bare
asyncio Protocol: streams or a client library would add per-request Python work competing with
the server for the machine's cores. Python's ssl resumes a session only when given one, so
every fresh connection is a full handshake. The reference server does the least an HTTPS
endpoint can (handshake, read the request, answer a fixed response) with what `fleetpki serve`
uses: certificates, TLS context, forked workers sharing one socket, uvloop.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import multiprocessing
import os
import re
import resource
import signal
import socket
import ssl
import statistics
import time
import typing
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier

import uvloop
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 30.0  # seconds for one connect + request + response
_FORK = multiprocessing.get_context("fork")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
Counter = typing.Any  # a multiprocessing RawValue("q"): requests started by one process


@dataclasses.dataclass(frozen=True)
class Device:
    """A simulated device: its CSR (base64 DER: the EST body), key and certificate files."""

    cn: str
    csr_b64: bytes
    key_file: str
    cert_file: str | None = None  # PEM, once enrolled: presented in mutual TLS


@dataclasses.dataclass(frozen=True)
class Job:
    """What the generator processes run: client c is device c and sends its share of
    ``requests``, one after the other (closed loop)."""

    port: int
    path: str
    devices: tuple[Device, ...]
    requests: int
    clients: int
    keep_alive: bool
    tls_version: ssl.TLSVersion
    trust_pem: str  # what the client verifies the server against
    basic: str | None = None  # an Authorization header value (bootstrap enrollment)
    check_every: int = 25  # decode and check every n-th response of each client; 0: never

    def share(self, client: int) -> int:
        return self.requests // self.clients + (client < self.requests % self.clients)


@dataclasses.dataclass
class Result:
    """A generator's outcome: latencies in seconds, errors by kind, time.monotonic() bounds."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    error_samples: list[str] = dataclasses.field(default_factory=list)
    connections: int = 0  # TLS connections opened (keep-alive: ideally one per client)
    checked: int = 0  # responses decoded and checked (bad ones count as errors)
    start: float = float("inf")
    end: float = 0.0
    cpu_seconds: float = 0.0
    certificates: dict[str, bytes] = dataclasses.field(default_factory=dict)  # cn -> PEM

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{kind}: {detail[:300]}")

    def merge(self, part: Result) -> None:
        self.latencies += part.latencies
        self.errors.update(part.errors)
        self.error_samples += part.error_samples[:5 - len(self.error_samples)]
        self.connections += part.connections
        self.checked += part.checked
        self.start, self.end = min(self.start, part.start), max(self.end, part.end)
        self.cpu_seconds += part.cpu_seconds
        self.certificates.update(part.certificates)


def _message(buffer: bytearray) -> tuple[bytes, bytes] | None:
    """Take one HTTP message (head, Content-Length body) off the buffer, if it is complete."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end])
    length = _CONTENT_LENGTH.search(head)
    total = head_end + 4 + (int(length.group(1)) if length else 0)
    if len(buffer) < total:
        return None
    body = bytes(buffer[head_end + 4:total])
    del buffer[:total]
    return head, body


class _Http(asyncio.Protocol):
    """A minimal HTTP/1.1 client on one connection: write a request, await the response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False  # the server may close a kept-alive connection (idle timeout)
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's SSL transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None and not self._waiter.done() and (
                message := _message(self._buffer)):
            self._waiter.set_result((int(message[0][9:12]), message[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection closed early ({exc})"))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter


def _request(job: Job, device: Device) -> bytes:
    head = [f"POST {job.path} HTTP/1.1", f"Host: {HOST}:{job.port}",
            "Content-Type: application/pkcs10", f"Content-Length: {len(device.csr_b64)}"]
    head += [f"Authorization: {job.basic}"] if job.basic else []
    head += [] if job.keep_alive else ["Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + device.csr_b64


def _check(body: bytes, device: Device, result: Result, keep: bool) -> None:
    """RFC 7030 §4.2.3: the body is base64 of a certs-only PKCS#7 with the new certificate."""
    result.checked += 1
    try:
        leaf = pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names or names[0].value != device.cn:
            raise ValueError(f"subject {leaf.subject.rfc4514_string()}, expected CN={device.cn}")
    except (ValueError, IndexError) as error:
        result.error("bad body", str(error))
        return
    if keep:
        result.certificates[device.cn] = leaf.public_bytes(Encoding.PEM)


def _context(job: Job, device: Device) -> ssl.SSLContext:
    """The device's TLS client context, built before timing: verifies the server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = context.maximum_version = job.tls_version
    context.load_verify_locations(cadata=job.trust_pem)
    if device.cert_file is not None:
        context.load_cert_chain(device.cert_file, device.key_file)
    return context


async def _client(job: Job, number: int, context: ssl.SSLContext, result: Result,
                  started_count: Counter) -> None:
    loop, device = asyncio.get_running_loop(), job.devices[number]
    request, current = _request(job, device), None
    for k in range(job.share(number)):
        started_count.value += 1  # this process's counter: only this thread writes it
        started = time.perf_counter()
        try:
            if current is None or current.closed:
                result.connections += 1
                transport, fresh = await asyncio.wait_for(loop.create_connection(
                    _Http, HOST, job.port, ssl=context, server_hostname=HOST),
                    REQUEST_TIMEOUT)
                current = fresh
                if transport.get_extra_info("ssl_object").session_reused:  # never expected
                    result.error("resumed TLS session", "a full handshake was expected")
            protocol = current
            status, body = await asyncio.wait_for(protocol.exchange(request),
                                                  REQUEST_TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
            result.error(type(error).__name__, str(error))
            if current is not None and current.transport is not None:
                current.transport.abort()
            current = None
            continue
        result.latencies.append(time.perf_counter() - started)
        if status != 200:
            result.error(f"HTTP {status}", body.decode("utf-8", "replace"))
        elif job.check_every and k % job.check_every == 0:
            _check(body, device, result, keep=job.check_every == 1)
        if not job.keep_alive and protocol.transport is not None:
            protocol.transport.close()  # sends close_notify; the server closes too
            current = None
    if current is not None and current.transport is not None:
        current.transport.close()


def _cpu_self() -> float:
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # user + system


def _generate(job: Job, clients: range, barrier: Barrier, pipe: Connection,
              started_count: Counter) -> None:
    """One generator process: prepare, wait for the others at the barrier, run, report."""
    result = Result()
    contexts = {c: _context(job, job.devices[c]) for c in clients}

    async def run() -> None:
        tasks = [_client(job, c, contexts[c], result, started_count) for c in clients]
        barrier.wait(timeout=120)
        cpu, result.start = _cpu_self(), time.monotonic()
        await asyncio.gather(*tasks)
        result.end, result.cpu_seconds = time.monotonic(), _cpu_self() - cpu

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    except Exception as error:  # noqa: BLE001 - reported to the parent, which decides
        result.error("generator failed", repr(error))
    pipe.send(result)
    pipe.close()


def drive(job: Job, processes: int, on_start: Callable[[], None] | None = None,
          progress: Callable[[int], None] | None = None) -> Result:
    """Run ``job`` in ``processes`` forked generator processes and merge their results.
    ``on_start`` runs right before the generators are released (to snapshot CPU counters);
    ``progress`` is told how many requests have started, a few times a second."""
    processes = max(1, min(processes, job.clients))
    barrier = _FORK.Barrier(processes + 1)
    counters = [_FORK.RawValue("q", 0) for _ in range(processes)]
    workers, pipes = [], []
    for p in range(processes):
        receiver, sender = _FORK.Pipe(duplex=False)
        workers.append(_FORK.Process(target=_generate, daemon=True, args=(
            job, range(p, job.clients, processes), barrier, sender, counters[p])))
        workers[-1].start()
        sender.close()
        pipes.append(receiver)
    merged = Result()
    try:
        (on_start or (lambda: None))()
        barrier.wait(timeout=120)
        deadline = time.monotonic() + REQUEST_TIMEOUT * (job.requests / job.clients + 2)
        while pipes and time.monotonic() < deadline:
            for pipe in [pipe for pipe in pipes if pipe.poll(0.2 / len(pipes))]:
                merged.merge(pipe.recv())
                pipes.remove(pipe)
            if progress is not None:
                progress(sum(counter.value for counter in counters))
        if pipes:
            merged.error("generator timeout", f"{len(pipes)} generator(s) did not finish")
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)
    return merged


# -- one measured phase: CPU time of every process involved, from /proc --------------------


def process_tree(root: int) -> list[int]:
    """A server's parent and the workers its main thread forked."""
    with contextlib.suppress(OSError), open(f"/proc/{root}/task/{root}/children", "rb") as f:
        return [root, *(int(child) for child in f.read().split())]
    return [root]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (/proc/<pid>/stat sums all of a process's threads)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        fields = handle.readline().split()
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7)) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Phase:
    """One measured phase; CPU figures are per request or in cores (CPU time / wall time)."""

    name: str
    requests: int
    ok: int  # answered 200
    errors: dict[str, int]  # by kind: HTTP status, exception, bad body
    error_samples: list[str]
    connections: int
    checked: int  # bodies decoded and checked
    seconds: float
    rate: float
    latency_ms: dict[str, float]  # p50, p95, p99, max
    server_cpu_ms: float  # the server's parent and workers
    generator_cpu_ms: float  # all generator processes
    server_cores: float
    generator_cores: float
    other_cores: float  # other processes on the machine meanwhile
    server_restarted: bool


def measure(name: str, job: Job, server: int | list[int], generators: int,
            progress: Callable[[int], None] | None = None) -> Phase:
    """Run one phase and account for every core: the server (the process tree under a PID,
    or a list of PIDs), the generator, this script and everything else on the machine."""
    pids: list[int] = []
    before: list[float] = []

    def snapshot() -> None:
        pids[:] = process_tree(server) if isinstance(server, int) else server
        before[:] = [cpu_seconds(pids), _busy_seconds(), _cpu_self()]

    result = drive(job, generators, snapshot, progress)
    restarted = isinstance(server, int) and sorted(process_tree(server)) != sorted(pids)
    server_cpu = cpu_seconds(pids) - before[0]
    other = (_busy_seconds() - before[1]) - server_cpu - result.cpu_seconds - (
        _cpu_self() - before[2])
    wall, done = max(result.end - result.start, 1e-9), max(len(result.latencies), 1)
    lat = sorted(result.latencies) or [0.0]
    cuts = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    ok = len(result.latencies) - sum(n for k, n in result.errors.items() if k.startswith("HTTP"))
    return Phase(name, job.requests, ok, dict(result.errors), result.error_samples,
                 result.connections, result.checked, wall, ok / wall,
                 {"p50": cuts[49] * 1e3, "p95": cuts[94] * 1e3, "p99": cuts[98] * 1e3,
                  "max": lat[-1] * 1e3}, server_cpu / done * 1e3,
                 result.cpu_seconds / done * 1e3, server_cpu / wall, result.cpu_seconds / wall,
                 max(other, 0.0) / wall, restarted)


# -- the reference server --------------------------------------------------------------------


class _Answer(asyncio.Protocol):
    """Read each HTTP request, answer a fixed response, close if the client asked to."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = typing.cast(asyncio.Transport, transport)
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while message := _message(self._buffer):
            self._transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                  b"Content-Length: 3\r\n\r\nok\n")
            if _CLOSE.search(message[0]):
                self._transport.close()
                return


def _serve_reference(sock: socket.socket, context: ssl.SSLContext, ready: Barrier) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopped by SIGTERM from the benchmark

    async def run() -> None:
        loop = asyncio.get_running_loop()
        async with await loop.create_server(_Answer, sock=sock, ssl=context, backlog=2048):
            ready.wait(timeout=60)
            await asyncio.Future()  # until SIGTERM

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


@contextlib.contextmanager
def reference_server(context: ssl.SSLContext, workers: int) -> Iterator[tuple[int, list[int]]]:
    """Bind 127.0.0.1:0, fork ``workers`` processes sharing the socket and the TLS context
    (as `fleetpki serve` does), yield (port, worker PIDs); stop them by PID afterwards."""
    sock = socket.create_server((HOST, 0), backlog=2048)
    ready = _FORK.Barrier(workers + 1)
    children = [_FORK.Process(target=_serve_reference, args=(sock, context, ready), daemon=True)
                for _ in range(workers)]
    try:
        for child in children:
            child.start()
        ready.wait(timeout=60)
        yield sock.getsockname()[1], [c.pid for c in children if c.pid is not None]
    finally:
        for child in children:
            if child.pid is not None and child.exitcode is None:
                child.terminate()  # SIGTERM to that PID
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
        sock.close()
