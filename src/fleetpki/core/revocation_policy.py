"""How a profile's certificates can be revoked: which CRL each one is listed on, and where.

A profile spreads its certificates over N CRL shards (partitions, RFC 5280 §5.2.5). The shard is
fixed when the certificate is signed, from its serial, and stored with it: a later change of N
moves no existing certificate to another CRL, so the distribution point it carries stays true.
"""

from __future__ import annotations

import dataclasses

SHARD_PLACEHOLDER = "{shard}"
MAX_SHARDS = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationPolicy:
    crl_shards: int = 1  # 1: the issuer's complete CRL lists this profile's certificates
    delta_crl: bool = False  # publish delta CRLs and point to them (freshestCRL)
    publish_on_revoke: bool = False  # re-sign the CRLs right after a revocation
    keep_expired: bool = False  # keep revoked entries after expiry (expiredCertsOnCRL)
    # No CRL or OCSP pointers: revocation is by non-renewal. Only for validities at or below
    # [revocation] short_lived_max, checked when profiles load.
    short_lived: bool = False

    @property
    def sharded(self) -> bool:
        return self.crl_shards > 1


def crl_shard(serial: int, shards: int) -> int | None:
    """The shard a serial falls into; None when the profile is not sharded. Serials are random
    (RFC 5280 §4.1.2.2 guidance, 159 bits here), so the remainder spreads them evenly."""
    return serial % shards if shards > 1 else None


def fill_shard(url: str, shard: int | None) -> str:
    return url if shard is None else url.replace(SHARD_PLACEHOLDER, str(shard))


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class CrlScope:
    """One CRL series of an issuer: the complete CRL (profile None) or one profile's shard.

    Each series has its own file pair (full and delta) under the publication directory; CRL
    numbers are shared by all series of an issuer, which keeps them monotonic per scope too."""

    issuer: str
    profile: str | None = None
    shard: int | None = None

    @property
    def key(self) -> str:
        """How the store names the series."""
        return "" if self.profile is None else f"{self.profile}/{self.shard}"

    def file_name(self, *, delta: bool = False) -> str:
        """Relative path of the published file, also its path under /crl/ over HTTP."""
        suffix = "-delta.crl" if delta else ".crl"
        if self.profile is None:
            return f"{self.issuer}{suffix}"
        # A profile's scope without a number stands for all its shards: the URL template.
        shard = SHARD_PLACEHOLDER if self.shard is None else str(self.shard)
        return f"{self.issuer}/{self.profile}-{shard}{suffix}"


def derived_crl_url(base_url: str, scope: CrlScope, *, delta: bool = False) -> str:
    """The URL fleetpki serves a scope's CRL at (under /crl/ of the publication base URL)."""
    return f"{base_url.rstrip('/')}/crl/{scope.file_name(delta=delta)}"
