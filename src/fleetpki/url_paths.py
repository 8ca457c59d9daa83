"""How every fleetpki listener reads a request path: as the client wrote it.

ASGI servers hand over the path already percent-decoded, so `/crl%2Fissuing.crl` and
`/crl/issuing.crl` look alike. RFC 3986 §2.2: an encoded reserved character is data, not a
delimiter, so the first is one segment, a resource of its own. The protocol front ends and the
CRL files both route by segments; this is the one rule they share (stdlib only, on an ASGI
scope, so that neither needs the other's package).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def encoded_slash(scope: Mapping[str, Any]) -> bool:
    """Whether the path as sent (`raw_path`, without any query, where '%2F' is ordinary data
    in a base64 parameter) holds a percent-encoded slash. A server that gives no raw path
    gives nothing to tell it by: False."""
    raw: bytes | None = scope.get("raw_path")
    return raw is not None and b"%2f" in raw.partition(b"?")[0].lower()


def path_as_sent(scope: Mapping[str, Any]) -> str:
    """The request's path still percent-encoded as the client wrote it (for messages), or the
    decoded one when the server gives no raw path."""
    raw: bytes | None = scope.get("raw_path")
    path: str = scope["path"] if raw is None else raw.partition(b"?")[0].decode("latin-1")
    return path
