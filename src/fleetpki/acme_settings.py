"""Settings of the ACME server: the `[acme]` table of fleetpki.toml (docs/protocols.md).

    [acme]
    external_account_binding = "required"   # or "optional"
    default_profile = "edge"                # /acme/directory; others at /acme/p/<profile>/
    order_lifetime = "1d"
    authorization_lifetime = "30d"          # how long a validated name may be reused
    [acme.rate_limits]
    per_account = "300/min"
    orders_per_identifier = "100/hour"
    [acme.validation]
    hosts = { "gw1.edge.fleet.internal" = "127.0.0.1" }   # resolved so, never through DNS
    http_port = 80
    tls_alpn_port = 443
    resolver = "10.0.0.53:53"               # for dns-01 and A/AAAA; default: the system's
    timeout = "10s"
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Mapping

from fleetpki.config_reader import Section
from fleetpki.core.errors import ConfigError
from fleetpki.core.profile import Profile
from fleetpki.ra.rate_limits import RateLimit
from fleetpki.server_settings import Address, read_rate_limit


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeValidationSettings:
    hosts: tuple[tuple[str, tuple[str, ...]], ...]  # lower-case name -> addresses
    http_port: int
    tls_alpn_port: int
    resolver: Address | None
    timeout: dt.timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeSettings:
    eab_required: bool
    default_profile: str | None  # None: the first profile with enrollment.acme = true
    order_lifetime: dt.timedelta
    authorization_lifetime: dt.timedelta
    nonce_lifetime: dt.timedelta
    per_account: RateLimit | None
    orders_per_identifier: RateLimit | None
    validation: AcmeValidationSettings


def read_acme_settings(acme: Section) -> AcmeSettings:
    binding = acme.string("external_account_binding", "required")
    if binding not in ("required", "optional"):
        raise acme.error("external_account_binding", "must be \"required\" or \"optional\"")
    limits = acme.section("rate_limits")
    settings = AcmeSettings(
        eab_required=binding == "required",
        default_profile=acme.string("default_profile", None),
        order_lifetime=_bounded(acme, "order_lifetime", "1d", dt.timedelta(minutes=5),
                                dt.timedelta(days=30)),
        authorization_lifetime=_bounded(acme, "authorization_lifetime", "30d",
                                        dt.timedelta(minutes=5), dt.timedelta(days=90)),
        nonce_lifetime=_bounded(acme, "nonce_lifetime", "1h", dt.timedelta(seconds=30),
                                dt.timedelta(days=1)),
        per_account=read_rate_limit(limits, "per_account", "300/min"),
        orders_per_identifier=read_rate_limit(limits, "orders_per_identifier", "100/hour"),
        validation=_validation(acme.section("validation")),
    )
    limits.finish()
    acme.finish()
    return settings


def _validation(section: Section) -> AcmeValidationSettings:
    hosts = []
    for name, value in sorted(section.table("hosts").items()):
        addresses = [value] if isinstance(value, str) else value
        if not isinstance(addresses, list) or not addresses \
                or not all(isinstance(a, str) for a in addresses):
            raise section.error("hosts", f"{name!r} must map to an address or a list of them")
        for address in addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise section.error("hosts", f"{address!r} (for {name!r}) is not an IP "
                                             "address") from None
        hosts.append((name.lower().rstrip("."), tuple(addresses)))
    resolver = section.string("resolver", "")
    try:
        resolver_address = Address.parse(resolver) if resolver else None
    except ValueError as exc:
        raise section.error("resolver", str(exc)) from None
    validation = AcmeValidationSettings(
        hosts=tuple(hosts),
        http_port=section.integer("http_port", 80, minimum=1, maximum=65535),
        tls_alpn_port=section.integer("tls_alpn_port", 443, minimum=1, maximum=65535),
        resolver=resolver_address,
        timeout=_bounded(section, "timeout", "10s", dt.timedelta(seconds=1),
                         dt.timedelta(seconds=60)),
    )
    section.finish()
    return validation


def _bounded(section: Section, key: str, default: str, least: dt.timedelta,
             most: dt.timedelta) -> dt.timedelta:
    value = section.duration(key, default)
    if not least <= value <= most:
        raise section.error(key, f"must be between {least} and {most}")
    return value


def acme_profiles(profiles: Mapping[str, Profile]) -> tuple[str, ...]:
    return tuple(p.name for p in profiles.values() if p.enrollment.acme)


def default_acme_profile(profiles: Mapping[str, Profile], settings: AcmeSettings,
                         settings_file: str) -> str | None:
    """Configured (it must allow ACME), or the first profile with enrollment.acme = true."""
    names = acme_profiles(profiles)
    if settings.default_profile is not None:
        if settings.default_profile not in names:
            raise ConfigError(f"names profile '{settings.default_profile}', which does not "
                              "exist or does not set enrollment.acme = true",
                              file=settings_file, field="acme.default_profile")
        return settings.default_profile
    return names[0] if names else None
