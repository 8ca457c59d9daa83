from __future__ import annotations

import datetime as dt

import pytest

from fleetpki.agent.est_wire import body_text, describe, retry_after, status_text
from fleetpki.agent.messages import HttpResponse, TransportFailure

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("120", NOW + dt.timedelta(seconds=120)),
    (" 5 ", NOW + dt.timedelta(seconds=5)),
    ("9" * 40, NOW + dt.timedelta(days=90)),  # capped, and no overflow on the way
    ("Fri, 01 Jan 2027 00:00:00 GMT", None), ("-5", None), ("", None),
])
def test_retry_after(value: str, expected: dt.datetime | None) -> None:
    assert retry_after(HttpResponse(503, {"retry-after": value}, b""), NOW) == expected
    assert retry_after(HttpResponse(503, {}, b""), NOW) is None


def test_error_texts_never_repeat_the_status() -> None:
    empty, said = HttpResponse(503, {}, b"  "), HttpResponse(403, {}, b"window not open\n")
    assert (body_text(empty), status_text(empty)) == ("HTTP 503", "HTTP 503")
    assert (body_text(said), status_text(said)) == ("window not open",
                                                    "HTTP 403: window not open")
    assert describe(said) == "HTTP 403: window not open"
    assert describe(TransportFailure("connection refused")) == "connection refused"
    assert describe(None) == "no answer"
    assert len(body_text(HttpResponse(500, {}, b"x" * 10_000))) == 300
