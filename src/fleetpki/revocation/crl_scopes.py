"""Which CRL series an issuing CA publishes, and what each one says about itself.

Every issuing CA publishes its complete CRL: every revoked certificate it signed, with no
issuingDistributionPoint, so a relying party that fetches CRLs by issuer (a broker's crlfile)
needs nothing else. A profile with N shards adds N partitions: each lists only the profile's
certificates of that shard and names its own URL in its issuingDistributionPoint, which is the
URL the certificates carry; openssl and other verifiers check that the two agree, so a shard
cannot stand in for another (RFC 5280 §5.2.5, §6.3.3 (b)).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from fleetpki.core.profile import Profile, ProfileKind
from fleetpki.core.revocation_policy import CrlScope, fill_shard


@dataclasses.dataclass(frozen=True, slots=True)
class ScopePolicy:
    scope: CrlScope
    distribution_point: str | None  # the IDP URL; None for the complete CRL
    only_user_certs: bool
    delta_url: str | None  # where the series' delta CRL is fetched; None: no deltas
    keep_expired: frozenset[str]  # profiles whose expired entries stay listed
    # expiredCertsOnCRL only when every profile in the series keeps expired entries; a CRL
    # must not claim it for entries it drops.
    expired_certs_on_crl: bool
    publish_on_revoke: bool


def scope_policies(issuer: str, profiles: Iterable[Profile]) -> list[ScopePolicy]:
    """The complete CRL of `issuer` first, then the shards of its sharded profiles."""
    own = [p for p in profiles if p.issuer == issuer and not p.revocation.short_lived]
    unsharded = [p for p in own if not p.revocation.sharded]
    keep = frozenset(p.name for p in own if p.revocation.keep_expired)
    delta = next((p.urls.freshest_crl[0] for p in unsharded if p.urls.freshest_crl), None)
    policies = [ScopePolicy(
        scope=CrlScope(issuer), distribution_point=None, only_user_certs=False, delta_url=delta,
        keep_expired=keep, expired_certs_on_crl=bool(own) and keep == {p.name for p in own},
        publish_on_revoke=any(p.revocation.publish_on_revoke for p in own))]
    for profile in own:
        if not profile.revocation.sharded:
            continue
        for shard in range(profile.revocation.crl_shards):
            freshest = profile.urls.freshest_crl
            policies.append(ScopePolicy(
                scope=CrlScope(issuer, profile.name, shard),
                distribution_point=fill_shard(profile.urls.crl_distribution_points[0], shard),
                only_user_certs=profile.kind is ProfileKind.end_entity,
                delta_url=fill_shard(freshest[0], shard) if freshest else None,
                keep_expired=(frozenset({profile.name}) if profile.revocation.keep_expired
                              else frozenset()),
                expired_certs_on_crl=profile.revocation.keep_expired,
                publish_on_revoke=profile.revocation.publish_on_revoke))
    return policies


def half_life_passed(this_update: dt.datetime, next_update: dt.datetime,
                     now: dt.datetime) -> bool:
    """Re-sign once half the validity is gone: relying parties that fetch at nextUpdate always
    find a newer CRL waiting, with half a validity period of slack for an outage."""
    return now >= this_update + (next_update - this_update) / 2
