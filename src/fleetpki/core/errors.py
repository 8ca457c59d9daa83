"""Domain errors. Each carries a message a person can act on; front ends render them.

Internal errors become protocol errors only at the edge (see docs/issuance-cycle.md): code in
core, ca, store and ra raises these types and never formats HTTP statuses or exit codes.
"""

from __future__ import annotations


class FleetPKIError(Exception):
    """Base of every error fleetpki raises on purpose."""

    exit_code = 1


class BadInput(FleetPKIError):
    """The caller handed us something we cannot parse (garbage, wrong encoding, truncated)."""

    exit_code = 2


class PolicyViolation(FleetPKIError):
    """A request asks for more than its profile allows. Nothing is stored, no serial consumed."""

    exit_code = 3

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class NotAuthorized(FleetPKIError):
    """The requester is not entitled to what it asked for."""

    exit_code = 4


class NotAuthenticated(NotAuthorized):
    """No credential, or one that does not check out: the requester should authenticate
    (HTTP 401 with a challenge), unlike NotAuthorized, where we know who asks and refuse."""


class Unsupported(FleetPKIError):
    """The request asks for something this server does not do (HTTP 501): not a mistake
    of the requester's, and not something policy could allow."""

    exit_code = 2


class RateLimited(FleetPKIError):
    """Too many requests from one credential or address; try again after `retry_after` s."""

    exit_code = 4

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(FleetPKIError):
    """A named thing (profile, CA, certificate, device) does not exist."""

    exit_code = 5


class Conflict(FleetPKIError):
    """The request collides with existing state (already revoked, CA exists, ...)."""

    exit_code = 6


class ConfigError(FleetPKIError):
    """Settings or profiles are invalid; the process refuses to start.

    The message names the file, the profile (if any) and the field so that the operator can
    go straight to the line to fix.
    """

    exit_code = 7

    def __init__(
        self, message: str, *, file: str | None = None, profile: str | None = None,
        field: str | None = None,
    ) -> None:
        where = [p for p in (
            file,
            f"profile '{profile}'" if profile else None,
            f"field '{field}'" if field else None,
        ) if p]
        super().__init__(f"{': '.join(where)}: {message}" if where else message)
        self.file = file
        self.profile = profile
        self.field = field


class KeyAccessError(FleetPKIError):
    """A CA key cannot be used: wrong passphrase, missing file, key kept offline."""

    exit_code = 8


class StoreError(FleetPKIError):
    """The store cannot do what was asked (read-only, disk full, unreachable). Nothing changed."""

    exit_code = 9


class AuditChainBroken(FleetPKIError):
    """The audit log's hash chain does not verify: an entry was modified, removed or moved."""

    exit_code = 10
