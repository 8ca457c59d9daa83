"""Run ASGI apps in forked worker processes, each listening on its own SO_REUSEPORT socket.

The parent binds every listener (holding the port, so that port 0 resolves once and a taken
port fails before anything forks), builds each TLS context once, forks the workers and supervises
them: it restarts a worker that dies (giving up on a crash loop), and on SIGTERM or SIGINT asks
every worker to finish, then kills what is left after ``graceful_timeout``. It only ever signals
its own children, and only while they are unreaped, so a recycled PID can never be hit. If the
parent itself is killed, the workers see a pipe it held reach end of file and stop too.

TLS contexts are built in the parent and inherited across fork: the SSL_CTX is plain memory, and
OpenSSL 3 reseeds its random generator in a forked child. Sharing one context gives every worker
the same session-ticket keys, so a device resumes its session whichever worker accepts it (with
a context per worker a resumption succeeds only on the worker that issued the ticket). The cost:
a renewed server certificate takes effect when ``serve`` is restarted.

Each worker calls ``app_factory`` after the fork (so it opens its own database connections) and
runs one uvicorn server per listener on one uvloop loop. Even ``workers=1`` forks: one code path,
and a crashed worker is restarted the same way.

Each worker listens on a socket of its own bound to the parent's address with SO_REUSEPORT, and
the kernel spreads new connections over the workers by their address hash. With one shared
listening socket, whichever worker woke first accepted a whole burst: 32 keep-alive clients all
landed on one worker of two, which then did the work of both. The price: connections still
queued in a worker's backlog when that worker dies are reset, not handed to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import select
import signal
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
import uvloop
from starlette.types import ASGIApp

from fleetpki.serving.client_certs import ClientCertH11Protocol, ClientCertHttpToolsProtocol
from fleetpki.serving.direct import DirectHttpToolsProtocol, DirectRoute
from fleetpki.serving.framing import StrictFraming
from fleetpki.serving.request_limits import REQUEST_SECONDS

__all__ = ["Listener", "WorkerApps", "serve"]

logger = logging.getLogger("fleetpki.serving")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PROTOCOLS = {"httptools": ClientCertHttpToolsProtocol, "h11": ClientCertH11Protocol}
_MAX_DEATHS, _DEATH_WINDOW = 5, 30.0  # more deaths than this within the window: give up
_STARTUP_TIMEOUT = 30.0  # for the first workers to report that they accept connections
_POLL = 0.05
_BACKLOG = 2048
_MAX_CONNECTIONS = 1000  # per worker and listener; beyond it uvicorn answers 503
_KEEP_ALIVE = 5  # seconds a connection may stay idle (also before its first request)


@dataclass(frozen=True)
class Listener:
    """One listening address. ``tls`` builds its server context (None: plain HTTP); serve calls
    it once, in the parent, before forking (see the module docstring)."""

    name: str
    host: str
    port: int  # 0 picks a free port, reported through serve's on_ready
    tls: Callable[[], ssl.SSLContext] | None


@dataclass(frozen=True)
class WorkerApps:
    """What one worker runs: an app per listener name, and an optional background coroutine
    (started with the servers, cancelled when they stop)."""

    apps: Mapping[str, ASGIApp]
    background: Callable[[], Coroutine[Any, Any, None]] | None = None
    # Per listener name: a path prefix answered without ASGI (direct.py); httptools only.
    direct: Mapping[str, DirectRoute] = field(default_factory=dict)


class _WorkerServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its worker, which stops all its servers at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def serve(app_factory: Callable[[], WorkerApps], listeners: Sequence[Listener], *, workers: int,
          on_ready: Callable[[list[tuple[str, int]]], None] | None = None,
          log_level: str = "warning", graceful_timeout: float = 10.0,
          http: Literal["httptools", "h11"] = "httptools",
          on_worker_exit: Callable[[int], None] | None = None,
          request_seconds: float = REQUEST_SECONDS) -> int:
    """Serve until SIGTERM/SIGINT; return 0 after a clean stop, 1 otherwise.

    "Otherwise" is: workers kept dying (more than 5 deaths in 30 s), the first workers did not
    start within 30 s, or a worker had to be killed after ``graceful_timeout``. ``on_ready`` is
    called once, with each listener's (host, port) in order, when every worker accepts
    connections. Call from the main thread (it installs signal handlers) with no event loop
    running; ``http`` selects uvicorn's parser (httptools, or the stricter pure-Python h11).
    ``on_worker_exit`` is called with the PID of each worker that died and was reaped while
    serving, before its replacement starts (e.g. to drop the dead process's metric files).
    ``request_seconds``: how long a request may take to arrive once begun (request_limits.py).
    """
    if workers < 1 or not listeners or log_level not in uvicorn.config.LOG_LEVELS:
        raise ValueError("serve needs a worker, a listener and one of uvicorn's log levels")
    contexts = [listener.tls() if listener.tls else None for listener in listeners]
    stopping: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: stopping.append(signum))
                for sig in _STOP_SIGNALS}
    ready_r, ready_w = os.pipe()  # workers -> parent: 4-byte PIDs of workers that accept
    lifeline_r, lifeline_w = os.pipe()  # EOF in the workers when the parent is gone
    sockets: list[socket.socket] = []
    children: set[int] = set()

    def run_worker() -> int:
        os.close(ready_r)
        os.close(lifeline_w)
        worker = app_factory()
        servers = [_WorkerServer(_config(worker.apps[listener.name], context,
                                         _protocol(http, worker.direct.get(listener.name),
                                                   request_seconds),
                                         log_level, graceful_timeout))
                   for listener, context in zip(listeners, contexts, strict=True)]
        own = [_listen_beside(sock) for sock in sockets]
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_run_servers(servers, own, ready_w, lifeline_r, worker.background))
        return 0

    def announce() -> None:
        if on_ready is not None:
            on_ready([sock.getsockname()[:2] for sock in sockets])

    try:
        sockets.extend(_bind(listener) for listener in listeners)
        code = _supervise(lambda: _fork(run_worker), children, workers, ready_r, stopping,
                          announce, on_worker_exit)
        return max(code, _stop(children, graceful_timeout))
    finally:
        _stop(children, graceful_timeout)  # workers are left only after an exception
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for fd in (ready_r, ready_w, lifeline_r, lifeline_w):
            os.close(fd)
        for sock in sockets:
            sock.close()


def _bind(listener: Listener) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # First without SO_REUSEPORT: a port held by anyone, including another fleetpki serve
        # (whose sockets would otherwise accept ours into their group), is refused here.
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            address = probe.getsockname()  # port 0 resolved
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        # Not listening: the parent only holds the address; the workers' sockets take the
        # connections (a listening parent socket would get its share and never accept them).
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen on {listener.host}:{listener.port} "
                                   f"({listener.name}): {error.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def _listen_beside(held: socket.socket) -> socket.socket:
    """A worker's own listening socket on the address the parent holds."""
    sock = socket.socket(held.family, held.type, held.proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(held.getsockname())
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _protocol(http: Literal["httptools", "h11"], route: DirectRoute | None,
              request_seconds: float) -> Any:
    """uvicorn's protocol class for a listener, as a partial (uvicorn only calls it).
    The strict h11 parser serves every request through ASGI."""
    if route is not None and http == "httptools":
        return functools.partial(DirectHttpToolsProtocol, route=route,
                                 request_seconds=request_seconds)
    return functools.partial(_PROTOCOLS[http], request_seconds=request_seconds)


def _config(app: ASGIApp, context: ssl.SSLContext | None, protocol: Any,
            log_level: str, graceful_timeout: float) -> uvicorn.Config:
    config = uvicorn.Config(
        lambda: StrictFraming(app), factory=True, interface="asgi3", http=protocol, ws="none",
        lifespan="off", log_config=None, log_level=log_level, access_log=False,
        proxy_headers=False, server_header=False, date_header=True, backlog=_BACKLOG,
        limit_concurrency=_MAX_CONNECTIONS, timeout_keep_alive=_KEEP_ALIVE,
        timeout_graceful_shutdown=max(1, int(graceful_timeout) - 1))
    # Config.load() builds its context from file paths only; set ours after it, before the
    # Server's startup passes config.ssl to loop.create_server.
    config.load()
    config.ssl = context
    return config


async def _run_servers(servers: list[_WorkerServer], sockets: list[socket.socket],
                       ready_w: int, lifeline_r: int,
                       background: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        loop.remove_reader(lifeline_r)
        for server in servers:
            server.should_exit = True

    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    loop.add_reader(lifeline_r, stop)
    tasks = [asyncio.create_task(server.serve(sockets=[sock]))
             for server, sock in zip(servers, sockets, strict=True)]
    deadline = loop.time() + _STARTUP_TIMEOUT
    while not all(s.started for s in servers) and not any(t.done() for t in tasks):
        if loop.time() > deadline:
            stop()
            break
        await asyncio.sleep(0.01)
    if all(s.started for s in servers):
        os.write(ready_w, os.getpid().to_bytes(4, "big"))
    job = asyncio.create_task(background()) if background is not None else None
    try:
        await asyncio.gather(*tasks)
    finally:
        if job is not None:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job


def _fork(run: Callable[[], int]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    # Block the stop signals across fork: the child must never run the parent's handlers.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        return pid
    code = 1
    try:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        code = run()
    except BaseException:
        logger.exception("worker %d failed", os.getpid())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never return into the parent's stack


def _supervise(spawn: Callable[[], int], children: set[int], workers: int, ready_r: int,
               stopping: list[int], announce: Callable[[], None],
               on_exit: Callable[[int], None] | None = None) -> int:
    deaths: deque[float] = deque()
    ready: set[int] = set()
    announced = False
    started = time.monotonic()
    children.update(spawn() for _ in range(workers))
    while not stopping:
        if select.select([ready_r], [], [], _POLL)[0]:
            data = os.read(ready_r, 4096)  # 4-byte records, each written atomically
            ready.update(int.from_bytes(data[i:i + 4], "big") for i in range(0, len(data), 4))
        now = time.monotonic()
        for pid, status in [(pid, _reap(pid)) for pid in children]:
            if status is None:
                continue
            children.discard(pid)
            if on_exit is not None:
                try:
                    on_exit(pid)
                except Exception:
                    logger.exception("cleaning up after worker %d failed", pid)
            deaths.append(now)
            while deaths[0] < now - _DEATH_WINDOW:
                deaths.popleft()
            if len(deaths) > _MAX_DEATHS:
                logger.error("workers keep dying (%d in %.0f s); giving up", len(deaths),
                             _DEATH_WINDOW)
                return 1
            logger.warning("worker %d exited (%d); starting another", pid, status)
            children.add(spawn())
        if not announced and children <= ready:
            announced = True
            announce()
        elif not announced and now - started > _STARTUP_TIMEOUT:
            logger.error("workers did not start within %.0f s", _STARTUP_TIMEOUT)
            return 1
    return 0


def _reap(pid: int) -> int | None:
    """The worker's exit code once it has ended (negative: killed by that signal), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): gone all the same
        return -1
    return os.waitstatus_to_exitcode(status) if done else None


def _stop(children: set[int], graceful_timeout: float) -> int:
    """SIGTERM every worker, SIGKILL those still running after the timeout; 1 if any was."""
    for pid in children:
        os.kill(pid, signal.SIGTERM)  # unreaped, so the PID is still ours
    _reap_all(children, graceful_timeout)
    for pid in children:
        logger.error("worker %d still running after %.1f s; killing it", pid, graceful_timeout)
        os.kill(pid, signal.SIGKILL)
    killed = bool(children)
    _reap_all(children, 5.0)  # SIGKILL cannot be caught: this only waits for the kernel
    return 1 if killed else 0


def _reap_all(children: set[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while children and time.monotonic() < deadline:
        children.difference_update([pid for pid in children if _reap(pid) is not None])
        time.sleep(_POLL)
