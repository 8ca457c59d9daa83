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
from collections.abc import Callable, Mapping

from fleetpki.core.clock import Clock
from fleetpki.core.enrollment_records import BootstrapCredential
from fleetpki.core.errors import BadInput, NotFound
from fleetpki.core.profile import Profile
from fleetpki.store.api import AuditEvent, BootstrapCredentials

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
MAX_LIFETIME = dt.timedelta(days=3 * 366)


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
        if profile not in self._profiles:
            raise NotFound(f"no profile named '{profile}' (profiles: "
                           f"{', '.join(sorted(self._profiles))})")
        if not dt.timedelta(minutes=1) <= lifetime <= MAX_LIFETIME:
            raise BadInput("a bootstrap credential must live between 1 minute and 3 years")
        if not 1 <= max_uses <= 10_000_000:
            raise BadInput("--uses must be between 1 and 10,000,000")
        if device_id is not None and max_uses != 1:
            raise BadInput("a per-device credential (--device) enrolls that one device: "
                           "leave --uses at 1")
        name = credential_id or f"bt-{secrets.token_hex(6)}"
        if not _ID.match(name):
            raise BadInput(f"credential id '{name}' must be 1-128 letters, digits or ._@- "
                           "(it is the HTTP Basic user name; ':' is not allowed)")
        now = self._clock.now()
        secret = new_secret() if self._derive is None else self._derive(name, now)
        credential = BootstrapCredential(
            id=name, secret_hash=hash_secret(secret), profile=profile, device_id=device_id,
            max_uses=max_uses, uses=0, expires_at=now + lifetime, created_at=now,
            created_by=self._actor)
        event = AuditEvent(actor=self._actor, action="bootstrap.created", subject=name,
                           details={"profile": profile, "device_id": device_id or "",
                                    "max_uses": str(max_uses),
                                    "expires_at": credential.expires_at.isoformat()})
        self._store.add_credential(credential, event, at=now)
        return NewCredential(credential, secret)

    def disable(self, credential_id: str) -> None:
        now = self._clock.now()
        self._store.disable_credential(
            credential_id, AuditEvent(actor=self._actor, action="bootstrap.disabled",
                                      subject=credential_id), at=now)
