"""Settings of `fleetpki serve`: the `[server]`, `[est]`, `[scep]` and `[cmp]` tables of
fleetpki.toml.

Kept apart from config.py (store, keys, logging) so that the CLI commands that never serve do
not read or validate them twice; both use the same strict reader.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from ipaddress import IPv4Network, IPv6Network

from fleetpki.config_reader import Section
from fleetpki.ra.rate_limits import RateLimit

DEFAULT_LISTEN = "127.0.0.1:8443"


@dataclasses.dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """HOST:PORT, with [brackets] around an IPv6 host; ValueError otherwise."""
        host, colon, port = text.rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT, e.g. \"{DEFAULT_LISTEN}\" (got {text!r})")
        return cls(host, int(port))


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    listen: Address
    workers: int
    # Names the server's own TLS certificate carries (DNS names and IP addresses).
    hostnames: tuple[str, ...]
    # A plain-HTTP listener for a TLS-terminating reverse proxy, and who may act as one.
    proxy_listen: Address | None
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class EstSettings:
    default_profile: str | None  # None: the first profile in profiles.toml
    per_credential: RateLimit | None
    per_address: RateLimit | None


@dataclasses.dataclass(frozen=True, slots=True)
class ScepServerSettings:
    default_profile: str | None  # None: the first profile with enrollment.scep = true
    max_clock_skew: dt.timedelta | None  # None: signingTime is not checked
    accept_single_des: bool
    callback_timeout: dt.timedelta  # how long a challenge callback may take to answer


def read_scep_settings(scep: Section) -> ScepServerSettings:
    skew = scep.string("max_clock_skew", "1d")
    settings = ScepServerSettings(
        default_profile=scep.string("default_profile", None),
        max_clock_skew=None if skew == "off" else scep.duration("max_clock_skew", "1d"),
        accept_single_des=scep.boolean("accept_single_des", False),
        callback_timeout=scep.duration("callback_timeout", "5s"),
    )
    if not dt.timedelta(seconds=1) <= settings.callback_timeout <= dt.timedelta(seconds=60):
        raise scep.error("callback_timeout", "must be between 1s and 60s")
    scep.finish()
    return settings


@dataclasses.dataclass(frozen=True, slots=True)
class CmpServerSettings:
    max_clock_skew: dt.timedelta | None  # None: messageTime is not checked
    # MAC iteration counts accepted (RFC 9810 §5.1.3.1 asks for a limit): OpenSSL 3.0 uses 500.
    mac_min_iterations: int
    mac_max_iterations: int


def read_cmp_settings(cmp: Section) -> CmpServerSettings:
    skew = cmp.string("max_clock_skew", "1d")
    settings = CmpServerSettings(
        max_clock_skew=None if skew == "off" else cmp.duration("max_clock_skew", "1d"),
        mac_min_iterations=cmp.integer("mac_min_iterations", 500, minimum=100,
                                       maximum=1_000_000),
        mac_max_iterations=cmp.integer("mac_max_iterations", 100_000, minimum=100,
                                       maximum=10_000_000),
    )
    if settings.mac_min_iterations > settings.mac_max_iterations:
        raise cmp.error("mac_min_iterations", "must not exceed mac_max_iterations")
    cmp.finish()
    return settings


def read_server_settings(server: Section) -> ServerSettings:
    proxy = server.section("proxy")
    settings = ServerSettings(
        listen=_address(server, "listen", DEFAULT_LISTEN),
        workers=server.integer("workers", 2, minimum=1, maximum=64),
        hostnames=tuple(server.strings("hostnames", ["localhost", "127.0.0.1"])),
        proxy_listen=(_address(proxy, "listen", "") if proxy.has("listen") else None),
        trusted_proxies=tuple(_network(proxy, text) for text in proxy.strings("trusted", [])),
    )
    if settings.proxy_listen is not None and not settings.trusted_proxies:
        raise proxy.error("trusted", "must list the proxy's addresses when proxy.listen is set "
                                     "(e.g. [\"127.0.0.1\"])")
    if not settings.hostnames:
        raise server.error("hostnames", "must name at least one DNS name or IP address")
    proxy.finish()
    server.finish()
    return settings


def read_est_settings(est: Section) -> EstSettings:
    limits = est.section("rate_limits")
    settings = EstSettings(
        default_profile=est.string("default_profile", None),
        per_credential=read_rate_limit(limits, "per_credential", "600/min"),
        per_address=read_rate_limit(limits, "per_address", "1200/min"),
    )
    limits.finish()
    est.finish()
    return settings


def _address(section: Section, key: str, default: str) -> Address:
    try:
        return Address.parse(section.string(key, default))
    except ValueError as exc:
        raise section.error(key, str(exc)) from None


def _network(section: Section, text: str) -> IPv4Network | IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise section.error("trusted", f"{text!r} is not an IP address or network") from None


def read_rate_limit(section: Section, key: str, default: str) -> RateLimit | None:
    """A rate limit setting: \"600/min\"-like text, or \"off\"."""
    text: str = section.string(key, default)
    if text in ("", "off", "none"):
        return None
    try:
        return RateLimit.parse(text)
    except ValueError as exc:
        raise section.error(key, str(exc)) from None
