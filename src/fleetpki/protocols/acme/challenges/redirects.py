"""Which redirects http-01 follows (RFC 8555 §8.3: the server SHOULD follow redirects).

Following a redirect lets the account holder point the validator at a URL of its choosing:
RFC 8555 §10.4 (server-side request forgery). A fleet PKI validates hosts on private networks,
so the §10.4 advice to reach only the public Internet cannot apply; instead the targets are
narrowed: http or https only, the standard ports (80, 443) or the configured ones, a plain
host name or IP literal, no credentials, and at most `max_redirects` hops. A refused redirect
is a "connection" problem: the validator could not reach a resource it may fetch.
"""

from __future__ import annotations

import httpx

from fleetpki.protocols.acme.challenges.problems import excerpt, problem
from fleetpki.protocols.acme.challenges.settings import ValidationSettings
from fleetpki.protocols.acme.challenges.target import ip_literal, is_host_name

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


def allowed_ports(scheme: str, settings: ValidationSettings) -> frozenset[int]:
    """http: 80 or the configured http-01 port; https: 443 or the configured tls-alpn-01
    port (the port where the gateway is known to speak TLS)."""
    if scheme == "http":
        return frozenset({80, settings.http_port})
    return frozenset({443, settings.tls_alpn_port})


def effective_port(url: httpx.URL) -> int:
    return url.port if url.port is not None else DEFAULT_PORTS[url.scheme]


def redirect_target(current: httpx.URL, location: str | None,
                    settings: ValidationSettings) -> httpx.URL:
    """The URL to fetch next, or the "connection" problem saying why it is not followed."""
    if not location:
        raise problem("connection", f"{current} answered a redirect without a Location header")
    try:
        target = current.join(location)
    except (httpx.InvalidURL, ValueError):
        raise problem("connection", f"{current} redirected to {excerpt(location)}, which is "
                                    "not a valid URL") from None
    if target.scheme not in DEFAULT_PORTS:
        raise problem("connection", f"{current} redirected to {excerpt(str(target))}: only "
                                    "http and https URLs are followed")
    if target.userinfo:
        raise problem("connection", f"{current} redirected to a URL with credentials, which "
                                    "is not followed")
    host = target.raw_host.decode("ascii", "replace")
    if ip_literal(host) is None and not is_host_name(host):
        raise problem("connection", f"{current} redirected to {excerpt(str(target))}, whose "
                                    "host is neither a DNS host name nor an IP address")
    port = effective_port(target)
    allowed = allowed_ports(target.scheme, settings)
    if port not in allowed:
        ports = ", ".join(str(p) for p in sorted(allowed))
        raise problem("connection", f"{current} redirected to {target}: port {port} is not "
                                    f"followed for {target.scheme} (allowed: {ports})")
    return target
