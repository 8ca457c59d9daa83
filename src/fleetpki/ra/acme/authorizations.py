"""ACME authorizations and their challenges, as the RA keeps them (RFC 8555 §7.5).

The front end proves control of a name (protocols/acme/challenges/) and reports the outcome
here. Who may ask for a validation, and whether one may start, is decided here: only the
account that owns the authorization, only while it is pending, one validation at a time.
"""

from __future__ import annotations

from typing import Protocol

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import (
    AcmeAccount,
    AcmeChallenge,
    AuthorizationStatus,
    AuthorizationView,
    ChallengeStatus,
)
from fleetpki.core.clock import Clock
from fleetpki.ra.acme.lifecycle import authorization_status
from fleetpki.store.api import AcmeOrders


class AuthorizationStore(AcmeOrders, Protocol):
    pass


class AuthorizationService:
    def __init__(self, store: AuthorizationStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def view(self, account: AcmeAccount, authorization_id: str) -> AuthorizationView:
        authorization = self._store.get_authorization(authorization_id)
        if authorization is None or authorization.account_id != account.id:
            raise AcmeProblem("malformed", f"no authorization {authorization_id[:40]} for this "
                              "account", status=404)
        return AuthorizationView(authorization,
                                 authorization_status(authorization, self._clock.now()))

    def challenge(self, account: AcmeAccount, challenge_id: str
                  ) -> tuple[AcmeChallenge, AuthorizationView]:
        challenge = self._store.get_acme_challenge(challenge_id)
        if challenge is None:
            raise AcmeProblem("malformed", f"no challenge {challenge_id[:40]}", status=404)
        return challenge, self.view(account, challenge.authorization_id)

    def begin_validation(self, account: AcmeAccount, challenge_id: str
                         ) -> tuple[AcmeChallenge, AuthorizationView, bool]:
        """The challenge, its authorization, and whether the caller must validate it now
        (True exactly once per challenge: pending -> processing). A challenge of an
        authorization that is no longer pending is answered as it stands (RFC 8555 §7.5.1:
        a client may repeat the request)."""
        challenge, authorization = self.challenge(account, challenge_id)
        if authorization.status is not AuthorizationStatus.pending:
            if authorization.status is AuthorizationStatus.valid:
                return challenge, authorization, False
            raise AcmeProblem("malformed", "the authorization of "
                              f"{authorization.authorization.identifier} is "
                              f"{authorization.status.value}: create a new order", status=403)
        if challenge.status is not ChallengeStatus.pending:
            return challenge, authorization, False
        started = self._store.start_challenge(challenge_id)
        current = self._store.get_acme_challenge(challenge_id) or challenge
        return current, authorization, started

    def record_validation(self, challenge_id: str, *, error: str | None) -> None:
        """The outcome of the validation begin_validation allowed: `error` is the problem
        document (JSON) of a failure, None for success."""
        self._store.settle_challenge(challenge_id, valid=error is None,
                                     at=self._clock.now().replace(microsecond=0), error=error)

    def deactivate(self, account: AcmeAccount, authorization_id: str) -> AuthorizationView:
        """RFC 8555 §7.5.2: the client gives up a pending or valid authorization."""
        view = self.view(account, authorization_id)
        if view.status not in (AuthorizationStatus.pending, AuthorizationStatus.valid) or \
                not self._store.set_authorization_status(
                    authorization_id, view.authorization.status,
                    AuthorizationStatus.deactivated):
            raise AcmeProblem("malformed", f"authorization {authorization_id} is "
                              f"{view.status.value}; only pending or valid authorizations can "
                              "be deactivated", status=403)
        return self.view(account, authorization_id)
