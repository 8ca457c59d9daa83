"""A real nginx as a TLS-terminating reverse proxy in front of a plain-HTTP upstream.

Why: deployments put fleetpki behind nginx, which terminates TLS (including client
certificates) and forwards the request over plain HTTP. The only way to know what the
application then receives (header names, escaping, what happens without a certificate) is
to run the real proxy, so tests do.

Each ``NginxProxy`` owns a private prefix directory (config, pid file, logs, temp dirs) and
a free port on 127.0.0.1, and ``stop()`` signals exactly the master process it started.

What reaches the upstream (observed with nginx 1.22, see
tests/integration/test_peer_harness.py):

- ``X-SSL-Client-Cert``: ``$ssl_client_escaped_cert``, the client's *leaf* certificate as
  PEM, percent-encoded (``urllib.parse.unquote`` gives the PEM back). Intermediates the
  client sent are not passed on by any nginx variable. Without a client certificate the
  variable is empty and nginx omits the header; a header of the same name sent by the
  client is dropped, because ``proxy_set_header`` replaces it.
- ``X-SSL-Client-Verify``: ``$ssl_client_verify`` (``SUCCESS``, ``FAILED:<reason>`` or
  ``NONE``), informational only.
- ``X-Forwarded-For``: the TCP peer address (``$remote_addr``), overwriting whatever the
  client sent, so the upstream never sees a client-chosen value.

Usage::

    with NginxProxy(upstream_port=8080, server_cert=crt, server_key=key,
                    client_ca=bundle) as proxy:
        curl(f"{proxy.url}/.well-known/est/cacerts")
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import pytest

from support.ports import free_port

__all__ = ["NGINX_PACKAGE", "NginxProxy", "NginxServer", "VerifyClient", "http_preamble",
           "nginx_binary", "render_config"]

NGINX_PACKAGE = "nginx"
"""Debian package with ssl, proxy and ``$ssl_client_escaped_cert`` (nginx >= 1.13.5).

On Debian 12 ``nginx-light`` is only a transitional package that depends on ``nginx``.
"""

VerifyClient = Literal["optional_no_ca", "optional"]
"""``ssl_verify_client`` mode.

``optional_no_ca`` (the default here): nginx asks for a client certificate and checks the
client's proof of possession of its key, but does not judge the chain; it forwards the
leaf and the application decides. The application must verify the chain anyway, and only
it knows the policies (manufacturer IDevID anchors, re-enrollment of an expired
certificate), so the decision stays in one place.

``optional``: nginx also verifies the chain against ``client_ca`` (with
``ssl_verify_depth``) and answers a certificate that fails with its own ``400`` page,
so such requests never reach the upstream.
"""

_SBIN_FALLBACK = Path("/usr/sbin/nginx")
"""Debian installs nginx in /usr/sbin, which is not on every user's PATH."""

_START_ATTEMPTS = 3
_LOG_TAIL_CHARS = 4000


def nginx_binary() -> str:
    """Return the nginx executable, or fail the test saying which Debian package to install."""
    found = shutil.which("nginx")
    if found is None and os.access(_SBIN_FALLBACK, os.X_OK):
        found = str(_SBIN_FALLBACK)
    if found is None:
        pytest.fail(
            f"required tool 'nginx' not found: install the Debian package {NGINX_PACKAGE!r} "
            f"(run ./check, which installs it, or apt-get install {NGINX_PACKAGE})",
            pytrace=False,
        )
    return found


def render_config(
    *,
    prefix: Path,
    listen_port: int,
    upstream_port: int,
    server_cert: Path,
    server_key: Path,
    client_ca: Path | None,
    verify_client: VerifyClient = "optional_no_ca",
    verify_depth: int = 3,
    run_as_root: bool | None = None,
) -> str:
    """Return the nginx.conf text for a TLS proxy on 127.0.0.1:``listen_port``.

    Every path nginx writes to is inside ``prefix``, so several proxies (and a system
    nginx) can coexist. ``client_ca`` is required for ``optional``; with
    ``optional_no_ca`` it only fills the list of acceptable CAs nginx sends in its
    CertificateRequest, and may be None.
    """
    if verify_client == "optional" and client_ca is None:
        raise ValueError("ssl_verify_client optional needs a client_ca bundle")
    client_ca_line = f"        ssl_client_certificate {client_ca};\n" if client_ca else ""
    return (
        http_preamble(prefix, f"fleetpki test proxy: TLS on 127.0.0.1:{listen_port} -> "
                              f"http://127.0.0.1:{upstream_port}", run_as_root=run_as_root)
        + "\n"
        "    server {\n"
        f"        listen 127.0.0.1:{listen_port} ssl;\n"
        "        server_name localhost;\n"
        f"        ssl_certificate {server_cert};\n"
        f"        ssl_certificate_key {server_key};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        f"{client_ca_line}"
        f"        ssl_verify_client {verify_client};\n"
        f"        ssl_verify_depth {verify_depth};\n"
        "\n"
        "        location / {\n"
        f"            proxy_pass http://127.0.0.1:{upstream_port};\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Host $http_host;\n"
        "            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;\n"
        "            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;\n"
        "            proxy_set_header X-Forwarded-For $remote_addr;\n"
        "            proxy_set_header X-Forwarded-Proto https;\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


def http_preamble(prefix: Path, comment: str, *, run_as_root: bool | None = None) -> str:
    """nginx.conf up to and including the opening of the ``http`` block: every path nginx
    writes to is inside ``prefix``, so several instances (and a system nginx) coexist."""
    if run_as_root is None:
        run_as_root = os.geteuid() == 0
    # As root, nginx would switch its workers to 'nobody', which cannot enter the private
    # (mode 0700) test directories holding the temp paths: keep the workers as root. The
    # directive is meaningless (and warned about) when the master is not root.
    user = "user root root;\n" if run_as_root else ""
    temp = prefix / "temp"
    return (
        f"# {comment}\n"
        f"{user}"
        "worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"lock_file {prefix / 'nginx.lock'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "\n"
        "events {\n"
        "    worker_connections 64;\n"
        "}\n"
        "\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"    client_body_temp_path {temp / 'client_body'};\n"
        f"    proxy_temp_path {temp / 'proxy'};\n"
        f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"    scgi_temp_path {temp / 'scgi'};\n"
    )


class NginxServer(abc.ABC):
    """Own one nginx master process on 127.0.0.1 with a private prefix directory.

    Subclasses say what to serve (``render``). ``start()`` writes the config, runs
    ``nginx -p DIR -c DIR/nginx.conf -g "daemon off;"`` in its own process group, and waits
    (bounded) until the port accepts connections; if nginx exits or never listens it raises
    RuntimeError carrying the error log. ``stop()`` sends SIGQUIT (graceful) to that master,
    waits, then SIGKILLs its process group.
    """

    def __init__(self, *, directory: Path | None = None, startup_timeout: float = 15.0,
                 stop_timeout: float = 10.0) -> None:
        """Nothing runs until ``start()``. ``directory`` is the private prefix (created if
        missing); by default a fresh temporary directory that ``stop()`` removes."""
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._given_directory = directory
        self._directory: Path | None = None
        self._owns_directory = False
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._config_text: str | None = None

    @abc.abstractmethod
    def render(self, *, prefix: Path, listen_port: int) -> str:
        """The nginx.conf to run with, listening on 127.0.0.1:``listen_port``."""

    # -- public API ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port on 127.0.0.1."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() first")
        return self._port

    @property
    def pid(self) -> int:
        """PID of the nginx master process this object started."""
        if self._process is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() first")
        return self._process.pid

    @property
    def directory(self) -> Path:
        """The private prefix directory (config, logs, pid file, temp paths)."""
        if self._directory is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() first")
        return self._directory

    @property
    def config_text(self) -> str:
        """The nginx.conf this server runs with (for documentation and failure messages)."""
        if self._config_text is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() first")
        return self._config_text

    @property
    def error_log(self) -> str:
        """Current contents of nginx's error log (empty if none yet)."""
        return self._read(self.directory / "error.log")

    @property
    def access_log(self) -> str:
        """Current contents of nginx's access log (empty if none yet)."""
        return self._read(self.directory / "access.log")

    def start(self) -> Self:
        """Start nginx and wait until it accepts TCP connections on its port."""
        if self._process is not None:
            return self
        binary = nginx_binary()
        if self._given_directory is not None:
            directory = Path(self._given_directory).resolve()
            directory.mkdir(parents=True, exist_ok=True)
        else:
            directory = Path(tempfile.mkdtemp(prefix="fleetpki-nginx-"))
            self._owns_directory = True
        self._directory = directory
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (directory / "temp" / name).mkdir(parents=True, exist_ok=True)
        try:
            self._start_with_retries(binary, directory)
        except BaseException:
            self.stop()
            raise
        return self

    def reload(self) -> None:
        """Re-read the configuration and the files it names (SIGHUP to the master this object
        started), and wait (bounded) until a worker with the new configuration has started."""
        if self._process is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() first")
        started = self.error_log.count("start worker process")
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.error_log.count("start worker process") > started:
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not reload:\n{self._logs()}")

    def stop(self) -> None:
        """Stop the master this object started (SIGQUIT, bounded wait, SIGKILL). Idempotent."""
        process, self._process = self._process, None
        try:
            if process is not None:
                self._terminate(process)
        finally:
            self._port = None
            if self._owns_directory and self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
                self._directory = None
                self._owns_directory = False

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server whatever happened in the block."""
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _start_with_retries(self, binary: str, directory: Path) -> None:
        """Start on a free port; if another process took the port first, try a new one."""
        deadline = time.monotonic() + self.startup_timeout
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port()
            config = self.render(prefix=directory, listen_port=port)
            conf_path = directory / "nginx.conf"
            conf_path.write_text(config, encoding="utf-8")
            (directory / "error.log").unlink(missing_ok=True)
            self._config_text = config
            self._port = port
            argv = [
                binary,
                "-p", f"{directory}/",
                "-c", str(conf_path),
                "-e", str(directory / "error.log"),
                "-g", "daemon off;",
            ]  # fmt: skip
            with (directory / "nginx.out").open("ab") as out:
                self._process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=directory,
                    start_new_session=True,
                )
            failure = self._wait_listening(deadline)
            if failure is None:
                return
            process, self._process = self._process, None
            self._terminate(process)
            if attempt < _START_ATTEMPTS and "Address already in use" in self._logs():
                continue
            raise RuntimeError(
                f"nginx did not start ({failure}; attempt {attempt}): "
                f"{' '.join(argv)}\n--- logs ---\n{self._logs()}\n"
                f"--- {conf_path} ---\n{config}"
            )

    def _wait_listening(self, deadline: float) -> str | None:
        """Poll until the port accepts connections; return a reason string on failure."""
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
        return f"not listening on 127.0.0.1:{self._port} after {self.startup_timeout:.0f}s"

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        """Graceful SIGQUIT to the master, then SIGKILL to its process group if needed.

        The group is the one ``start_new_session`` created for this master, so only its
        own workers are in it; killing the group avoids orphaned workers holding the port.
        The group is signalled only while the master is not yet reaped, so its id cannot
        have been reused by an unrelated process.
        """
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=self.stop_timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"nginx master {process.pid} did not exit after SIGKILL") from exc

    def _logs(self) -> str:
        """Error log plus nginx's own stdout/stderr, trimmed to the last few KB."""
        if self._directory is None:
            return ""
        text = (
            self._read(self._directory / "error.log")
            + self._read(self._directory / "nginx.out")
        )
        return text[-_LOG_TAIL_CHARS:]

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


class NginxProxy(NginxServer):
    """nginx proxying TLS on 127.0.0.1 to a local HTTP upstream (see ``render_config``)."""

    def __init__(
        self,
        *,
        upstream_port: int,
        server_cert: Path,
        server_key: Path,
        client_ca: Path | None = None,
        verify_client: VerifyClient = "optional_no_ca",
        verify_depth: int = 3,
        directory: Path | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(directory=directory, startup_timeout=startup_timeout,
                         stop_timeout=stop_timeout)
        self.upstream_port = upstream_port
        self.server_cert = Path(server_cert).resolve()
        self.server_key = Path(server_key).resolve()
        self.client_ca = Path(client_ca).resolve() if client_ca is not None else None
        self.verify_client: VerifyClient = verify_client
        self.verify_depth = verify_depth

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:43123``."""
        return f"https://127.0.0.1:{self.port}"

    def render(self, *, prefix: Path, listen_port: int) -> str:
        return render_config(
            prefix=prefix,
            listen_port=listen_port,
            upstream_port=self.upstream_port,
            server_cert=self.server_cert,
            server_key=self.server_key,
            client_ca=self.client_ca,
            verify_client=self.verify_client,
            verify_depth=self.verify_depth,
        )
