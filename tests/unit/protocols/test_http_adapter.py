"""Routing on the path as the client wrote it (RFC 3986 §2.2): DelimitedRoute."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Match
from starlette.testclient import TestClient

from fleetpki.protocols.http_adapter import DelimitedRoute
from fleetpki.url_paths import encoded_slash, path_as_sent


def scope(raw_path: bytes | None, path: str = "/x") -> dict[str, Any]:
    found: dict[str, Any] = {"type": "http", "method": "GET", "path": path, "root_path": ""}
    if raw_path is not None:
        found["raw_path"] = raw_path
    return found


@pytest.mark.parametrize(("raw_path", "expected"), [
    (b"/est/sensor%2Fcacerts", True),
    (b"/est/sensor%2fcacerts", True),
    (b"/est/sensor/cacerts", False),
    (b"/est/%63acerts", False),  # an encoded unreserved character: the character itself
    (b"/est/sensor%252Fcacerts", False),  # an encoded '%': the segment holds '%2F' as text
    (b"/scep?message=MII%2Fabc", False),  # a query is data, not the path
    (None, False),  # a server that gives no raw path
])
def test_encoded_slash_looks_at_the_path_as_sent(raw_path: bytes | None,
                                                  expected: bool) -> None:
    assert encoded_slash(scope(raw_path)) is expected


def test_path_as_sent_keeps_the_encoding() -> None:
    assert path_as_sent(scope(b"/acme/order%2Fabc", "/acme/order/abc")) == "/acme/order%2Fabc"
    assert path_as_sent(scope(None, "/acme/order/abc")) == "/acme/order/abc"


def test_a_delimited_route_matches_no_path_with_an_encoded_slash() -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"label {request.path_params['label']}")

    route = DelimitedRoute("/est/{label}/cacerts", endpoint, methods=["GET"])
    assert route.matches(scope(b"/est/sensor/cacerts", "/est/sensor/cacerts"))[0] is Match.FULL
    assert route.matches(scope(b"/est/sensor%2Fcacerts", "/est/sensor/cacerts"))[0] is (
        Match.NONE)
    with TestClient(Starlette(routes=[route])) as client:
        assert client.get("/est/sensor/cacerts").text == "label sensor"
        assert client.get("/est/sens%6Fr/cacerts").text == "label sensor"
        assert client.get("/est/sensor%2Fcacerts").status_code == 404
        assert client.get("/est/sensor/cacerts?x=%2F").status_code == 200
