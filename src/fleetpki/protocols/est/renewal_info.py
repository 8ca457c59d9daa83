"""The EST renewal-information document: when the server wants a device to renew.

fleetpki's extension to EST, in the spirit of ACME Renewal Information (RFC 9773): a device
asks `GET /.well-known/est/[<label>/]renewalinfo` over TLS with its current certificate as
the client certificate (the same authentication as simplereenroll, RFC 7030 §3.3.2), and
gets JSON:

    {"suggestedWindow": {"start": "2027-03-01T00:00:00Z", "end": "2027-03-16T00:00:00Z"},
     "status": "valid", "serial": "5f3a…", "notAfter": "2027-04-01T00:00:00Z",
     "explanation": "key compromise at the integrator: renew now"}

plus `Retry-After` (seconds): when to ask again. The field names of RFC 9773 §4.2 are kept
where the meaning is the same, so one parser serves both protocols later. The device picks a
random instant in the window (RFC 9773 §4.2), so that a fleet spreads itself.

Pure functions over bytes, shared by the server and the device agent (docs/agent.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any

from fleetpki.core.errors import BadInput

__all__ = ["CT_JSON", "MAX_DOCUMENT_BYTES", "STATUSES", "RenewalInfo", "decode_renewal_info",
           "encode_renewal_info"]

CT_JSON = "application/json"
MAX_DOCUMENT_BYTES = 8 * 1024
STATUSES = frozenset({"valid", "expired", "revoked"})
_SERIAL = re.compile(r"^[0-9a-f]{1,40}$")


@dataclasses.dataclass(frozen=True, slots=True)
class RenewalInfo:
    start: dt.datetime
    end: dt.datetime
    status: str  # of the certificate the device presented: valid | expired | revoked
    serial: str  # lower-case hex
    not_after: dt.datetime
    explanation: str | None = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise BadInput("the suggested renewal window ends before it starts")
        if self.status not in STATUSES:
            raise BadInput(f"unknown certificate status '{self.status[:20]}' "
                           f"(expected one of {', '.join(sorted(STATUSES))})")
        if not _SERIAL.match(self.serial):
            raise BadInput("the serial is not lower-case hex of at most 20 octets")


def encode_renewal_info(info: RenewalInfo) -> bytes:
    document: dict[str, Any] = {
        "suggestedWindow": {"start": _timestamp(info.start), "end": _timestamp(info.end)},
        "status": info.status, "serial": info.serial, "notAfter": _timestamp(info.not_after),
    }
    if info.explanation:
        document["explanation"] = info.explanation
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def decode_renewal_info(body: bytes) -> RenewalInfo:
    """The document, or BadInput naming what is wrong. Unknown members are ignored, so that a
    newer server can add some without breaking deployed agents."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise BadInput(f"the renewal information is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the renewal information is not JSON") from None
    if not isinstance(document, dict):
        raise BadInput("the renewal information is not a JSON object")
    window = document.get("suggestedWindow")
    if not isinstance(window, dict):
        raise BadInput("the renewal information has no suggestedWindow object")
    explanation = document.get("explanation")
    if explanation is not None and not isinstance(explanation, str):
        raise BadInput("explanation must be a string")
    return RenewalInfo(
        start=_parse_time(window.get("start"), "suggestedWindow.start"),
        end=_parse_time(window.get("end"), "suggestedWindow.end"),
        status=_string(document, "status"), serial=_string(document, "serial"),
        not_after=_parse_time(document.get("notAfter"), "notAfter"),
        explanation=explanation)


def _string(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise BadInput(f"{name} must be a string")
    return value


def _timestamp(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, whole seconds (RFC 9773 §4.2 uses RFC 3339 timestamps)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise BadInput(f"{name} must be an RFC 3339 timestamp string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{name} is not an RFC 3339 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise BadInput(f"{name} has no time zone (RFC 3339 requires one)")
    return parsed.astimezone(dt.UTC)
