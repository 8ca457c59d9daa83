"""Profiles from TOML into frozen Profile objects, validated once, at start."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from pathlib import Path

from cryptography.x509 import ObjectIdentifier

from fleetpki.config_reader import Section
from fleetpki.core.errors import ConfigError
from fleetpki.core.keys import KeyKind, KeyPolicy, KeySpec
from fleetpki.core.names import (
    SUBJECT_ATTRIBUTES,
    AttributeRule,
    SanPolicy,
    SanRule,
    SanType,
    SubjectPolicy,
)
from fleetpki.core.profile import (
    EXTENDED_KEY_USAGES,
    KEY_USAGES,
    Enrollment,
    Profile,
    ProfileKind,
    Renewal,
    Urls,
    Validity,
)
from fleetpki.core.revocation_policy import (
    MAX_SHARDS,
    SHARD_PLACEHOLDER,
    CrlScope,
    RevocationPolicy,
    derived_crl_url,
)

_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_OID = re.compile(r"^[0-2](\.\d+)+$")
_CALLBACK_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s]*)?$")
_MAX_VALIDITY = dt.timedelta(days=30 * 366)


@dataclasses.dataclass(frozen=True, slots=True)
class Publication:
    """Where fleetpki publishes CRLs and answers OCSP, so that profiles without explicit URLs
    can point at it; and the bound below which a profile may be short-lived."""

    base_url: str | None = None  # e.g. "http://pki.fleet.example:8080"; None: no derived URLs
    short_lived_max: dt.timedelta = dt.timedelta(days=7)


def load_profiles(path: Path, *, known_issuers: set[str] | None = None,
                  root_cas: frozenset[str] = frozenset(),
                  publication: Publication = Publication()) -> dict[str, Profile]:
    """Parse and validate every profile; `known_issuers` (if given) must contain each issuer.
    Only a sub-CA profile may name one of `root_cas`: a root signs CAs only, so that it can
    stay offline, and a device certificate straight under it could be revoked only by the
    root's own CRL."""
    file = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError("profile file does not exist", file=file) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", file=file) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML: {exc}", file=file) from None
    root = Section(data, file=file, profile=None, path="")
    table = root.table("profiles")
    root.finish()
    if not table:
        raise ConfigError("defines no profiles (expected [profiles.NAME] tables)", file=file)
    profiles = {}
    for name, body in table.items():
        if not _PROFILE_NAME.fullmatch(name):
            raise ConfigError("profile names are lower-case letters, digits, '-' and '_'",
                              file=file, profile=name)
        if not isinstance(body, dict):
            raise ConfigError("must be a table", file=file, profile=name)
        profile = _profile(name, Section(body, file=file, profile=name, path=""), publication)
        if profile.issuer in root_cas and profile.kind is not ProfileKind.sub_ca:
            available = ", ".join(sorted((known_issuers or set()) - root_cas)) or \
                "none yet: `fleetpki ca create-issuing`"
            raise ConfigError(f"names the root CA '{profile.issuer}'; a root CA signs only "
                              f"CAs (kind = \"sub-ca\"): name an issuing CA (available: "
                              f"{available})",
                              file=file, profile=name, field="issuer")
        if known_issuers is not None and profile.issuer not in known_issuers:
            available = ", ".join(sorted(known_issuers - root_cas)) or \
                "none yet: run `fleetpki init`"
            raise ConfigError(f"names issuing CA '{profile.issuer}', which does not exist "
                              f"(available: {available})", file=file, profile=name,
                              field="issuer")
        profiles[name] = profile
    return profiles


def _profile(name: str, s: Section, publication: Publication) -> Profile:
    kind_text = s.string("kind", "end-entity")
    try:
        kind = ProfileKind(kind_text)
    except ValueError:
        raise s.error("kind", "must be \"end-entity\" or \"sub-ca\"") from None
    extensions = _extensions(s.section("extensions", required=True), kind)
    issuer = s.required_string("issuer")
    validity = _validity(s.section("validity", required=True))
    revocation = _revocation(s.section("revocation"), validity, publication)
    profile = Profile(
        name=name,
        description=s.string("description", ""),
        issuer=issuer,
        kind=kind,
        keys=_keys(s.section("keys", required=True)),
        validity=validity,
        subject=_subject(s.section("subject")),
        san=_san(s.section("san")),
        device_id_from=_device_id_from(s),
        urls=_urls(s.section("urls"), _PointerContext(name, issuer, revocation, publication)),
        revocation=revocation,
        renewal=_renewal(s.section("renewal")),
        enrollment=_enrollment(s.section("enrollment")),
        key_usage=extensions.key_usage,
        extended_key_usage=extensions.extended_key_usage,
        path_length=extensions.path_length,
    )
    s.finish()
    return profile


def _keys(s: Section) -> KeyPolicy:
    allowed = s.strings("allowed")
    if not allowed:
        raise s.error("allowed", "must list at least one key type")
    normalised = set()
    for item in allowed:
        if item == "rsa":
            normalised.add("rsa")
            continue
        try:
            spec = KeySpec.parse(item)
        except ValueError as exc:
            raise s.error("allowed", f"{exc} (or \"rsa\" with rsa_min_bits)") from None
        normalised.add("rsa" if spec.kind is KeyKind.rsa else str(spec))
    policy = KeyPolicy(allowed=frozenset(normalised),
                       rsa_min_bits=s.integer("rsa_min_bits", 2048, minimum=2048, maximum=16384))
    s.finish()
    return policy


def _validity(s: Section) -> Validity:
    default, maximum = s.duration("default"), s.duration("maximum")
    backdate = s.duration("backdate", "5m")
    if default <= dt.timedelta(0):
        raise s.error("default", "must be positive")
    if maximum < default:
        raise s.error("maximum", "must not be shorter than the default validity")
    if maximum > _MAX_VALIDITY:
        raise s.error("maximum", "must be at most 30 years")
    if backdate > dt.timedelta(days=1):
        raise s.error("backdate", "must be at most 1d")
    s.finish()
    return Validity(default=default, maximum=maximum, backdate=backdate)


def _subject(s: Section) -> SubjectPolicy:
    rules = []
    attributes = s.section("attributes")
    for attr in attributes.names():
        if attr not in SUBJECT_ATTRIBUTES:
            raise attributes.error(attr, f"unknown subject attribute; use one of "
                                         f"{', '.join(SUBJECT_ATTRIBUTES)}")
        rule = attributes.section(attr)
        rules.append((attr, AttributeRule(required=rule.boolean("required", False),
                                          pattern=rule.pattern("pattern"))))
        rule.finish()
    attributes.finish()
    fixed = []
    fixed_table = s.section("fixed")
    for attr in fixed_table.names():
        if attr not in SUBJECT_ATTRIBUTES:
            raise fixed_table.error(attr, "unknown subject attribute")
        fixed.append((attr, fixed_table.required_string(attr)))
    fixed_table.finish()
    overlap = {a for a, _ in rules} & {a for a, _ in fixed}
    if overlap:
        raise s.error("fixed", f"{sorted(overlap)[0]} is both fixed and requested")
    s.finish()
    return SubjectPolicy(rules=tuple(rules), fixed=tuple(fixed))


def _san(s: Section) -> SanPolicy:
    rules = []
    for rule in s.tables("rules"):
        try:
            san_type = SanType(rule.required_string("type"))
        except ValueError:
            raise rule.error("type", "must be one of dns, uri, ip, email") from None
        under = rule.string("under")
        if under is not None and san_type is not SanType.dns:
            raise rule.error("under", "applies only to dns rules")
        pattern = rule.pattern("pattern")
        if pattern is None and under is None:
            raise rule.error("pattern", "each SAN rule needs a pattern (or `under` for dns)")
        rules.append(SanRule(type=san_type, pattern=pattern, under_domain=under))
        rule.finish()
    policy = SanPolicy(rules=tuple(rules), required=s.boolean("required", False),
                       max_count=s.integer("max_count", 4, minimum=0, maximum=64))
    if policy.required and not rules:
        raise s.error("required", "a SAN is required but no SAN rule allows one")
    s.finish()
    return policy


def _device_id_from(s: Section) -> str:
    value: str = s.string("device_id_from", "CN")
    if value not in ("san", "san:uri") and value not in SUBJECT_ATTRIBUTES:
        raise s.error("device_id_from", "must be a subject attribute (CN, serialNumber, ...), "
                                        "\"san:uri\" or \"san\" (the first subjectAltName)")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class _Extensions:
    key_usage: frozenset[str]
    extended_key_usage: tuple[ObjectIdentifier, ...]
    path_length: int | None


def _extensions(s: Section, kind: ProfileKind) -> _Extensions:
    key_usage = s.strings("key_usage")
    for usage in key_usage:
        if usage not in KEY_USAGES:
            raise s.error("key_usage", f"unknown key usage {usage!r}; use {', '.join(KEY_USAGES)}")
    if not key_usage:
        raise s.error("key_usage", "must list at least one key usage")
    cert_sign = {"keyCertSign", "cRLSign"} & set(key_usage)
    if cert_sign and kind is not ProfileKind.sub_ca:
        raise s.error("key_usage", f"{sorted(cert_sign)[0]} is only for kind = \"sub-ca\"")
    if kind is ProfileKind.sub_ca and "keyCertSign" not in key_usage:
        raise s.error("key_usage", "a sub-ca profile needs keyCertSign")
    ekus = []
    for eku in s.strings("extended_key_usage"):
        if eku in EXTENDED_KEY_USAGES:
            ekus.append(EXTENDED_KEY_USAGES[eku])
        elif _OID.fullmatch(eku):
            ekus.append(ObjectIdentifier(eku))
        else:
            raise s.error("extended_key_usage", f"unknown extended key usage {eku!r}; use "
                          f"{', '.join(EXTENDED_KEY_USAGES)} or a dotted OID")
    path_length = None
    if s.has("path_length"):
        if kind is not ProfileKind.sub_ca:
            raise s.error("path_length", "applies only to kind = \"sub-ca\"")
        path_length = s.integer("path_length", 0, minimum=0, maximum=8)
    s.finish()
    return _Extensions(frozenset(key_usage), tuple(ekus), path_length)


def _revocation(s: Section, validity: Validity, publication: Publication) -> RevocationPolicy:
    policy = RevocationPolicy(
        crl_shards=s.integer("crl_shards", 1, minimum=1, maximum=MAX_SHARDS),
        delta_crl=s.boolean("delta_crl", False),
        publish_on_revoke=s.boolean("publish_on_revoke", False),
        keep_expired=s.boolean("keep_expired", False),
        short_lived=s.boolean("short_lived", False),
    )
    if policy.short_lived:
        if validity.maximum > publication.short_lived_max:
            raise s.error("short_lived", f"validity.maximum must be at most "
                          f"{publication.short_lived_max.days}d ([revocation] short_lived_max "
                          "in fleetpki.toml) for certificates without revocation pointers")
        for key in ("crl_shards", "delta_crl", "publish_on_revoke", "keep_expired"):
            if s.has(key):
                raise s.error(key, "has no effect with short_lived = true (no CRL lists "
                                   "short-lived certificates)")
    s.finish()
    return policy


@dataclasses.dataclass(frozen=True, slots=True)
class _PointerContext:
    profile: str
    issuer: str
    revocation: RevocationPolicy
    publication: Publication


def _urls(s: Section, context: _PointerContext) -> Urls:
    lists = {key: s.strings(key) for key in ("crl", "delta_crl", "ocsp", "ca_issuers")}
    for key, values in lists.items():
        for url in values:
            if not url.startswith(("http://", "https://", "ldap://")):
                raise s.error(key, f"{url!r} is not an http(s) or ldap URL")
    policy, base = context.revocation, context.publication.base_url
    if policy.short_lived:
        for key in ("crl", "delta_crl", "ocsp"):
            if lists[key]:
                raise s.error(key, "a short_lived profile carries no revocation pointers")
        s.finish()
        return Urls(ca_issuers=tuple(lists["ca_issuers"]))
    scope = CrlScope(context.issuer, context.profile if policy.sharded else None, None)
    for key, delta in (("crl", False), ("delta_crl", True)):
        if key == "delta_crl" and not policy.delta_crl:
            if lists[key]:
                raise s.error(key, "set revocation.delta_crl = true to publish delta CRLs")
            continue
        if not lists[key] and base is not None:
            lists[key] = [derived_crl_url(base, scope, delta=delta)]
        if policy.sharded and (len(lists[key]) != 1 or SHARD_PLACEHOLDER not in lists[key][0]):
            raise s.error(key, f"a profile with crl_shards > 1 needs exactly one URL holding "
                               f"{SHARD_PLACEHOLDER} (or none, to derive it from [revocation] "
                               "base_url)")
        if (policy.sharded or policy.delta_crl) and not lists[key]:
            raise s.error(key, "needs a URL, or [revocation] base_url in fleetpki.toml to "
                               "derive one")
    if not lists["ocsp"] and base is not None:
        lists["ocsp"] = [f"{base}/ocsp"]
    s.finish()
    return Urls(crl_distribution_points=tuple(lists["crl"]), ocsp=tuple(lists["ocsp"]),
                ca_issuers=tuple(lists["ca_issuers"]), freshest_crl=tuple(lists["delta_crl"]))


def _renewal(s: Section) -> Renewal:
    renewal = Renewal(
        window_fraction=s.number("window_fraction", 0.33, minimum=0.01, maximum=1.0),
        grace_after_expiry=s.duration("grace_after_expiry", "0s"),
        info_interval=s.duration("info_interval", "1d"),
    )
    if not dt.timedelta(minutes=1) <= renewal.info_interval <= dt.timedelta(days=90):
        raise s.error("info_interval", "must be between 1min and 90d")
    s.finish()
    return renewal


def _enrollment(s: Section) -> Enrollment:
    approval = s.string("approval", "automatic")
    if approval not in ("automatic", "manual"):
        raise s.error("approval", "must be \"automatic\" or \"manual\"")
    retry_after = s.duration("retry_after", "60s")
    if not dt.timedelta(seconds=1) <= retry_after <= dt.timedelta(days=1):
        raise s.error("retry_after", "must be between 1s and 1d")
    callback = s.string("challenge_callback", None)
    if callback is not None and not _CALLBACK_URL.match(callback):
        raise s.error("challenge_callback", "must be an http:// or https:// URL")
    enrollment = Enrollment(manual_approval=approval == "manual", retry_after=retry_after,
                            server_keygen=s.boolean("server_keygen", False),
                            scep=s.boolean("scep", False), challenge_callback=callback,
                            acme=s.boolean("acme", False))
    if callback is not None and not enrollment.scep:
        raise s.error("challenge_callback", "is used by SCEP only: set scep = true as well")
    if enrollment.acme and enrollment.manual_approval:
        raise s.error("acme", "ACME finalizes an order in one request and cannot wait for an "
                              "operator: set approval = \"automatic\" or acme = false")
    s.finish()
    return enrollment
