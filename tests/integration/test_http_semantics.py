"""HTTP semantics of the enrollment protocols against `fleetpki serve`, with curl as the client:
HEAD on EST's GET operations, and paths as the client wrote them.

RFC 3986 §2.2: a percent-encoded slash is data inside a segment, not a delimiter, so
`/.well-known/est/sensor%2Fcacerts` is not label `sensor`, operation `cacerts`, but a resource
no protocol has (404), on the HTTPS listener and on the plain-HTTP one. A percent-encoded
unreserved character is the character itself (RFC 3986 §2.3), and '%2F' in a query is only data.

One server for the module, on a copy of the session's initialised home (its default profiles:
`sensor`, `gateway` with SCEP, `edge` with ACME).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fleet_server import RunningServer, fleet_server
from support.http_head import head
from support.revocation_home import HttpReply, curl

EST_OPERATIONS = "no EST operation at "


@pytest.fixture(scope="module")
def server(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("http-paths") / "home"
    shutil.copytree(initialised_home_template, home)
    with fleet_server(home) as running:
        yield running


def https(server: RunningServer, path: str, *args: str) -> HttpReply:
    """One request to the HTTPS listener, the path sent exactly as written."""
    return curl(f"https://127.0.0.1:{server.port}{path}", "--cacert", str(server.tls_chain),
                *args)


def plain(server: RunningServer, path: str, *args: str) -> HttpReply:
    """One request to the plain-HTTP (revocation) listener, the path sent as written."""
    return curl(f"{server.revocation_base}{path}", *args)


# -- HEAD on EST's GET operations (RFC 9110 §9.3.2) -----------------------------------------


@pytest.mark.parametrize("operation", ["cacerts", "csrattrs", "sensor/cacerts",
                                       "sensor/csrattrs"])
def test_head_on_est_get_operations_answers_as_get_without_content(
        server: RunningServer, operation: str) -> None:
    got = https(server, f"/.well-known/est/{operation}")
    reply = head(f"{server.base}/{operation}", cafile=server.tls_chain)
    assert (reply.status, got.status) == (200, 200), (reply, got.status)
    assert reply.after_header == b"", reply
    assert int(reply.headers["content-length"]) == len(got.body) > 0
    for name in ("content-type", "content-transfer-encoding"):
        assert reply.headers[name] == got.headers[name], name
    assert "date" in reply.headers


# -- an encoded slash is not a delimiter (RFC 3986 §2.2) ------------------------------------


@pytest.mark.parametrize(("path", "method"), [
    ("/.well-known/est/sensor%2Fcacerts", "GET"),
    ("/.well-known/est/sensor%2fcsrattrs", "GET"),
    ("/.well-known/est/sensor%2Fcacerts", "POST"),
    ("/.well-known/est/sensor%2Fsimpleenroll", "GET"),
    ("/.well-known/est/sensor%2Fsimpleenroll", "POST"),
    ("/.well-known/est%2Fcacerts", "GET"),
    ("/.well-known%2Fest/sensor/cacerts", "GET"),
])
def test_an_encoded_slash_in_an_est_path_is_404_with_est_text(
        server: RunningServer, path: str, method: str) -> None:
    reply = https(server, path, "-X", method)
    assert reply.status == 404, (path, method, reply)
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.body.decode().startswith(f"{EST_OPERATIONS}{path} (operations: cacerts,"), (
        reply.body)
    assert "date" in reply.headers
    assert "Traceback" not in reply.body.decode()


@pytest.mark.parametrize(("path", "status"), [
    ("/.well-known/est/cacerts", 200),
    ("/.well-known/est/sensor/cacerts", 200),
    ("/.well-known/est/sensor/csrattrs", 200),
    ("/.well-known/est/%63acerts", 200),  # an encoded unreserved character is the character
    ("/.well-known/est/sens%6Fr/cacerts", 200),
    ("/.well-known/est/cacerts?x=%2F", 200),  # the query is not the path
    ("/.well-known/est/nosuch/cacerts", 404),
    ("/.well-known/est/sensor/simpleenroll", 405),
])
def test_est_paths_without_an_encoded_slash_are_routed_as_before(
        server: RunningServer, path: str, status: int) -> None:
    reply = https(server, path)
    assert reply.status == status, (path, reply)
    if status == 404:
        assert reply.body == b"no enrollment label 'nosuch' (labels: edge, gateway, sensor)\n"


SCEP_CAPS = "?operation=GetCACaps"


@pytest.mark.parametrize(("listener", "confused", "ordinary", "status"), [
    ("https", "/scep/gateway%2Fpkiclient.exe" + SCEP_CAPS,
     "/scep/gateway/pkiclient.exe" + SCEP_CAPS, 200),
    ("plain", "/scep/gateway%2Fpkiclient.exe" + SCEP_CAPS,
     "/scep/gateway/pkiclient.exe" + SCEP_CAPS, 200),
    ("plain", "/scep%2Fgateway" + SCEP_CAPS, "/scep/gateway" + SCEP_CAPS, 200),
    ("plain", "/cgi-bin%2Fpkiclient.exe" + SCEP_CAPS, "/cgi-bin/pkiclient.exe" + SCEP_CAPS, 200),
    ("plain", "/scep%2Fgateway%2Fpkiclient.exe" + SCEP_CAPS,
     "/scep/gateway" + SCEP_CAPS + "&x=a%2Fb", 200),  # the query is not the path
    ("plain", "/.well-known/cmp/p%2Fgateway", "/.well-known/cmp/p/gateway", 405),
    ("https", "/.well-known%2Fcmp", "/.well-known/cmp", 405),
    ("https", "/acme/p%2Fedge/directory", "/acme/p/edge/directory", 200),
    ("https", "/acme%2Fdirectory", "/acme/directory", 200),
    ("https", "/acme%2Fnew-nonce", "/acme/new-nonce", 204),
])
def test_an_encoded_slash_in_a_scep_cmp_or_acme_path_is_404(
        server: RunningServer, listener: str, confused: str, ordinary: str,
        status: int) -> None:
    ask = https if listener == "https" else plain
    assert ask(server, ordinary).status == status, ordinary
    reply = ask(server, confused)
    assert reply.status == 404, (confused, reply)
    assert "date" in reply.headers
    if confused.startswith("/acme"):  # ACME's own 404: a problem document (RFC 8555 §6.7)
        assert reply.headers["content-type"] == "application/problem+json"
        problem = json.loads(reply.body)
        assert problem["type"] == "urn:ietf:params:acme:error:malformed"
        assert problem["detail"].startswith(f"no ACME resource at {confused};"), problem
        assert "replay-nonce" in reply.headers
