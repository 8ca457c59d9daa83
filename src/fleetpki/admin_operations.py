"""The inventory's Operations (inventory/ports.py), carried out by the RA's desks.

Each call builds the desk for the caller's actor, so the audit log names the token holder
who acted through the API or dashboard, exactly as it names the operator at the CLI.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from fleetpki.cmp_identity import PROFILE_NAME as CMP_SERVER_PROFILE
from fleetpki.cmp_identity import cmp_profile
from fleetpki.core.api_tokens import ApiToken, Role
from fleetpki.core.enrollment_records import BootstrapCredential
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.inventory.summary import refresh_summary
from fleetpki.ocsp_identity import PROFILE_NAME as OCSP_PROFILE
from fleetpki.ocsp_identity import responder_profile
from fleetpki.ra.api import Authorization
from fleetpki.ra.api_tokens import CertificateAuthenticator, TokenAdmin, TokenAuthenticator
from fleetpki.scep_identity import PROFILE_NAME as SCEP_RA_PROFILE
from fleetpki.scep_identity import ra_profile
from fleetpki.server_identity import PROFILE_NAME as SERVER_PROFILE
from fleetpki.server_identity import server_profile
from fleetpki.summary_runtime import refresh_in_background

if TYPE_CHECKING:
    from fleetpki.wiring import Fleet


class FleetOperations:
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._tokens = TokenAuthenticator(fleet.store, fleet.clock)
        self._certificates = CertificateAuthenticator(fleet.store, fleet.clock)

    def authenticate(self, token: str) -> ApiToken:
        return self._tokens.authenticate(token)

    def authenticate_certificate(self, der: bytes) -> ApiToken:
        return self._certificates.authenticate(der)

    def revoke(self, actor: str, serial: int, reason: RevocationReason, *,
               issuer: str | None, invalidity_date: dt.datetime | None) -> IssuedCertificate:
        desk = self._fleet.revocations(Authorization(actor=actor))
        return desk.revoke(serial, reason, issuer=issuer, invalidity_date=invalidity_date)

    def revoke_device(self, actor: str, device_id: str, reason: RevocationReason
                      ) -> list[IssuedCertificate]:
        return self._fleet.revocations(Authorization(actor=actor)).revoke_device(device_id,
                                                                                 reason)

    def approve(self, actor: str, pending_id: str) -> IssuedCertificate:
        return self._fleet.approvals(Authorization(actor=actor)).approve(pending_id)

    def reject(self, actor: str, pending_id: str, reason: str) -> None:
        self._fleet.approvals(Authorization(actor=actor)).reject(pending_id, reason)

    def create_credential(self, actor: str, profile: str, *, lifetime: dt.timedelta,
                          max_uses: int, device_id: str | None, credential_id: str | None
                          ) -> tuple[BootstrapCredential, str]:
        made = self._fleet.credential_admin(Authorization(actor=actor)).create(
            profile, lifetime=lifetime, max_uses=max_uses, device_id=device_id,
            credential_id=credential_id)
        return made.credential, made.secret

    def disable_credential(self, actor: str, credential_id: str) -> None:
        self._fleet.credential_admin(Authorization(actor=actor)).disable(credential_id)

    def create_token(self, actor: str, name: str, role: Role, *, lifetime: dt.timedelta
                     ) -> tuple[ApiToken, str]:
        made = TokenAdmin(self._fleet.store, self._fleet.clock, actor).create(
            name, role, lifetime=lifetime)
        return made.token, made.text

    def revoke_token(self, actor: str, token_id: str) -> ApiToken:
        return TokenAdmin(self._fleet.store, self._fleet.clock, actor).revoke(token_id)

    def start_summary_refresh(self) -> bool:
        return refresh_in_background(self.refresh_summary, self._fleet.settings.home / "run")

    def refresh_summary(self) -> StoredSummary:
        fleet = self._fleet
        # fleetpki's own server, OCSP responder, SCEP RA and CMP server certificates are
        # judged by the profiles they are issued under, which profiles.toml does not list.
        issuer = fleet.profiles[fleet.default_profile].issuer
        profiles = {**fleet.profiles, SERVER_PROFILE: server_profile(issuer),
                    OCSP_PROFILE: responder_profile(issuer), SCEP_RA_PROFILE: ra_profile(issuer),
                    CMP_SERVER_PROFILE: cmp_profile(issuer)}
        return refresh_summary(fleet.store, profiles, fleet.store.list_advisories(),
                               fleet.clock.now())
