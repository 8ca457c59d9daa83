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


@dataclass(frozen=True)
class RunningServer:
    home: Path
    port: int
    proxy_port: int | None
    log: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}/.well-known/est"

    @property
    def tls_chain(self) -> Path:
        """The server's certificate chain: what clients pass as --cacert."""
        return self.home / "server" / "tls-chain.pem"


@contextmanager
def fleet_server(home: Path, *, workers: int = 1, timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """Start `fleetpki serve`, wait (bounded) for its ready line, stop it by PID afterwards."""
    log = home / "serve.log"
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetpki.cli", "--home", str(home), "serve",
         "--listen", "127.0.0.1:0", "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=handle, text=True,
        env={**os.environ, **(env or {})})
    try:
        port, proxy_port = _wait_ready(process, timeout, log)
        yield RunningServer(home, port, proxy_port, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
        handle.close()


def _wait_ready(process: subprocess.Popen[str], timeout: float, log: Path
                ) -> tuple[int, int | None]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    port: int | None = None
    lines: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.5):
                if process.poll() is not None:
                    break
                continue
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if port is None and (match := _READY.search(line)):
                port = int(match.group(1))
                if "proxy" not in "".join(lines) and not _expects_proxy(log):
                    return port, None
            if port is not None and (proxy := _PROXY.search(line)):
                return port, int(proxy.group(1))
    raise RuntimeError(f"fleetpki serve did not become ready within {timeout} s; stdout: "
                       f"{''.join(lines)!r}; stderr: {log.read_text()[-4000:]}")


def _expects_proxy(log: Path) -> bool:
    settings = log.parent / "fleetpki.toml"
    return settings.exists() and "[server.proxy]" in settings.read_text()
