"""Admin API tokens and the roles they carry.

A token reads `fpk_<id>_<secret>`: the id is public (it names the token in lists and audit
entries, and is the key it is looked up by), the secret is 256 bits from the CSPRNG and only
its SHA-256 is stored (the reasoning of ra/credentials.py: no slow hash is needed for a secret
nobody chose). The prefix lets secret scanners recognise a leaked token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re

TOKEN_PREFIX = "fpk_"
_TOKEN = re.compile(r"^fpk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class Role(enum.Enum):
    """What a caller of the admin API may do. Each role includes the ones below it."""

    auditor = "auditor"  # read everything, verify the audit log
    operator = "operator"  # and enroll, approve, revoke, manage bootstrap credentials
    admin = "admin"  # and everything else: API tokens, renewal advisories

    def includes(self, other: Role) -> bool:
        return _RANK[self] >= _RANK[other]


_RANK = {Role.auditor: 0, Role.operator: 1, Role.admin: 2}


@dataclasses.dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    name: str  # who or what holds it: "alice", "grafana"
    role: Role
    secret_hash: str
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime
    revoked_at: dt.datetime | None = None
    # "token", or "certificate" for an operator authenticated by its TLS client certificate
    # (then `id` is the start of the certificate's fingerprint).
    kind: str = "token"

    @property
    def actor(self) -> str:
        """How the audit log names the holder: the name for people, the id to tell two tokens
        of the same name apart."""
        return f"{self.kind}:{self.name}/{self.id}"

    def unusable_reason(self, now: dt.datetime) -> str | None:
        if self.revoked_at is not None:
            return f"API token {self.id} was revoked on {self.revoked_at:%Y-%m-%d %H:%M} UTC"
        if self.expires_at <= now:
            return f"API token {self.id} expired on {self.expires_at:%Y-%m-%d %H:%M} UTC"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorCertificate:
    """A TLS client certificate admitted to the admin API in a role, pinned by fingerprint."""

    fingerprint: str  # SHA-256 of the DER certificate, lower-case hex
    name: str
    role: Role
    subject: str
    not_after: dt.datetime
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None = None

    def as_principal(self) -> ApiToken:
        """The caller, in the shape the admin API checks roles and names actors with."""
        return ApiToken(id=self.fingerprint[:16], name=self.name, role=self.role,
                        secret_hash=self.fingerprint, created_at=self.created_at,
                        created_by=self.created_by, expires_at=self.not_after,
                        revoked_at=self.revoked_at, kind="certificate")


def split_token(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, None for anything else."""
    match = _TOKEN.match(text)
    return (match.group(1), match.group(2)) if match else None


def format_token(token_id: str, secret: str) -> str:
    return f"{TOKEN_PREFIX}{token_id}_{secret}"
