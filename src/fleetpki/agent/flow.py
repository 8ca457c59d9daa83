"""One session of a device with its enrollment server, written sans-I/O.

`session()` is a generator: it yields commands (messages.py) and receives their results, and
returns a `SessionResult` with the new state. It never touches a socket, a file or the clock,
so the HTTPS driver on a device (driver.py) and the fleet simulator run the same decisions.

What a session does, in order:

    1. confirm a candidate     a certificate issued last time but not yet used: its first
                               successful use (renewalinfo over TLS with it; a 404 from a
                               server without renewalinfo counts) promotes it
    2. ask for advice          renewalinfo when due: the server's window, its Retry-After,
                               and whether the certificate was revoked
    3. decide                  nothing to do / renew / enroll again
    4. renew                   EST simplereenroll with the current certificate, even expired
                               while the policy allows grace (RFC 7030 §4.2.2)
    5. fall back               revoked, expired past grace, or refused by the server's TLS
                               layer: simpleenroll with the factory identity, then a
                               bootstrap secret; if both are refused, the device needs
                               re-provisioning (and keeps trying, slowly)

A new key is made for every enrollment (or by the server, with serverkeygen); the driver
stores it as a candidate next to the current pair, so that nothing that works is overwritten
before its successor has worked once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import random
from collections.abc import Generator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)

from fleetpki.agent import schedule
from fleetpki.agent.est_wire import (
    basic_authorization,
    body_text,
    build_csr,
    describe,
    names_of,
    public_key_der,
    retry_after,
    serial_text,
    status_text,
)
from fleetpki.agent.messages import (
    CertificateRefused,
    Command,
    Credential,
    DiscardCandidate,
    HttpRequest,
    HttpResponse,
    NewIdentity,
    PromoteCandidate,
    Reply,
    SaveCandidate,
    SavePendingKey,
)
from fleetpki.agent.policy import RenewalPolicy
from fleetpki.agent.state import AgentState, Health, Window
from fleetpki.core.errors import BadInput
from fleetpki.protocols.est.codec import (
    CT_PKCS10,
    decode_base64_body,
    decode_serverkeygen,
    encode_base64_body,
    load_certs_only,
)
from fleetpki.protocols.est.renewal_info import RenewalInfo, decode_renewal_info

EST_PREFIX = "/.well-known/est"


class Outcome(enum.Enum):
    idle = "idle"  # nothing was due
    advised = "advised"  # only renewal information was fetched
    renewed = "renewed"
    enrolled = "enrolled"  # a new identity through the factory identity or a bootstrap secret
    pending = "pending"  # held for an operator (RFC 7030 §4.2.3)
    failed = "failed"  # a transient failure; the backoff decides when to try again
    needs_reprovisioning = "needs-reprovisioning"


@dataclasses.dataclass(frozen=True, slots=True)
class Enrollee:
    """What the device asks for on a first enrollment. Renewals copy the current
    certificate's subject and subjectAltName instead (RFC 7030 §4.2.2)."""

    subject: x509.Name
    sans: tuple[x509.GeneralName, ...] = ()
    label: str | None = None  # the EST label (profile) to enroll under


@dataclasses.dataclass(frozen=True, slots=True)
class Identities:
    """What the device holds, as the driver loaded it."""

    current: x509.Certificate | None
    candidate: x509.Certificate | None = None
    factory: bool = False  # an IDevID certificate and key are installed
    bootstrap: tuple[str, str] | None = dataclasses.field(default=None, repr=False)
    pending_key: CertificateIssuerPrivateKeyTypes | None = dataclasses.field(default=None,
                                                                            repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionResult:
    state: AgentState
    outcome: Outcome
    messages: tuple[str, ...] = ()
    new_certificate: x509.Certificate | None = None
    requests: int = 0


Session = Generator[Command, Reply | None, SessionResult]


class _Refused(Exception):
    """The server answered, and the answer is no (4xx other than 429)."""


class _CertificateRefused(_Refused):
    """The server's TLS layer refused the client certificate (a `CertificateRefused` reply):
    the certificate does not work with this server at all, valid or not."""


class _Transient(Exception):
    def __init__(self, message: str, retry_after: dt.datetime | None = None, *,
                 unanswered: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unanswered = unanswered  # no HTTP answer at all (a TransportFailure)


class _Pending(Exception):
    def __init__(self, retry_after: dt.datetime) -> None:
        super().__init__("held for approval")
        self.retry_after = retry_after


def session(now: dt.datetime, state: AgentState, ids: Identities, enrollee: Enrollee,
            policy: RenewalPolicy, rng: random.Random, *, force: bool = False) -> Session:
    """One session. `force` (an operator's `fleetpki-agent renew --force`) ignores the
    backoff gate and the renewal instant: the device renews, or enrolls, now."""
    run = _Session(now, state, ids, enrollee, policy, rng, force)
    return (yield from run.run())


class _Session:
    def __init__(self, now: dt.datetime, state: AgentState, ids: Identities,
                 enrollee: Enrollee, policy: RenewalPolicy, rng: random.Random,
                 force: bool = False) -> None:
        self.now = now
        self.force = force
        self.state = state
        self.ids = ids
        self.current = ids.current
        self.enrollee = enrollee
        self.policy = policy
        self.rng = rng
        self.messages: list[str] = []
        self.requests = 0
        self.new_certificate: x509.Certificate | None = None
        self.refused: str | None = None  # the server's TLS layer refused the current certificate

    def run(self) -> Session:
        # The backoff gate holds every attempt, a device without a certificate's included
        # (schedule.next_contact waits for it too): a failing server is not hammered by
        # whoever calls session() early. Renewal information has its own pace (info_next).
        gated = (not self.force and self.state.next_attempt is not None
                 and self.now < self.state.next_attempt)
        if self.ids.candidate is not None and not gated:
            confirmed = yield from self._confirm(self.ids.candidate)
            if confirmed is None:
                return self._result(Outcome.failed)
        if self.current is None:
            if gated:
                return self._result(Outcome.idle)
            return (yield from self._enroll_again("the device has no certificate yet"))
        advised = yield from self._advice()
        serial = serial_text(self.current)
        if self.state.serial != serial or self.state.renew_at is None:
            self._choose_window(None)
        if gated:
            return self._result(Outcome.advised if advised else Outcome.idle)
        if self.state.certificate_status == "revoked":
            return (yield from self._enroll_again("the certificate was revoked"))
        if self.refused is not None:
            return (yield from self._enroll_again(f"renewal information refused: "
                                                  f"{self.refused}"))
        assert self.state.renew_at is not None
        expired = self.now >= self.current.not_valid_after_utc
        if self.now < self.state.renew_at and not expired and not self.force:
            return self._result(Outcome.advised if advised else Outcome.idle)
        if expired and not self.policy.grace:
            return (yield from self._enroll_again("the certificate expired"))
        return (yield from self._renew(expired))

    # -- 1. the candidate -------------------------------------------------------------

    def _confirm(self, candidate: x509.Certificate) -> Generator[Command, Reply | None,
                                                                  bool | None]:
        """True: promoted; False: discarded; None: could not tell (kept for next time)."""
        reply = yield self._request(HttpRequest("GET", self._path("renewalinfo"),
                                                credential=Credential.candidate))
        if isinstance(reply, HttpResponse) and reply.status == 200:
            yield PromoteCandidate()
            self.current = candidate
            self._log(f"certificate {serial_text(candidate)} works; it is now the current one")
            if not (self.policy.use_server_window and self._adopt_advice(reply)):
                self._choose_window(None)
            return True
        if isinstance(reply, HttpResponse) and reply.status in (401, 403):
            yield DiscardCandidate(f"the server refuses the new certificate ({reply.status})")
            self._log(f"the server refused the new certificate {serial_text(candidate)}: "
                      f"{body_text(reply)}")
            return False
        if isinstance(reply, CertificateRefused):
            yield DiscardCandidate(f"the server refuses the new certificate in the TLS "
                                   f"handshake ({reply.alert})")
            self._log(f"the server refused the new certificate {serial_text(candidate)}: "
                      f"{reply.reason}")
            return False
        if isinstance(reply, HttpResponse) and reply.status == 404:
            # An EST server without renewalinfo (RFC 7030 has none). It answered over TLS
            # with the candidate as the client certificate, so its TLS layer accepted the
            # chain: the best confirmation such a server can give.
            yield PromoteCandidate()
            self.current = candidate
            self._log(f"certificate {serial_text(candidate)} accepted in a TLS handshake (the "
                      "server offers no renewal information); it is now the current one")
            self._choose_window(None)
            return True
        usable = (self.current is not None
                  and self.now < self.current.not_valid_after_utc)
        if not usable:
            # Nothing better to use: a fresh certificate beats an expired one.
            yield PromoteCandidate()
            self.current = candidate
            self._log(f"could not confirm certificate {serial_text(candidate)} "
                      f"({describe(reply)}), using it since the previous one expired")
            self._choose_window(None)
            return True
        self._fail(f"could not confirm the new certificate: {describe(reply)}")
        return None

    # -- 2. advice ----------------------------------------------------------------------

    def _advice(self) -> Generator[Command, Reply | None, bool]:
        if not self.policy.use_server_window or self.current is None:
            return False
        due = (self.state.info_next is None or self.now >= self.state.info_next
               or self.state.serial != serial_text(self.current))
        if not due:
            return False
        reply = yield self._request(HttpRequest("GET", self._path("renewalinfo"),
                                                credential=Credential.current))
        if isinstance(reply, HttpResponse) and reply.status == 200:
            return self._adopt_advice(reply)
        # No advice: the local window applies; ask again after a backoff-sized pause.
        retry = schedule.retry_at(self.state.replace(failures=1), self.policy, self.rng,
                                  self.now)
        self.state = self.state.replace(info_next=retry)
        if isinstance(reply, HttpResponse) and reply.status in (401, 403):
            self._log(f"renewal information refused: {body_text(reply)}")
        if isinstance(reply, CertificateRefused):
            # Unlike a 401/403 from the application (a window, a policy), a TLS refusal says
            # the certificate itself is not accepted: renewing with it cannot work either.
            self.refused = reply.reason
        return False

    def _adopt_advice(self, reply: HttpResponse) -> bool:
        try:
            info = decode_renewal_info(reply.body)
        except BadInput as error:
            self._log(f"unusable renewal information: {error}")
            return False
        retry = retry_after(reply, self.now) or self.now + dt.timedelta(days=1)
        self.state = self.state.replace(info_next=retry, certificate_status=info.status)
        self._choose_window(info)
        return True

    def _choose_window(self, info: RenewalInfo | None) -> None:
        assert self.current is not None
        serial = serial_text(self.current)
        if info is not None and info.serial == serial:
            window = Window(info.start, info.end, "server", info.explanation)
        elif self.state.serial == serial and self.state.window is not None:
            window = self.state.window
        else:
            window = schedule.local_window(self.current.not_valid_before_utc,
                                           self.current.not_valid_after_utc, self.policy)
        if (self.state.serial == serial and self.state.window == window
                and self.state.renew_at is not None):
            return
        renew_at = schedule.pick_instant(window, self.policy, self.rng)
        if window.source == "server" and window.explanation:
            self._log(f"renewal window {window.start:%Y-%m-%d %H:%M}Z to "
                      f"{window.end:%Y-%m-%d %H:%M}Z: {window.explanation}")
        self.state = self.state.replace(serial=serial, window=window, renew_at=renew_at)

    # -- 4. renewal ---------------------------------------------------------------------

    def _renew(self, expired: bool) -> Session:
        assert self.current is not None
        try:
            yield from self._enroll("simplereenroll", Credential.current,
                                    names_of(self.current), basic=None)
        except _Refused as error:
            if (expired or self.state.certificate_status == "revoked"
                    or isinstance(error, _CertificateRefused)):
                return (yield from self._enroll_again(f"renewal refused: {error}"))
            # Perhaps the server's clock or window differs: ask for advice at once next time.
            self.state = self.state.replace(info_next=self.now)
            return self._failure(f"renewal refused: {error}", hard=True)
        except _Pending as pending:
            return self._held(pending)
        except _Transient as error:
            return self._failure(f"renewal failed: {error}", retry_after=error.retry_after)
        return self._result(Outcome.renewed)

    # -- 5. enrolling again -------------------------------------------------------------

    def _enroll_again(self, why: str) -> Session:
        first = self.current is None and self.state.last_renewal_at is None
        if not first and not self.policy.factory_fallback:
            return self._reprovision(f"{why}; the policy has no fallback")
        attempts: list[tuple[Credential, tuple[str, str] | None]] = []
        if self.ids.factory:
            attempts.append((Credential.factory, None))
        if self.ids.bootstrap is not None:
            attempts.append((Credential.none, self.ids.bootstrap))
        if not attempts:
            return self._reprovision(f"{why}; the device has no usable factory identity or "
                                     "bootstrap secret")
        refusals = []
        unanswered: _Transient | None = None
        for credential, basic in attempts:
            try:
                yield from self._enroll("simpleenroll", credential, self._first_names(),
                                        basic=basic)
            except _Refused as error:
                refusals.append(f"{credential.value if basic is None else 'bootstrap'}: "
                                f"{error}")
                continue
            except _Pending as pending:
                return self._held(pending)
            except _Transient as error:
                if error.unanswered and credential is Credential.factory:
                    # A server whose TLS layer does not accept the IDevID (a manufacturer it
                    # does not know, an expired IDevID) ends the handshake without an HTTP
                    # status, as a network failure would: let the next credential decide.
                    unanswered = error
                    continue
                return self._failure(f"{why}; enrollment failed: {error}",
                                     retry_after=error.retry_after)
            if not first:
                self._log(f"{why}; enrolled again with the "
                          f"{'factory identity' if basic is None else 'bootstrap secret'}")
            return self._result(Outcome.enrolled)
        if unanswered is not None:  # not a refusal: perhaps the network, so try again later
            return self._failure(f"{why}; enrollment failed: factory: {unanswered}"
                                 + "".join(f"; {refusal}" for refusal in refusals))
        return self._reprovision(f"{why}; enrollment refused ({'; '.join(refusals)})")

    def _first_names(self) -> tuple[x509.Name, tuple[x509.GeneralName, ...]]:
        if self.current is not None:
            return names_of(self.current)
        return self.enrollee.subject, self.enrollee.sans

    # -- one EST enrollment -------------------------------------------------------------

    def _enroll(self, operation: str, credential: Credential,
                names: tuple[x509.Name, tuple[x509.GeneralName, ...]],
                basic: tuple[str, str] | None) -> Generator[Command, Reply | None, None]:
        server_keygen = self.policy.server_keygen
        key = self.ids.pending_key if self.state.pending_since is not None else None
        if key is not None and self.current is not None and (
                public_key_der(key.public_key()) == public_key_der(self.current.public_key())):
            key = None  # already certified: a crash kept it after its certificate was saved
        if key is None:
            key = self.policy.key_spec.generate()
        if server_keygen:
            operation = "serverkeygen"
        csr = build_csr(key, *names)
        headers = [("content-type", CT_PKCS10)]
        if basic is not None:
            headers.append(("authorization", basic_authorization(*basic)))
        reply = yield self._request(HttpRequest("POST", self._path(operation), tuple(headers),
                                                encode_base64_body(csr), credential))
        if isinstance(reply, CertificateRefused):
            raise _CertificateRefused(reply.reason)
        if not isinstance(reply, HttpResponse):
            raise _Transient(describe(reply), unanswered=True)
        if reply.status == 202:
            yield SavePendingKey(key)
            raise _Pending(retry_after(reply, self.now)
                           or self.now + dt.timedelta(minutes=1))
        if reply.status in (429, 503) or reply.status >= 500:
            raise _Transient(status_text(reply), retry_after(reply, self.now))
        if reply.status != 200:
            raise _Refused(status_text(reply))
        identity = self._identity(reply, key, server_keygen)
        # The candidate first: a crash between the two leaves a spare pending key, never a
        # certificate whose key is lost.
        yield SaveCandidate(identity)
        if self.state.pending_since is not None:
            yield SavePendingKey(None)
        self.new_certificate = identity.certificate
        self._log(f"{operation}: got certificate {serial_text(identity.certificate)} valid until "
                  f"{identity.certificate.not_valid_after_utc:%Y-%m-%d %H:%M}Z")
        self.state = self.state.replace(failures=0, next_attempt=None, pending_since=None,
                                        last_renewal_at=self.now, health=Health.ok,
                                        certificate_status=None, info_next=None)
        # Unconfirmed (None) keeps the candidate: the failure _confirm records schedules the
        # next try, and the enrollment itself succeeded, so the session reports it. Refused
        # (False): the certificate is gone, and the next attempt waits for the backoff rather
        # than starting again at once.
        confirmed = yield from self._confirm(identity.certificate)
        if confirmed is False:
            self.new_certificate = None
            raise _Transient(f"the server refused the certificate it had just issued "
                             f"({serial_text(identity.certificate)})")

    def _identity(self, reply: HttpResponse, key: CertificateIssuerPrivateKeyTypes,
                  server_keygen: bool) -> NewIdentity:
        try:
            if server_keygen:
                pkcs8, certificates = decode_serverkeygen(reply.header("content-type") or "",
                                                          reply.body)
                loaded = serialization.load_der_private_key(pkcs8, password=None)
                key = loaded  # type: ignore[assignment]
            else:
                certificates = load_certs_only(decode_base64_body(reply.body))
        except (BadInput, ValueError, TypeError) as error:
            raise _Transient(f"the server's answer is unusable: {error}") from None
        if not certificates:
            raise _Transient("the server answered without a certificate")
        certificate = certificates[0]
        if public_key_der(certificate.public_key()) != public_key_der(key.public_key()):
            raise _Transient("the certificate the server returned is not for our key")
        return NewIdentity(key, certificate, tuple(certificates[1:]))

    # -- outcomes -----------------------------------------------------------------------

    def _held(self, pending: _Pending) -> SessionResult:
        self.state = self.state.replace(pending_since=self.state.pending_since or self.now,
                                        next_attempt=pending.retry_after)
        self._log(f"enrollment held for approval; retrying after "
                  f"{pending.retry_after:%Y-%m-%d %H:%M:%S}Z")
        return self._result(Outcome.pending)

    def _failure(self, message: str, *, retry_after: dt.datetime | None = None,
                 hard: bool = False) -> SessionResult:
        self._fail(message, retry_after=retry_after, hard=hard)
        return self._result(Outcome.failed)

    def _fail(self, message: str, *, retry_after: dt.datetime | None = None,
              hard: bool = False) -> None:
        failures = self.state.failures + 1
        expires = self.current.not_valid_after_utc if self.current is not None else None
        probe = self.state.replace(failures=failures + (4 if hard else 0))
        when = schedule.retry_at(probe, self.policy, self.rng, self.now, not_before=retry_after,
                                 expires=expires)
        self.state = self.state.failed(message, self.now, when)
        self._log(f"{message}; next attempt after {when:%Y-%m-%d %H:%M:%S}Z")

    def _reprovision(self, message: str) -> SessionResult:
        retry = self.now + self.policy.backoff_max
        self.state = self.state.failed(message, self.now, retry).replace(
            health=Health.needs_reprovisioning)
        self._log(f"needs re-provisioning: {message}")
        return self._result(Outcome.needs_reprovisioning)

    def _result(self, outcome: Outcome) -> SessionResult:
        return SessionResult(self.state, outcome, tuple(self.messages), self.new_certificate,
                             self.requests)

    # -- helpers ------------------------------------------------------------------------

    def _request(self, request: HttpRequest) -> HttpRequest:
        self.requests += 1
        return request

    def _path(self, operation: str) -> str:
        label = self.enrollee.label
        return f"{EST_PREFIX}/{label}/{operation}" if label else f"{EST_PREFIX}/{operation}"

    def _log(self, message: str) -> None:
        self.messages.append(message)

