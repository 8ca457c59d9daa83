"""Run the real `fleetpki serve` as a child process on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_READY = re.compile(r"serving EST on https://127\.0\.0\.1:(\d+)/")
_PROXY = re.compile(r"proxy listener .* on http://127\.0\.0\.1:(\d+)")
_REVOCATION = re.compile(r"CRLs and OCSP on http://127\.0\.0\.1:(\d+)/")
_ADMIN = re.compile(r"admin API and dashboard on https://127\.0\.0\.1:(\d+)/")


@dataclass(frozen=True)
class RunningServer:
    home: Path
    port: int
    proxy_port: int | None
    revocation_port: int
    log: Path
    admin_port: int | None = None
    ready_output: str = ""  # what the command printed up to its ready lines

    @property
    def admin_base(self) -> str:
        """The admin API and dashboard, over HTTPS with the server's certificate."""
        return f"https://127.0.0.1:{self.admin_port}"

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}/.well-known/est"

    @property
    def revocation_base(self) -> str:
        """Where CRLs (/crl/...) and OCSP (/ocsp) are served, over plain HTTP."""
        return f"http://127.0.0.1:{self.revocation_port}"

    @property
    def tls_chain(self) -> Path:
        """The server's certificate chain: what clients pass as --cacert."""
        return self.home / "server" / "tls-chain.pem"


@contextmanager
def fleet_server(home: Path, *, workers: int = 1, timeout: float = 60.0,
                 env: dict[str, str] | None = None, command: tuple[str, ...] = ("serve",)
                 ) -> Iterator[RunningServer]:
    """Start `fleetpki serve` (or another command that ends up serving, such as `up`), wait
    (bounded) for its ready line, stop it by PID afterwards. The CRL/OCSP listener takes a
    free port unless fleetpki.toml has a [revocation] table (tests that need the port in
    certificates choose it beforehand)."""
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / f"{home.name}-serve.log"
    handle = log.open("w")
    extra = ["--workers", str(workers)] if command == ("serve",) else []
    settings = home / "fleetpki.toml"
    text = settings.read_text() if settings.exists() else ""
    if "[revocation]" not in text:
        extra += ["--revocation-listen", "127.0.0.1:0"]
    if "[admin]" not in text:
        extra += ["--admin-listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetpki.cli", "--home", str(home), *command,
         "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE, stderr=handle, bufsize=0,
        env={**os.environ, **(env or {})})
    try:
        port, proxy_port, revocation_port, admin_port, output = _wait_ready(
            process, timeout, log, "[server.proxy]" in text)
        yield RunningServer(home, port, proxy_port, revocation_port, log, admin_port, output)
    finally:
        stop_server(process)
        handle.close()


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop: workers finish their requests), SIGKILL if that takes more
    than 20 s; then close the pipe the ready line came through."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def _wait_ready(process: subprocess.Popen[bytes], timeout: float, log: Path,
                expects_proxy: bool) -> tuple[int, int | None, int, int | None, str]:
    """Read the ready lines straight from the pipe (os.read: a buffered reader could hold the
    second line while select() reports nothing more to read)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    text = ""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                text += chunk.decode("utf-8", "replace")
            elif process.poll() is not None:
                break
            ready, revocation = _READY.search(text), _REVOCATION.search(text)
            admin = _ADMIN.search(text)
            # The ready lines come in one burst; the admin line, printed last, closes it.
            if ready is None or revocation is None or admin is None:
                continue
            proxy = _PROXY.search(text)
            if proxy is not None or not expects_proxy:
                return (int(ready.group(1)), int(proxy.group(1)) if proxy else None,
                        int(revocation.group(1)), int(admin.group(1)), text)
    raise RuntimeError(f"fleetpki serve did not become ready within {timeout} s; stdout: "
                       f"{text!r}; stderr: {log.read_text()[-4000:]}")
