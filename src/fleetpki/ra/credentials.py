"""Bootstrap credentials: made here, shown once, stored only as a hash.

Why SHA-256 and not a slow password hash: fleetpki generates every secret itself, 192 bits from
the CSPRNG, and operators cannot choose one. Guessing such a secret from its hash is out of
reach whatever the hash costs, while a deliberately slow hash would cost every enrollment of a
manufacturing run tens of milliseconds of CPU. (A human-chosen password would need scrypt; the
admin API's tokens follow the same reasoning as these secrets.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping, Sequence

from fleetpki.core.clock import Clock
from fleetpki.core.enrollment_records import CREDENTIAL_ID, BootstrapCredential
from fleetpki.core.errors import BadInput, NotFound
from fleetpki.core.profile import Profile
from fleetpki.store.api import AuditEvent, BootstrapCredentials

MAX_LIFETIME = dt.timedelta(days=3 * 366)
# One transaction holds them all; about 3 KB of memory each while it is prepared.
MAX_DEVICES_PER_CALL = 100_000
# A device id as the store holds it (256 characters), printable: it is compared with the id
# the device's CSR names, and shown in listings and the audit log.
_DEVICE_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")


def _random_id() -> str:
    return f"bt-{secrets.token_hex(8)}"  # 64 bits: no collisions in a batch


def _check_device_id(device_id: str) -> None:
    if not _DEVICE_ID.match(device_id) or device_id != device_id.strip():
        raise BadInput(f"device id {device_id!r} must be 1-256 printable characters, without "
                       "leading or trailing spaces")


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)


@dataclasses.dataclass(frozen=True, slots=True)
class NewCredential:
    credential: BootstrapCredential
    secret: str = dataclasses.field(repr=False)  # shown to the operator once, never stored


@dataclasses.dataclass(frozen=True, slots=True)
class CredentialBatch:
    credentials: tuple[NewCredential, ...]
    events: tuple[AuditEvent, ...]
    created_at: dt.datetime


class CredentialAdmin:
    def __init__(self, store: BootstrapCredentials, profiles: Mapping[str, Profile], clock: Clock,
                 actor: str, *,
                 derive: Callable[[str, dt.datetime], str] | None = None) -> None:
        """`derive(id, created_at)`: make secrets the RA can compute again
        (shared_secrets.py), so that they can key a MAC (CMP); else random ones."""
        self._store = store
        self._profiles = profiles
        self._clock = clock
        self._actor = actor
        self._derive = derive

    def create(self, profile: str, *, lifetime: dt.timedelta, max_uses: int,
               device_id: str | None = None, credential_id: str | None = None) -> NewCredential:
        self._check(profile, lifetime, max_uses)
        if device_id is not None and max_uses != 1:
            raise BadInput("a per-device credential (--device) enrolls that one device: "
                           "leave --uses at 1")
        if device_id is not None:
            _check_device_id(device_id)
        name = credential_id or _random_id()
        if not CREDENTIAL_ID.match(name):
            raise BadInput(f"credential id '{name}' must be 1-128 letters, digits or ._@- "
                           "(it is the HTTP Basic user name; ':' is not allowed)")
        now = self._clock.now()
        made, event = self._new(name, profile, device_id, max_uses, now + lifetime, now)
        self._store.add_credentials([made.credential], [event], at=now)
        return made

    def prepare_for_devices(self, profile: str, device_ids: Sequence[str], *,
                            lifetime: dt.timedelta) -> CredentialBatch:
        """One single-use credential per device, for a factory that flashes each device with
        its own secret. Nothing is stored yet: the caller first puts the secrets somewhere
        durable, then calls `add`, so that no stored credential's secret is ever lost."""
        self._check(profile, lifetime, 1)
        if not 1 <= len(device_ids) <= MAX_DEVICES_PER_CALL:
            raise BadInput(f"{len(device_ids):,} device ids: give between 1 and "
                           f"{MAX_DEVICES_PER_CALL:,} per call (split the list)")
        seen: set[str] = set()
        for device_id in device_ids:
            _check_device_id(device_id)
            if device_id in seen:
                raise BadInput(f"device id '{device_id}' is listed twice")
            seen.add(device_id)
        now = self._clock.now()
        made = [self._new(_random_id(), profile, device_id, 1, now + lifetime, now)
                for device_id in device_ids]
        return CredentialBatch(tuple(m for m, _ in made), tuple(e for _, e in made), now)

    def add(self, batch: CredentialBatch) -> None:
        """Store a prepared batch: all of it, in one transaction, or none."""
        self._store.add_credentials([m.credential for m in batch.credentials], batch.events,
                                    at=batch.created_at)

    def _check(self, profile: str, lifetime: dt.timedelta, max_uses: int) -> None:
        if profile not in self._profiles:
            raise NotFound(f"no profile named '{profile}' (profiles: "
                           f"{', '.join(sorted(self._profiles))})")
        if not dt.timedelta(minutes=1) <= lifetime <= MAX_LIFETIME:
            raise BadInput("a bootstrap credential must live between 1 minute and 3 years")
        if not 1 <= max_uses <= 10_000_000:
            raise BadInput("--uses must be between 1 and 10,000,000")

    def _new(self, name: str, profile: str, device_id: str | None, max_uses: int,
             expires_at: dt.datetime, now: dt.datetime) -> tuple[NewCredential, AuditEvent]:
        secret = new_secret() if self._derive is None else self._derive(name, now)
        credential = BootstrapCredential(
            id=name, secret_hash=hash_secret(secret), profile=profile, device_id=device_id,
            max_uses=max_uses, uses=0, expires_at=expires_at, created_at=now,
            created_by=self._actor)
        event = AuditEvent(actor=self._actor, action="bootstrap.created", subject=name,
                           details={"profile": profile, "device_id": device_id or "",
                                    "max_uses": str(max_uses),
                                    "expires_at": expires_at.isoformat()})
        return NewCredential(credential, secret), event

    def disable(self, credential_id: str) -> None:
        now = self._clock.now()
        self._store.disable_credential(
            credential_id, AuditEvent(actor=self._actor, action="bootstrap.disabled",
                                      subject=credential_id), at=now)
