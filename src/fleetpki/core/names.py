"""Name policy: which subject attributes and subjectAltNames a profile accepts.

A request may only narrow its profile (DESIGN.md §2): every attribute and SAN it asks for must be
matched by a rule, or the request is refused. Patterns are full matches (re.fullmatch), so a
rule `^[0-9a-f]{12}$` cannot be satisfied by a longer string that contains a match.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from fleetpki.core.errors import PolicyViolation

SUBJECT_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
}
_DN_ORDER = ("C", "ST", "L", "O", "OU", "CN", "serialNumber")
_ATTRIBUTE_BY_OID = {oid: name for name, oid in SUBJECT_ATTRIBUTES.items()}
# RFC 5280 Appendix A upper bounds (ub-*), checked so that a certificate never fails to encode.
_UPPER_BOUNDS = {"CN": 64, "O": 64, "OU": 64, "C": 2, "ST": 128, "L": 128, "serialNumber": 64}


class SanType(enum.Enum):
    dns = "dns"
    uri = "uri"
    ip = "ip"
    email = "email"


@dataclasses.dataclass(frozen=True, slots=True)
class AttributeRule:
    required: bool = False
    pattern: re.Pattern[str] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SubjectPolicy:
    rules: tuple[tuple[str, AttributeRule], ...] = ()
    # Attributes the profile sets itself; a request may repeat the same value or omit it.
    fixed: tuple[tuple[str, str], ...] = ()

    def apply(self, requested: x509.Name) -> x509.Name:
        """The subject the certificate gets, or PolicyViolation naming the offending attribute."""
        values: dict[str, str] = {}
        for attribute in requested:
            name = _ATTRIBUTE_BY_OID.get(attribute.oid)
            if name is None:
                raise PolicyViolation(
                    f"subject attribute {attribute.oid.dotted_string} is not allowed",
                    field="subject")
            if name in values:
                raise PolicyViolation(f"subject attribute {name} appears twice", field="subject")
            if not isinstance(attribute.value, str):
                raise PolicyViolation(f"subject attribute {name} is not a string", field="subject")
            values[name] = attribute.value
        fixed = dict(self.fixed)
        rules = dict(self.rules)
        for name, value in values.items():
            if name in fixed:
                if value != fixed[name]:
                    raise PolicyViolation(
                        f"subject {name}={value!r} differs from the profile's {fixed[name]!r}",
                        field=f"subject.{name}")
                continue
            rule = rules.get(name)
            if rule is None:
                raise PolicyViolation(f"subject attribute {name} is not allowed by this profile",
                                      field=f"subject.{name}")
            if rule.pattern is not None and not rule.pattern.fullmatch(value):
                raise PolicyViolation(
                    f"subject {name}={value!r} does not match {rule.pattern.pattern!r}",
                    field=f"subject.{name}")
            if not value or len(value) > _UPPER_BOUNDS[name]:
                raise PolicyViolation(
                    f"subject {name} must be 1 to {_UPPER_BOUNDS[name]} characters",
                    field=f"subject.{name}")
        for name, rule in rules.items():
            if rule.required and name not in values:
                raise PolicyViolation(f"subject attribute {name} is required",
                                      field=f"subject.{name}")
        merged = {**values, **fixed}
        # The conventional X.500 order, most general first, whatever order the CSR used: equal
        # requests give equal certificates.
        order = [n for n in _DN_ORDER if n in merged]
        if not fixed and order == list(values):
            return requested  # already in order: keep the requester's encoding as it is
        return x509.Name([x509.NameAttribute(SUBJECT_ATTRIBUTES[n], merged[n]) for n in order])


@dataclasses.dataclass(frozen=True, slots=True)
class SanRule:
    type: SanType
    pattern: re.Pattern[str] | None = None
    under_domain: str | None = None  # DNS names must be this domain or below it

    def matches(self, value: str) -> bool:
        if self.under_domain is not None:
            domain = self.under_domain.lower().strip(".")
            lowered = value.lower()
            if not (lowered == domain or lowered.endswith("." + domain)):
                return False
        return self.pattern is None or bool(self.pattern.fullmatch(value))


@dataclasses.dataclass(frozen=True, slots=True)
class SanPolicy:
    rules: tuple[SanRule, ...] = ()
    required: bool = False
    max_count: int = 4

    def apply(self, requested: list[x509.GeneralName]) -> tuple[x509.GeneralName, ...]:
        if len(requested) > self.max_count:
            raise PolicyViolation(f"{len(requested)} subjectAltNames requested, at most "
                                  f"{self.max_count} allowed", field="san")
        if self.required and not requested:
            raise PolicyViolation("a subjectAltName is required by this profile", field="san")
        seen: set[tuple[SanType, str]] = set()
        for name in requested:
            san_type, value = san_text(name)
            if (san_type, value) in seen:
                raise PolicyViolation(f"subjectAltName {value!r} appears twice", field="san")
            seen.add((san_type, value))
            if not any(r.type is san_type and r.matches(value) for r in self.rules):
                raise PolicyViolation(
                    f"subjectAltName {san_type.value}:{value} is not allowed by this profile",
                    field="san")
        return tuple(requested)


def san_text(name: x509.GeneralName) -> tuple[SanType, str]:
    """Type and text of a SAN; other GeneralName kinds are refused outright."""
    if isinstance(name, x509.DNSName):
        return SanType.dns, name.value
    if isinstance(name, x509.UniformResourceIdentifier):
        return SanType.uri, name.value
    if isinstance(name, x509.IPAddress):
        value = name.value
        if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise PolicyViolation("IP address ranges are not allowed in subjectAltName",
                                  field="san")
        return SanType.ip, str(value)
    if isinstance(name, x509.RFC822Name):
        return SanType.email, name.value
    raise PolicyViolation(f"subjectAltName of type {type(name).__name__} is not allowed",
                          field="san")


def san_from_text(text: str) -> x509.GeneralName:
    """Operator form 'dns:host.example', 'uri:urn:dev:mac:...', 'ip:10.0.0.1', 'email:a@b'."""
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise ValueError(f"SAN {text!r} must look like dns:NAME, uri:URI, ip:ADDR or email:ADDR")
    try:
        san_type = SanType(kind.lower())
    except ValueError:
        raise ValueError(f"unknown SAN type {kind!r} in {text!r}") from None
    if san_type is SanType.dns:
        return x509.DNSName(value)
    if san_type is SanType.uri:
        return x509.UniformResourceIdentifier(value)
    if san_type is SanType.ip:
        return x509.IPAddress(ipaddress.ip_address(value))
    return x509.RFC822Name(value)
