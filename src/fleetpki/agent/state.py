"""What an agent remembers between sessions, besides its keys and certificates.

Persisted as JSON next to the identity files (keystore.py writes it atomically) and shown by
`fleetpki-agent status`. It holds no secret: keys live in their own 0600 files. Nor does it
hold an identity: losing it costs a fresh renewal window, a reset backoff and the last error,
and a request held for approval (pending_since) is sent again with a new key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any


class Health:
    ok = "ok"
    # No identity that works, and neither the factory identity nor a bootstrap secret could
    # get one: a person must re-provision the device.
    needs_reprovisioning = "needs-reprovisioning"


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    start: dt.datetime
    end: dt.datetime
    source: str  # "server" (renewalinfo) or "local" (the policy's fractions)
    explanation: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AgentState:
    serial: str | None = None  # the certificate the window and renew_at were chosen for
    window: Window | None = None
    renew_at: dt.datetime | None = None  # a random instant in the window, kept across restarts
    info_next: dt.datetime | None = None  # when to ask renewalinfo again
    certificate_status: str | None = None  # as the server last said: valid|expired|revoked
    next_attempt: dt.datetime | None = None  # backoff gate after a failure
    failures: int = 0
    pending_since: dt.datetime | None = None  # a held enrollment (RFC 7030 §4.2.3)
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    last_renewal_at: dt.datetime | None = None
    health: str = Health.ok

    def replace(self, **changes: Any) -> AgentState:
        return dataclasses.replace(self, **changes)

    def failed(self, message: str, now: dt.datetime, retry_at: dt.datetime) -> AgentState:
        return self.replace(failures=self.failures + 1, last_error=message, last_error_at=now,
                            next_attempt=retry_at)

    def to_json(self) -> str:
        document = {name: _encode(getattr(self, name))
                    for name in (f.name for f in dataclasses.fields(self)) if name != "window"}
        if self.window is not None:
            document["window"] = {"start": _encode(self.window.start),
                                  "end": _encode(self.window.end),
                                  "source": self.window.source,
                                  "explanation": self.window.explanation}
        return json.dumps(document, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AgentState:
        """The saved state, or ValueError saying what is wrong with it (for a message that
        names the file). The key store then starts from a fresh state rather than refusing to
        run, which would leave the device without renewals: the file holds no identity."""
        try:
            document = json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        window = document.pop("window", None)
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {name: _decode(name, value)
                                  for name, value in document.items() if name in known}
        if window is not None:
            if not isinstance(window, dict) or not {"start", "end", "source"} <= set(window):
                raise ValueError("window must be an object with start, end and source")
            explanation = window.get("explanation")
            if explanation is not None and not isinstance(explanation, str):
                raise ValueError("the window's explanation must be a string")
            values["window"] = Window(_time("window.start", window["start"]),
                                      _time("window.end", window["end"]),
                                      str(window["source"]), explanation)
        return cls(**values)


_TIMES = frozenset({"renew_at", "info_next", "next_attempt", "pending_since", "last_error_at",
                    "last_renewal_at"})


def _encode(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value


def _decode(name: str, value: object) -> object:
    """A field's value, or ValueError: a file edited by hand or written by another version
    must not put a string where arithmetic expects a number (the session would crash)."""
    if name in _TIMES and value is not None:
        return _time(name, value)
    if name == "failures":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError("failures must be a count")
        return value
    if value is None and name != "health":
        return value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _time(name: str, value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a timestamp string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name} has no time zone")
    return parsed
