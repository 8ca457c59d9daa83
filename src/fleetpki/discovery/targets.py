"""What to scan: endpoints from 'host:port', '[v6]:port', 'host' or a CIDR range.

Accepted forms (a missing port is `default_port`):
  host.example.com    host.example.com:8443    192.0.2.10    192.0.2.10:8443
  2001:db8::1         [2001:db8::1]:8443       192.0.2.0/28  192.0.2.0/28:8443
  2001:db8::/120      [2001:db8::/120]:8443
A range names its usable hosts (IPv4: not the network and broadcast addresses, except in a /31
or /32). A range larger than MAX_RANGE_ADDRESSES is refused: it is a typo more often than a
plan, and a scan of it would run for hours. Endpoints are deduplicated, first mention first.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Iterator

DEFAULT_PORT = 443
MAX_RANGE_ADDRESSES = 65_536  # an IPv4 /16
# A label of an RFC 1123 §2.1 host name; underscores too, since internal DNS zones use them.
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class TargetError(ValueError):
    """A target that cannot be scanned as written; the message quotes it and says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    host: str  # a lower-case host name, or an IP address in its canonical text form
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_targets(texts: Iterable[str], *, default_port: int = DEFAULT_PORT) -> list[Endpoint]:
    """Every endpoint the targets name, deduplicated; TargetError at the first bad one."""
    _check_port(default_port, "--port")
    seen: dict[Endpoint, None] = {}
    for text in texts:
        for endpoint in parse_target(text, default_port=default_port):
            seen.setdefault(endpoint, None)
    return list(seen)


def parse_target(text: str, *, default_port: int = DEFAULT_PORT) -> Iterator[Endpoint]:
    """The endpoints one target names (a range names many)."""
    spec = text.strip()
    if not spec:
        raise TargetError("empty target")
    host, port = _split_port(spec, default_port)
    if "/" in host:
        yield from _range(host, port, spec)
        return
    yield Endpoint(_host(host, spec), port)


def targets_from_lines(lines: Iterable[str], *, source: str) -> list[str]:
    """Targets in a file: one per line; blank lines and '#' comments are skipped. Errors name
    the file and line."""
    targets = []
    for number, line in enumerate(lines, start=1):
        spec = line.split("#", 1)[0].strip()
        if not spec:
            continue
        if any(c.isspace() for c in spec):
            raise TargetError(f"{source}, line {number}: one target per line, got {spec!r}")
        targets.append(spec)
    return targets


def _split_port(spec: str, default_port: int) -> tuple[str, int]:
    if spec.startswith("["):
        host, bracket, rest = spec[1:].partition("]")
        if not bracket or not host:
            raise TargetError(f"{spec!r}: a bracketed IPv6 address needs its closing ']'")
        if ":" not in host:
            raise TargetError(f"{spec!r}: brackets are for IPv6 addresses only")
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise TargetError(f"{spec!r}: expected ':PORT' after ']'")
        return host, _port(rest[1:], spec)
    if spec.count(":") > 1:
        # An IPv6 address (or range) without brackets cannot carry a port: '::1:443' is an
        # address. RFC 3986 §3.2.2 brackets it for that reason.
        return spec, default_port
    host, colon, port = spec.partition(":")
    if not colon:
        return host, default_port
    if not host:
        raise TargetError(f"{spec!r}: no host before ':'")
    return host, _port(port, spec)


def _port(text: str, spec: str) -> int:
    if not text.isdigit():
        raise TargetError(f"{spec!r}: the port must be a number from 1 to 65535")
    value = int(text)
    _check_port(value, repr(spec))
    return value


def _check_port(value: int, where: str) -> None:
    if not 1 <= value <= 65535:
        raise TargetError(f"{where}: the port must be a number from 1 to 65535, not {value}")


def _host(host: str, spec: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if ":" in host:
        raise TargetError(f"{spec!r} is not an IPv6 address; write [ADDRESS]:PORT for a port")
    if host.replace(".", "").isdigit():
        raise TargetError(f"{spec!r} is not an IPv4 address")
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise TargetError(f"{spec!r} is not a host name, an IP address or a CIDR range")
    return name.lower()


def _range(host: str, port: int, spec: str) -> Iterator[Endpoint]:
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise TargetError(f"{spec!r} is not a CIDR range (e.g. 192.0.2.0/24)") from None
    if network.num_addresses > MAX_RANGE_ADDRESSES:
        smallest = 16 if network.version == 4 else 112
        raise TargetError(
            f"{spec!r} has {network.num_addresses:,} addresses; a range may have at most "
            f"{MAX_RANGE_ADDRESSES:,} (a /{smallest}): split it into smaller ranges")
    for address in network.hosts():
        yield Endpoint(str(address), port)
