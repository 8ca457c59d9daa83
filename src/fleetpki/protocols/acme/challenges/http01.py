"""http-01 (RFC 8555 §8.3; RFC 8738 §5 for ip identifiers).

GET http://<host>[:port]/.well-known/acme-challenge/<token>, sent to each address of the host
in turn until one accepts the connection (addresses.py), with the Host header naming the host
(RFC 8738 §5: the IP address itself for an ip identifier, bracketed when IPv6 as RFC 7230
§5.4 writes it). Redirects are followed by hand (redirects.py) so that every new host goes
through the same resolution and the same limits. The body, at most `max_body` bytes and
stripped of trailing whitespace, must be the key authorization.
"""

from __future__ import annotations

import dataclasses
import ssl

import httpx

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.protocols.acme.challenges.addresses import bracketed, resolve
from fleetpki.protocols.acme.challenges.problems import excerpt, problem, reason
from fleetpki.protocols.acme.challenges.redirects import (
    REDIRECT_STATUSES,
    effective_port,
    redirect_target,
)
from fleetpki.protocols.acme.challenges.settings import ValidationSettings
from fleetpki.protocols.acme.challenges.target import Target

WELL_KNOWN_PATH = "/.well-known/acme-challenge/"
USER_AGENT = "fleetpki-acme-validator"


@dataclasses.dataclass(frozen=True, slots=True)
class _Reply:
    url: httpx.URL  # as the client named it, host name and all
    where: str  # "GET <url> (at <address>)", for details
    status: int
    location: str | None
    body: bytes


def challenge_url(target: Target, token: str, port: int) -> httpx.URL:
    """RFC 8555 §8.3 step 1: "http://{domain}/.well-known/acme-challenge/{token}"; the port
    is written only when it is not 80 (it is 80 outside tests: §8.3 step 3)."""
    host = f"[{target.host}]" if target.ip is not None and target.ip.version == 6 else target.host
    netloc = host if port == 80 else f"{host}:{port}"
    return httpx.URL(f"http://{netloc}{WELL_KNOWN_PATH}{token}")


async def validate_http01(target: Target, token: str, key_auth: str,
                          settings: ValidationSettings) -> None:
    first = challenge_url(target, token, settings.http_port)
    async with _client(settings) as client:
        reply = await _fetch(client, first, settings)
        hops = 0
        while reply.status in REDIRECT_STATUSES:
            if hops == settings.max_redirects:
                raise problem("connection", f"GET {first} was redirected more than "
                                            f"{settings.max_redirects} times (the last from "
                                            f"{reply.url} to {excerpt(reply.location or '')})")
            following = redirect_target(reply.url, reply.location, settings)
            hops += 1
            reply = await _fetch(client, following, settings)
    _check(reply, key_auth, first, hops)


def _client(settings: ValidationSettings) -> httpx.AsyncClient:
    # RFC 8555 §8.3 says only that the server SHOULD follow redirects, and is silent on the
    # certificate of an https target (drafts before the RFC said to ignore it, back when the
    # challenge itself could use HTTPS). The certificate is not verified: what proves control
    # is the key authorization in the body, bound to the account key (§10.2), and a gateway
    # that redirects to its own HTTPS port seldom has a certificate we could verify yet.
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    unverified.minimum_version = ssl.TLSVersion.TLSv1_2
    return httpx.AsyncClient(
        trust_env=False,  # no proxy or certificate settings from the environment
        verify=unverified, follow_redirects=False, timeout=httpx.Timeout(settings.timeout),
        # identity: the body is compared as sent, and no decompression can outgrow max_body.
        headers={"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"})


async def _fetch(client: httpx.AsyncClient, url: httpx.URL,
                 settings: ValidationSettings) -> _Reply:
    host = url.raw_host.decode("ascii")
    addresses = await resolve(host, settings)
    unreachable: list[str] = []
    for address in addresses:
        where = f"GET {url}" if address == host else f"GET {url} (at {address})"
        # Connect to the address chosen here, but name the host as the client did: the
        # Host header, and the SNI when a redirect leads to https.
        extensions = {"sni_hostname": host} if url.scheme == "https" and host != address else {}
        request = client.build_request("GET", url.copy_with(host=address),
                                       headers={"Host": url.netloc.decode("ascii")},
                                       extensions=extensions)
        try:
            response = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            unreachable.append(f"{bracketed(address)}: {_connect_failure(error, settings)}")
            continue
        except httpx.HTTPError as error:
            raise _exchange_failure(where, error, settings) from None
        try:
            body = await _read_body(response, where, settings)
        except httpx.HTTPError as error:
            raise _exchange_failure(where, error, settings) from None
        finally:
            await response.aclose()
        return _Reply(url, where, response.status_code, response.headers.get("location"), body)
    raise problem("connection", f"GET {url}: could not connect to {host} port "
                                f"{effective_port(url)} ({'; '.join(unreachable)})")


async def _read_body(response: httpx.Response, where: str, settings: ValidationSettings,
                     ) -> bytes:
    """At most `max_body` bytes: a key authorization is under 100 characters, and the
    validator must not be made to swallow whatever a host cares to send."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_body:
        raise _too_long(where, settings)
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > settings.max_body:
            raise _too_long(where, settings)
    return bytes(body)


def _too_long(where: str, settings: ValidationSettings) -> AcmeProblem:
    return problem("incorrectResponse", f"{where}: the response body is longer than "
                                        f"{settings.max_body} bytes; it should hold only the "
                                        "key authorization")


def _check(reply: _Reply, key_auth: str, first: httpx.URL, hops: int) -> None:
    via = "" if hops == 0 else f" (reached from {first} after {hops} redirect(s))"
    if reply.status != 200:
        # The body of an error page is not echoed (RFC 8555 §10.4).
        raise problem("incorrectResponse", f"{reply.where}{via} answered HTTP {reply.status}; "
                                           f"expected 200 with the key authorization "
                                           f"{key_auth!r}")
    # RFC 8555 §8.3 step 4: "The server SHOULD ignore whitespace characters at the end of
    # the body"; step 5: what remains must be the key authorization, exactly.
    found = reply.body.rstrip()
    if found != key_auth.encode("ascii"):
        raise problem("incorrectResponse", f"{reply.where}{via} answered 200 but the body is "
                                           f"not the key authorization: expected {key_auth!r}, "
                                           f"found {excerpt(found)}")


def _connect_failure(error: httpx.HTTPError, settings: ValidationSettings) -> str:
    if isinstance(error, httpx.ConnectTimeout):
        return f"no connection within {settings.timeout:g} s"
    return reason(error)


def _exchange_failure(where: str, error: httpx.HTTPError, settings: ValidationSettings,
                      ) -> AcmeProblem:
    if isinstance(error, httpx.TimeoutException):
        return problem("connection", f"{where}: connected, but no complete answer within "
                                     f"{settings.timeout:g} s")
    return problem("connection", f"{where}: {reason(error)}")
