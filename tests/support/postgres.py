"""A real, throwaway PostgreSQL server for the test suite.

Why a real server instead of SQLite: the store is written for PostgreSQL (locking,
constraint behaviour, psycopg 3 types), and only the real thing exercises that. Why our
own server instead of a system cluster: tests must not depend on (or damage) whatever
runs on the host, so every ``PostgresServer`` owns a fresh data directory, a private
unix-socket directory and a free TCP port on 127.0.0.1, and ``stop()`` stops exactly
that server and nothing else.

Usage::

    with PostgresServer() as server:
        engine = sqlalchemy.create_engine(server.url)
        other_url = server.create_database("empty_for_this_test")
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql

from support.ports import free_port

__all__ = [
    "POSTGRES_MISSING_MESSAGE",
    "PostgresServer",
    "find_postgres_bindir",
    "process_alive",
]

POSTGRES_MISSING_MESSAGE = (
    "PostgreSQL server binaries not found: run ./check (it installs the Debian package "
    "postgresql) or apt-get install postgresql"
)
"""Raised (as ``RuntimeError``) when initdb/pg_ctl cannot be found: says what to install."""

_DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
_SUPERUSER = "postgres"
"""Database superuser created by initdb; the URL uses it with trust auth (no password)."""
_OS_USER = "postgres"
"""System account that runs initdb/pg_ctl when we are root (initdb refuses to run as root)."""
_DEFAULT_DATABASE = "fleetpki_test"
_DB_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_LOG_TAIL_LINES = 40


def find_postgres_bindir() -> Path | None:
    """Return the directory holding ``initdb``/``pg_ctl``, or None when not installed.

    Debian installs server binaries outside PATH (``/usr/lib/postgresql/<major>/bin``), so
    PATH lookup is not enough; prefer the newest major version installed, then fall back to
    ``pg_config --bindir`` for non-Debian layouts.
    """
    candidates: list[tuple[int, Path]] = []
    if _DEBIAN_POSTGRES_ROOT.is_dir():
        for entry in _DEBIAN_POSTGRES_ROOT.iterdir():
            bindir = entry / "bin"
            if entry.name.isdigit() and _has_server_binaries(bindir):
                candidates.append((int(entry.name), bindir))
    if candidates:
        return max(candidates)[1]

    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        if out and _has_server_binaries(Path(out)):
            return Path(out)
    return None


def _has_server_binaries(bindir: Path) -> bool:
    """True if ``bindir`` has both programs we run (client-only installs lack them)."""
    return all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl"))


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie.

    The postmaster is re-parented once pg_ctl exits; in a container whose init does not reap
    children it can linger as a zombie, which is dead for every purpose that matters here.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return True
    match = re.search(r"^State:\s+(\S)", status, re.MULTILINE)
    return not (match and match.group(1) in {"Z", "X"})


class PostgresServer:
    """Own one throwaway PostgreSQL server: fresh data dir, 127.0.0.1 only, fsync off.

    ``start()`` returns a SQLAlchemy URL (psycopg 3 driver) for a fresh database;
    ``create_database()`` hands out further empty databases so each test can start clean;
    ``stop()`` stops this server (``pg_ctl stop -m fast`` on its own data dir) and removes
    its files. Every external wait is bounded by ``startup_timeout``/``stop_timeout``.
    An ``atexit`` hook stops the server if the test run dies before ``stop()``.
    """

    def __init__(self, *, startup_timeout: float = 30.0, stop_timeout: float = 30.0) -> None:
        """Configure timeouts (seconds); nothing is started until ``start()``."""
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._bindir: Path | None = None
        self._tmpdir: Path | None = None
        self._port: int | None = None
        self._pid: int | None = None
        self._url: str | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """URL of the default database created by ``start()``."""
        if self._url is None:
            raise RuntimeError("PostgresServer is not running: call start() first")
        return self._url

    @property
    def port(self) -> int:
        """TCP port the server listens on (127.0.0.1 only)."""
        if self._port is None:
            raise RuntimeError("PostgresServer is not running: call start() first")
        return self._port

    @property
    def pid(self) -> int:
        """PID of the postmaster, so callers can check it is really gone after ``stop()``."""
        if self._pid is None:
            raise RuntimeError("PostgresServer is not running: call start() first")
        return self._pid

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._pid is not None and process_alive(self._pid)

    def start(self) -> str:
        """Initialise and start the server, create a database, and return its URL.

        Raises RuntimeError with ``POSTGRES_MISSING_MESSAGE`` if PostgreSQL is not installed,
        or with the tail of the server log if it does not come up in ``startup_timeout``.
        """
        if self._url is not None:
            return self._url
        bindir = find_postgres_bindir()
        if bindir is None:
            raise RuntimeError(POSTGRES_MISSING_MESSAGE)
        self._bindir = bindir

        tmpdir = Path(tempfile.mkdtemp(prefix="fleetpki-pg-"))
        self._tmpdir = tmpdir
        atexit.register(self.stop)
        try:
            if os.geteuid() == 0:
                # initdb runs as the postgres account, which must own the parent directory.
                shutil.chown(tmpdir, user=_OS_USER, group=None)
            tmpdir.chmod(0o700)
            self._initdb()
            self._start_server()
            self._url = self.create_database(_DEFAULT_DATABASE)
        except BaseException:
            self.stop()
            raise
        return self._url

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its SQLAlchemy URL.

        Names are restricted to plain identifiers so URLs need no escaping.
        """
        if not _DB_NAME_RE.fullmatch(name):
            raise ValueError(f"database name must be a plain identifier, got {name!r}")
        with psycopg.connect(
            self._libpq_conninfo("postgres"), autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"postgresql+psycopg://{_SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop exactly this server and delete its data directory. Safe to call twice."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        tmpdir, pid = self._tmpdir, self._pid
        try:
            if tmpdir is not None and (tmpdir / "data" / "postmaster.pid").exists():
                self._pg_ctl_stop(tmpdir)
            if pid is not None and tmpdir is not None:
                self._ensure_dead(pid, tmpdir / "data")
        finally:
            self._pid = None
            self._port = None
            self._url = None
            self._tmpdir = None
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def __enter__(self) -> Self:
        """Start the server; use ``.url``/``.create_database()`` inside the block."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server whatever happened in the block."""
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _command(self, tool: str, *args: str) -> list[str]:
        """Build argv for a PostgreSQL tool, via ``runuser`` when we are root."""
        assert self._bindir is not None
        argv = [str(self._bindir / tool), *args]
        if os.geteuid() == 0:
            return ["runuser", "-u", _OS_USER, "--", *argv]
        return argv

    def _run(self, argv: list[str], timeout: float, what: str) -> None:
        """Run a command with output to a file (not a pipe) so a stray daemon can't hang us."""
        assert self._tmpdir is not None
        out_path = self._tmpdir / f"{what}.out"
        with out_path.open("wb") as out:
            try:
                proc = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self._tmpdir,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise RuntimeError(
                    f"{what} did not finish within {timeout:.0f}s: {shlex.join(argv)}\n"
                    f"{self._tail(out_path)}{self._log_tail()}"
                ) from exc
        if proc.returncode != 0:
            raise RuntimeError(
                f"{what} failed (exit {proc.returncode}): {shlex.join(argv)}\n"
                f"{self._tail(out_path)}{self._log_tail()}"
            )

    def _initdb(self) -> None:
        """Create the cluster: trust auth for everyone local, no locale, no fsync."""
        assert self._tmpdir is not None
        self._run(
            self._command(
                "initdb",
                "-D",
                str(self._tmpdir / "data"),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ),
            timeout=self.startup_timeout,
            what="initdb",
        )

    def _start_server(self) -> None:
        """Start on a free port (retrying if another process grabbed it) and wait until ready."""
        assert self._tmpdir is not None
        deadline = time.monotonic() + self.startup_timeout
        attempts = 3
        for attempt in range(1, attempts + 1):
            self._port = free_port()
            options = shlex.join(
                [
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", f"port={self._port}",
                    "-c", f"unix_socket_directories={self._tmpdir}",
                    "-c", "fsync=off",
                    "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off",
                ]
            )  # fmt: skip
            remaining = max(1.0, deadline - time.monotonic())
            try:
                self._run(
                    self._command(
                        "pg_ctl",
                        "start",
                        "-D",
                        str(self._tmpdir / "data"),
                        "-l",
                        str(self._log_path),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        str(int(remaining)),
                    ),
                    timeout=remaining + 10,
                    what="pg_ctl start",
                )
            except RuntimeError as exc:
                if attempt < attempts and "could not bind" in self._log_tail():
                    self._log_path.unlink(missing_ok=True)
                    continue
                raise RuntimeError(
                    f"PostgreSQL did not come up (port {self._port}, "
                    f"timeout {self.startup_timeout:.0f}s, attempt {attempt}): {exc}"
                ) from exc
            break
        self._pid = self._read_postmaster_pid()
        self._wait_until_accepting(deadline)

    def _wait_until_accepting(self, deadline: float) -> None:
        """Poll a TCP connection until it works; pg_ctl -w checks readiness, we check TCP."""
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self._libpq_conninfo("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.1)
        raise RuntimeError(
            f"PostgreSQL did not accept connections on 127.0.0.1:{self._port} within "
            f"{self.startup_timeout:.0f}s: {last_error}\n{self._log_tail()}"
        )

    def _read_postmaster_pid(self) -> int:
        """The first line of postmaster.pid is the postmaster's PID."""
        assert self._tmpdir is not None
        text = (self._tmpdir / "data" / "postmaster.pid").read_text(encoding="utf-8")
        return int(text.splitlines()[0])

    def _pg_ctl_stop(self, tmpdir: Path) -> None:
        """Fast shutdown (disconnect clients, no checkpoint wait) of our own data dir only."""
        with contextlib.suppress(RuntimeError):
            self._run(
                self._command(
                    "pg_ctl",
                    "stop",
                    "-D",
                    str(tmpdir / "data"),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(self.stop_timeout)),
                ),
                timeout=self.stop_timeout + 10,
                what="pg_ctl stop",
            )

    def _ensure_dead(self, pid: int, data_dir: Path) -> None:
        """If pg_ctl could not stop it, SIGQUIT then SIGKILL our postmaster PID (only it).

        Before signalling, check the PID still runs with our data directory on its command
        line, so a recycled PID belonging to someone else is never touched.
        """
        for sig in (None, signal.SIGQUIT, signal.SIGKILL):
            if sig is not None:
                if not self._is_our_postmaster(pid, data_dir):
                    return
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5.0
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not process_alive(pid):
                return
        raise RuntimeError(f"PostgreSQL postmaster (pid {pid}) did not exit")

    @staticmethod
    def _is_our_postmaster(pid: int, data_dir: Path) -> bool:
        """True if ``pid``'s command line names ``data_dir`` (i.e. it is the server we started)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return os.fsencode(str(data_dir)) in cmdline

    def _libpq_conninfo(self, dbname: str) -> str:
        """Conninfo for psycopg itself (admin work), over TCP like the tests use."""
        return f"host=127.0.0.1 port={self.port} user={_SUPERUSER} dbname={dbname}"

    @property
    def _log_path(self) -> Path:
        assert self._tmpdir is not None
        return self._tmpdir / "server.log"

    def _log_tail(self) -> str:
        """Last lines of the server log, the first thing anyone needs when startup fails."""
        if self._tmpdir is None:
            return ""
        return self._tail(self._log_path, header="server log")

    @staticmethod
    def _tail(path: Path, header: str | None = None) -> str:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        if not lines:
            return ""
        label = header or path.name
        body = "\n".join(lines[-_LOG_TAIL_LINES:])
        return f"--- last lines of {label} ---\n{body}\n"
