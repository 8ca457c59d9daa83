"""What a challenge validates, checked before anything touches the network.

An identifier's value ends up in a URL, a Host header, an SNI name and a DNS query; a value
that is not a plain host name or IP address could change where the request goes. So it is
parsed once here, and the validators only ever see a `Target`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from fleetpki.core.acme_records import Identifier
from fleetpki.protocols.acme.challenges.problems import problem

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 1123 §2.1 host name labels (letters, digits, hyphens; no leading or trailing hyphen),
# which covers the A-labels of RFC 5890 that ACME uses for internationalised names.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """`host`: the DNS name without its "*." label, or the IP address in canonical text form
    (RFC 8738 §3); `ip` is set for ip identifiers only."""

    identifier: Identifier
    host: str
    ip: IPAddress | None = None
    wildcard: bool = False


def ip_literal(text: str) -> IPAddress | None:
    """The address if `text` is an IP address (no zone index), else None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return address


def is_host_name(text: str) -> bool:
    """A lower-case DNS host name: at most 253 characters, labels of RFC 1123 syntax, and a
    last label that is not all digits (that would be an IPv4 address in disguise)."""
    labels = text.split(".")
    return (0 < len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit())


def parse_identifier(identifier: Identifier) -> Target:
    if identifier.type == "dns":
        value = identifier.value.lower()
        # RFC 8555 §7.1.3: a wildcard is "*." followed by a name; "*" stands for one label.
        wildcard = value.startswith("*.")
        name = value[2:] if wildcard else value
        if not is_host_name(name):
            raise problem("malformed", f"identifier {identifier} is not a DNS host name")
        return Target(identifier, name, None, wildcard)
    if identifier.type == "ip":
        address = ip_literal(identifier.value)
        if address is None:
            raise problem("malformed", f"identifier {identifier} is not an IP address")
        return Target(identifier, str(address), address)
    raise problem("unsupportedIdentifier",
                  f"identifier type {identifier.type!r} cannot be validated; this server "
                  "validates 'dns' and 'ip' identifiers")
