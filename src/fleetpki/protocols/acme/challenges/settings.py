"""What the validators may reach and how long they may wait: one frozen object, checked once.

A fleet PKI validates gateways on private networks, often with names no public DNS knows; the
`hosts` override and the `resolver` address let an operator (and a test) say where a name is
without touching the machine's resolver. Bad settings raise ValueError at construction, so a
server refuses to start rather than failing every validation later.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True)
class ValidationSettings:
    """`hosts`: DNS name -> addresses tried instead of any DNS lookup (keys are matched
    case-insensitively, addresses are kept in the order given). `resolver`: (address, port) of
    the DNS server used for A/AAAA/TXT/CNAME lookups; None: the system's resolver.
    `timeout` bounds each network step (connect, TLS handshake, read, one DNS query);
    `total_timeout` bounds one whole validation, redirects and retries over addresses included.
    """

    hosts: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict, hash=False)
    http_port: int = 80  # RFC 8555 §8.3 says port 80; other values are for tests and labs
    tls_alpn_port: int = 443  # RFC 8737 §3 says port 443; likewise
    resolver: tuple[str, int] | None = None
    timeout: float = 10.0
    total_timeout: float = 30.0
    max_redirects: int = 10
    max_body: int = 8192

    def __post_init__(self) -> None:
        hosts: dict[str, tuple[str, ...]] = {}
        for name, addresses in self.hosts.items():
            key = name.strip().rstrip(".").lower()
            if not key:
                raise ValueError("hosts: an empty name")
            # A bare string would be read as a sequence of one-character "addresses".
            listed: object = addresses
            if not isinstance(listed, tuple | list) or not listed:
                raise ValueError(f"hosts[{name!r}]: give a non-empty tuple of addresses")
            hosts[key] = tuple(_canonical_address(str(a), f"hosts[{name!r}]") for a in listed)
        object.__setattr__(self, "hosts", types.MappingProxyType(hosts))
        for field in ("http_port", "tls_alpn_port"):
            _check_port(getattr(self, field), field)
        if self.resolver is not None:
            address, port = self.resolver
            object.__setattr__(self, "resolver",
                               (_canonical_address(address, "resolver"), port))
            _check_port(port, "resolver port")
        if not self.timeout > 0 or not self.total_timeout > 0:
            raise ValueError("timeout and total_timeout must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be 0 or more")
        if self.max_body < 1:
            raise ValueError("max_body must be at least 1 byte")


def _canonical_address(text: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an IP address") from None


def _check_port(port: int, where: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{where}: {port!r} is not a TCP/UDP port")
