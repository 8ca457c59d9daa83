"""What the inventory needs from the rest of fleetpki, declared on its own side (DESIGN.md §1).

It reads through `FleetReader`, a read-only slice of the store, and acts through
`Operations`, which the composition root implements with the RA's desks: every change the
dashboard or the API makes is decided, applied and audited where the CLI's would be.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from fleetpki.core.api_tokens import ApiToken, Role
from fleetpki.core.discovery_records import DiscoveredCertificate
from fleetpki.core.enrollment_records import ApprovalState, BootstrapCredential, PendingEnrollment
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.renewal_window import RenewalAdvisory
from fleetpki.store.api import InventoryReader


class FleetReader(InventoryReader, Protocol):
    def list_credentials(self, *, profile: str | None = None, include_disabled: bool = False
                         ) -> list[BootstrapCredential]: ...

    def get_credential(self, credential_id: str) -> BootstrapCredential | None: ...

    def list_pending(self, state: ApprovalState | None = ApprovalState.pending
                     ) -> list[PendingEnrollment]: ...

    def get_pending(self, pending_id: str) -> PendingEnrollment | None: ...

    def list_tokens(self, *, include_revoked: bool = False) -> list[ApiToken]: ...

    def list_advisories(self, *, profile: str | None = None, include_withdrawn: bool = False
                        ) -> list[RenewalAdvisory]: ...

    def list_discovered(self, *, host: str | None = None,
                        expiring_before: dt.datetime | None = None, limit: int = 100,
                        offset: int = 0) -> list[DiscoveredCertificate]: ...


class Operations(Protocol):
    """Each call names the actor it acts for, as the audit log will."""

    def authenticate(self, token: str) -> ApiToken:
        """NotAuthenticated unless the token is known, unexpired and unrevoked."""
        ...

    def authenticate_certificate(self, der: bytes) -> ApiToken:
        """The registered operator presenting this TLS client certificate (the handshake
        proved the key); NotAuthenticated otherwise."""
        ...

    def revoke(self, actor: str, serial: int, reason: RevocationReason, *,
               issuer: str | None, invalidity_date: dt.datetime | None) -> IssuedCertificate: ...

    def revoke_device(self, actor: str, device_id: str, reason: RevocationReason
                      ) -> list[IssuedCertificate]: ...

    def approve(self, actor: str, pending_id: str) -> IssuedCertificate: ...

    def reject(self, actor: str, pending_id: str, reason: str) -> None: ...

    def create_credential(self, actor: str, profile: str, *, lifetime: dt.timedelta,
                          max_uses: int, device_id: str | None, credential_id: str | None
                          ) -> tuple[BootstrapCredential, str]:
        """The credential and its secret, which exists only in this answer."""
        ...

    def disable_credential(self, actor: str, credential_id: str) -> None: ...

    def create_token(self, actor: str, name: str, role: Role, *, lifetime: dt.timedelta
                     ) -> tuple[ApiToken, str]:
        """The token record and its text, which exists only in this answer."""
        ...

    def revoke_token(self, actor: str, token_id: str) -> ApiToken: ...

    def refresh_summary(self) -> StoredSummary: ...

    def start_summary_refresh(self) -> bool:
        """Start a pass in the background unless one is running; True if started."""
        ...
