"""HEAD requests on the wire: everything a server sends for one, down to the last byte.

An HTTP client library (curl included) reads no content after a HEAD response's header, so
it cannot tell whether a server wrongly sent some: this one reads until the server closes.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["HeadReply", "head"]

_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class HeadReply:
    status: int
    headers: dict[str, str]  # names in lower case
    after_header: bytes  # what the server sent after the header: nothing, for a HEAD


def head(url: str, *, cafile: Path | None = None, headers: Mapping[str, str] | None = None,
         timeout: float = 20.0) -> HeadReply:
    """HEAD `url` (its path and query sent exactly as written) on a new connection with
    `Connection: close`, over TLS trusting `cafile` for https URLs, and read until the
    server closes, within `timeout` seconds in all."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"HEAD {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
             *(f"{name}: {value}" for name, value in (headers or {}).items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    deadline = time.monotonic() + timeout
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as raw:
        if parts.scheme != "https":
            received = _exchange(raw, request, deadline)
        else:
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
            # As curl does: a CA certificate in `cafile` is a trust anchor even when it is
            # not a root (the server's tls-chain.pem stops at the issuing CA).
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            with context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
                received = _exchange(tls, request, deadline)
    header, found, after = received.partition(b"\r\n\r\n")
    assert found, f"no complete header from {url}: {received[:500]!r}"
    status_line, *fields = header.decode("latin-1").split("\r\n")
    return HeadReply(int(status_line.split()[1]),
                     {name.strip().lower(): value.strip()
                      for name, _, value in (field.partition(":") for field in fields)},
                     after)


def _exchange(conn: socket.socket, request: bytes, deadline: float) -> bytes:
    """Send the request, then read until the server closes (or the deadline passes: the
    test fails with TimeoutError)."""
    conn.sendall(request)
    received = b""
    while len(received) <= _MAX_BYTES:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = conn.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        received += chunk
    return received
