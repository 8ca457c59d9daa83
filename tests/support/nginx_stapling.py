"""A real nginx serving TLS on 127.0.0.1 and stapling an OCSP response read from a file.

Why: a device that cannot reach the OCSP responder (or should not, for privacy) learns its
server's status from the response the server staples into the handshake (RFC 6066 §8). nginx
can staple a response it is given as a file (`ssl_stapling_file`), which is what
`fleetpki ocsp export` writes; only the real server shows that it accepts the file.

nginx reads the file when it loads its configuration: after a new export, `reload()` (SIGHUP
to the master this object started) makes new connections get the new response.

Each instance owns a private prefix directory and a free port, and `stop()` signals exactly the
master process it started (SIGQUIT, bounded wait, then SIGKILL to its own process group).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from support.nginx import nginx_binary
from support.revocation_home import free_port

__all__ = ["StaplingNginx"]

_START_ATTEMPTS = 3
_LOG_TAIL = 4000


class StaplingNginx:
    def __init__(self, *, chain: Path, key: Path, stapling_file: Path, directory: Path,
                 server_name: str = "localhost", timeout: float = 15.0) -> None:
        """`chain` is the leaf followed by its issuing CA: nginx needs the issuer to match the
        response to the certificate, and sends the chain to clients."""
        self.chain = chain.resolve()
        self.key = key.resolve()
        self.stapling_file = stapling_file.resolve()
        self.directory = directory.resolve()
        self.server_name = server_name
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("nginx is not running: call start() first")
        return self._port

    @property
    def error_log(self) -> str:
        return _read(self.directory / "error.log")

    def config(self, port: int) -> str:
        root = os.geteuid() == 0
        d = self.directory
        return (
            # As root, keep the workers root: they cannot enter private (0700) test dirs.
            ("user root root;\n" if root else "")
            + "worker_processes 1;\n"
            f"pid {d / 'nginx.pid'};\n"
            f"lock_file {d / 'nginx.lock'};\n"
            f"error_log {d / 'error.log'} info;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            f"    access_log {d / 'access.log'};\n"
            + "".join(f"    {name}_temp_path {d / 'temp' / name};\n"
                      for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + "    server {\n"
            f"        listen 127.0.0.1:{port} ssl;\n"
            f"        server_name {self.server_name};\n"
            f"        ssl_certificate {self.chain};\n"
            f"        ssl_certificate_key {self.key};\n"
            "        ssl_stapling on;\n"
            f"        ssl_stapling_file {self.stapling_file};\n"
            "        location / { return 200 \"stapled\\n\"; }\n"
            "    }\n"
            "}\n")

    def start(self) -> Self:
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.directory / "temp" / name).mkdir(parents=True, exist_ok=True)
        binary = nginx_binary()
        deadline = time.monotonic() + self.timeout
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port()
            conf = self.directory / "nginx.conf"
            conf.write_text(self.config(port))
            (self.directory / "error.log").unlink(missing_ok=True)
            with (self.directory / "nginx.out").open("ab") as out:
                self._process = subprocess.Popen(
                    [binary, "-p", f"{self.directory}/", "-c", str(conf),
                     "-e", str(self.directory / "error.log"), "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.directory, start_new_session=True)
            self._port = port
            failure = self._wait_listening(deadline)
            if failure is None:
                return self
            self.stop()
            if attempt < _START_ATTEMPTS and "Address already in use" in self._logs():
                continue
            raise RuntimeError(f"nginx did not start ({failure}):\n{self._logs()}")
        raise AssertionError("unreachable")

    def reload(self) -> None:
        """Re-read the configuration and the stapling file (SIGHUP), and wait (bounded) until
        a worker with the new configuration has started."""
        assert self._process is not None
        started = self.error_log.count("start worker process")
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.error_log.count("start worker process") > started:
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not reload:\n{self._logs()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _wait_listening(self, deadline: float) -> str | None:
        assert self._process is not None and self._port is not None
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                return f"exited with status {code}"
            try:
                with socket.create_connection(("127.0.0.1", self._port), timeout=0.5):
                    return None
            except OSError:
                time.sleep(0.05)
        return f"not listening on 127.0.0.1:{self._port} after {self.timeout:.0f} s"

    def _logs(self) -> str:
        return (self.error_log + _read(self.directory / "nginx.out"))[-_LOG_TAIL:]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
