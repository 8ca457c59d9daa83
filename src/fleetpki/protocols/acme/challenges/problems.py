"""The one error a validator raises: an AcmeProblem whose detail an operator can act on.

The detail names what was tried (URL, address, port, record name) and what was expected
against what was found. What a peer sent is shown only as a short excerpt: RFC 8555 §10.4
warns that echoing validation responses turns the server into a reader of hosts the client
cannot reach itself, so an excerpt is enough to recognise a mistake, and no more.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Literal

from fleetpki.core.acme_problems import AcmeProblem

# RFC 8555 §6.7 error types a validation can end with.
Kind = Literal["connection", "dns", "incorrectResponse", "tls", "unauthorized", "malformed",
               "unsupportedIdentifier"]

DETAIL_LIMIT = 800
EXCERPT_LIMIT = 80


def problem(kind: Kind, detail: str) -> AcmeProblem:
    """RFC 8555 §6.7: a validation failure is the client's to fix, hence status 400."""
    return AcmeProblem(kind, clip(detail, DETAIL_LIMIT), status=400)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def excerpt(value: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """A quoted, printable rendering of what a peer sent, cut to `limit` characters."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def reason(error: BaseException) -> str:
    """An exception in words. A wrapped operating-system error wins ("Connection refused"
    says more than httpx's "All connection attempts failed"); else the message, else the
    class name (httpx's timeouts often carry no message)."""
    cause: BaseException | None = error
    for _ in range(5):
        if cause is None:
            break
        if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError | socket.gaierror):
            if cause.errno:
                return os.strerror(cause.errno)  # asyncio's strerror is "Connect call failed"
            if cause.strerror:
                return cause.strerror
        cause = cause.__cause__ or cause.__context__
    text = str(error).strip()
    return text if text else type(error).__name__
