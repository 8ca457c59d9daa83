"""flow.session, branch by branch, driven by a scripted fake server (support/agent_fakes.py).

Each test states what the device holds, what the server answers, and checks what the flow
asked the driver to do (requests, with which credential; storage commands, in which order)
and the state it leaves for next time.
"""

from __future__ import annotations

import base64
import datetime as dt
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from fleetpki.agent import flow
from fleetpki.agent.flow import Enrollee, Identities, Outcome, SessionResult
from fleetpki.agent.messages import (
    CertificateRefused,
    Credential,
    DiscardCandidate,
    HttpRequest,
    PromoteCandidate,
    SaveCandidate,
    SavePendingKey,
)
from fleetpki.agent.policy import RenewalPolicy
from fleetpki.agent.state import AgentState, Health
from fleetpki.protocols.est.codec import decode_base64_body
from support.agent_fakes import DAY, DOWN, NOW, FakeCa, Script, name, renewal_info, status

POLICY = RenewalPolicy(jitter=False)
ENROLLEE = Enrollee(name("device-1"))
BOOTSTRAP = ("boot-1", "s3cret-value")
# The server's TLS layer refuses the client certificate (transport.py): not an outage.
REFUSED = CertificateRefused("the server at 127.0.0.1:8443 refused the certificate "
                             "current/fullchain.pem in the TLS handshake (unknown ca)",
                             "unknown_ca")


@pytest.fixture(scope="module")
def ca() -> FakeCa:
    return FakeCa()


def run(script: Script, ids: Identities, *, state: AgentState | None = None,
        policy: RenewalPolicy = POLICY, now: dt.datetime = NOW, force: bool = False,
        enrollee: Enrollee = ENROLLEE) -> SessionResult:
    return script.run(flow.session(now, state or AgentState(), ids, enrollee, policy,
                                   random.Random(7), force=force))


def saved(script: Script) -> x509.Certificate:
    command = script.of(SaveCandidate)[-1]
    assert isinstance(command, SaveCandidate)
    return command.identity.certificate


def confirm(script: Script, ca: FakeCa) -> HttpRequest | object:
    """The answer to the candidate's renewalinfo: a window in the future for it."""
    return lambda request: renewal_info(saved(script), NOW + 20 * DAY, NOW + 25 * DAY)


def csr_of(request: HttpRequest) -> x509.CertificateSigningRequest:
    return x509.load_der_x509_csr(decode_base64_body(request.body))


def spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


# -- renewal -------------------------------------------------------------------------------

def test_renewal_in_the_server_window_promotes_the_new_certificate(ca: FakeCa) -> None:
    key, current = ca.pair(not_before=NOW - 20 * DAY, not_after=NOW + 10 * DAY)
    script = Script(simplereenroll=ca.enrollment_reply)
    script.queues["renewalinfo"] = [renewal_info(current, NOW - DAY, NOW + DAY),
                                    confirm(script, ca)]  # type: ignore[list-item]
    result = run(script, Identities(current))
    assert result.outcome is Outcome.renewed
    assert script.operations() == ["renewalinfo", "simplereenroll", "renewalinfo"]
    assert [r.credential for r in script.requests] == [Credential.current, Credential.current,
                                                       Credential.candidate]
    assert [type(c) for c in script.commands if not isinstance(c, HttpRequest)] == [
        SaveCandidate, PromoteCandidate]
    new = saved(script)
    csr = csr_of(script.requests[1])
    assert csr.subject == current.subject  # RFC 7030 §4.2.2: the subject is kept
    assert spki(csr.public_key()) != spki(key.public_key())  # a new key every time
    assert result.state.serial == f"{new.serial_number:x}" and result.state.failures == 0
    assert result.state.window is not None and result.state.window.source == "server"
    assert result.state.renew_at == NOW + 20 * DAY and result.state.last_renewal_at == NOW
    assert result.new_certificate == new


def test_nothing_is_due_before_the_window(ca: FakeCa) -> None:
    _, current = ca.pair()
    script = Script(renewalinfo=renewal_info(current, NOW + 5 * DAY, NOW + 6 * DAY))
    first = run(script, Identities(current))
    assert first.outcome is Outcome.advised and script.operations() == ["renewalinfo"]
    assert first.state.info_next == NOW + dt.timedelta(seconds=3600)
    again = Script()
    second = run(again, Identities(current), state=first.state, now=NOW + dt.timedelta(
        minutes=10))
    assert second.outcome is Outcome.idle and again.commands == []


def test_without_renewalinfo_the_local_window_decides_and_a_tls_handshake_confirms(
        ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)  # 90% of life
    script = Script(renewalinfo=[status(404), status(404)],
                    simplereenroll=ca.enrollment_reply)
    result = run(script, Identities(current))
    assert result.outcome is Outcome.renewed
    assert script.operations() == ["renewalinfo", "simplereenroll", "renewalinfo"]
    assert any(isinstance(c, PromoteCandidate) for c in script.commands)
    assert result.state.window is not None and result.state.window.source == "local"
    assert result.state.serial == f"{saved(script).serial_number:x}"


def test_force_renews_before_the_window(ca: FakeCa) -> None:
    _, current = ca.pair()
    script = Script(simplereenroll=ca.enrollment_reply)
    script.queues["renewalinfo"] = [renewal_info(current, NOW + 5 * DAY, NOW + 6 * DAY),
                                    confirm(script, ca)]  # type: ignore[list-item]
    assert run(script, Identities(current), force=True).outcome is Outcome.renewed


# -- held, throttled, unreachable ----------------------------------------------------------

def test_a_held_request_is_repeated_with_the_same_key(ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    held = Script(renewalinfo=renewal_info(current, NOW - DAY, NOW),
                  simplereenroll=status(202, "waiting for approval", retry_after="30"))
    first = run(held, Identities(current))
    assert first.outcome is Outcome.pending
    [pending] = held.of(SavePendingKey)
    assert isinstance(pending, SavePendingKey) and pending.key is not None
    assert first.state.pending_since == NOW
    assert first.state.next_attempt == NOW + dt.timedelta(seconds=30)

    later = NOW + dt.timedelta(seconds=31)
    issued = Script(simplereenroll=ca.enrollment_reply)
    issued.queues["renewalinfo"] = [confirm(issued, ca)]  # type: ignore[list-item]
    second = run(issued, Identities(current, pending_key=pending.key), state=first.state,
                 now=later)
    assert second.outcome is Outcome.renewed
    assert spki(csr_of(issued.requests[0]).public_key()) == spki(pending.key.public_key())
    storage = [c for c in issued.commands if not isinstance(c, HttpRequest)]
    # The candidate is durable before the pending key is cleared.
    assert [type(c) for c in storage] == [SaveCandidate, SavePendingKey, PromoteCandidate]
    assert storage[1] == SavePendingKey(None)
    assert second.state.pending_since is None


def test_a_pending_key_already_certified_is_not_reused(ca: FakeCa) -> None:
    key, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    script = Script(renewalinfo=[status(404), status(404)], simplereenroll=ca.enrollment_reply)
    state = AgentState(pending_since=NOW - DAY)
    run(script, Identities(current, pending_key=key), state=state)
    assert spki(csr_of(script.requests[1]).public_key()) != spki(key.public_key())


def test_a_renewal_refused_while_valid_backs_off_hard_and_asks_for_advice_next(
        ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    script = Script(renewalinfo=status(404),
                    simplereenroll=status(403, "renewal opens at 2027-03-05"))
    result = run(script, Identities(current, factory=True))
    assert result.outcome is Outcome.failed  # not a fallback: the certificate still works
    assert "simpleenroll" not in script.operations()
    assert result.state.info_next == NOW and result.state.failures == 1
    assert result.state.last_error is not None and "renewal opens" in result.state.last_error


@pytest.mark.parametrize("code", [503, 429])
def test_a_busy_server_is_retried_after_its_retry_after(ca: FakeCa, code: int) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    script = Script(renewalinfo=status(404),
                    simplereenroll=status(code, "busy", retry_after="7200"))
    result = run(script, Identities(current))
    assert result.outcome is Outcome.failed and result.state.failures == 1
    assert result.state.next_attempt is not None
    assert result.state.next_attempt >= NOW + dt.timedelta(seconds=7200)
    assert result.state.last_error is not None and f"HTTP {code}" in result.state.last_error


@pytest.mark.parametrize("code", [503, 400])
def test_an_empty_error_body_is_not_repeated_as_text(ca: FakeCa, code: int) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    script = Script(renewalinfo=status(404), simplereenroll=status(code))
    result = run(script, Identities(current))
    said = " ".join((result.state.last_error or "", *result.messages))
    assert f"HTTP {code}" in said and f"HTTP {code}: HTTP {code}" not in said


def test_an_unreachable_server_means_backoff_and_nothing_before_it(ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    policy = RenewalPolicy()  # jitter on, as devices run
    first = run(Script(renewalinfo=DOWN, simplereenroll=DOWN), Identities(current),
                policy=policy)
    assert first.outcome is Outcome.failed and first.state.failures == 1
    gate = first.state.next_attempt
    assert gate is not None  # later, but while the certificate still works
    assert NOW + policy.backoff_initial / 2 <= gate < current.not_valid_after_utc
    assert first.state.last_error is not None and "refused" in first.state.last_error

    early = Script(renewalinfo=[DOWN])  # before the gate: advice at its own pace, no renewal
    assert run(early, Identities(current), state=first.state, policy=policy,
               now=gate - dt.timedelta(seconds=1)).outcome is Outcome.idle
    assert "simplereenroll" not in early.operations()

    second = run(Script(simplereenroll=DOWN, renewalinfo=DOWN), Identities(current),
                 state=first.state, policy=policy, now=gate)
    assert second.state.failures == 2


def test_force_ignores_the_backoff_gate(ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    state = AgentState(next_attempt=NOW + DAY, failures=3)
    script = Script(renewalinfo=[status(404), status(404)], simplereenroll=ca.enrollment_reply)
    assert run(script, Identities(current), state=state, force=True).outcome is Outcome.renewed


# -- when the certificate can no longer renew itself ---------------------------------------

def test_expired_and_refused_falls_back_to_factory_then_bootstrap_then_gives_up(
        ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 31 * DAY, not_after=NOW - DAY)
    script = Script(renewalinfo=renewal_info(current, NOW - DAY, NOW, status="expired"),
                    simplereenroll=status(403, "expired past its grace"),
                    simpleenroll=[status(403, "not on the allow list"),
                                  status(401, "unknown bootstrap credential")])
    result = run(script, Identities(current, factory=True, bootstrap=BOOTSTRAP))
    assert result.outcome is Outcome.needs_reprovisioning
    assert script.operations() == ["renewalinfo", "simplereenroll", "simpleenroll",
                                   "simpleenroll"]
    assert [r.credential for r in script.requests] == [
        Credential.current, Credential.current, Credential.factory, Credential.none]
    basic = dict(script.requests[3].headers)["authorization"]
    assert basic == "Basic " + base64.b64encode(b"boot-1:s3cret-value").decode()
    assert "authorization" not in dict(script.requests[2].headers)
    assert result.state.health == Health.needs_reprovisioning
    assert result.state.next_attempt == NOW + POLICY.backoff_max
    assert result.state.last_error is not None
    assert "allow list" in result.state.last_error and "bootstrap" in result.state.last_error
    assert "s3cret" not in " ".join(result.messages)


def test_a_valid_certificate_refused_in_the_tls_handshake_falls_back_to_factory_then_secret(
        ca: FakeCa) -> None:
    _, current = ca.pair()  # valid for weeks: only the server's refusal makes it useless
    script = Script(renewalinfo=REFUSED,
                    simpleenroll=[REFUSED, ca.enrollment_reply])
    script.queues["renewalinfo"].append(confirm(script, ca))  # type: ignore[arg-type]
    result = run(script, Identities(current, factory=True, bootstrap=BOOTSTRAP))
    assert result.outcome is Outcome.enrolled
    assert script.operations() == ["renewalinfo", "simpleenroll", "simpleenroll",
                                   "renewalinfo"]
    assert [r.credential for r in script.requests] == [
        Credential.current, Credential.factory, Credential.none, Credential.candidate]
    assert csr_of(script.requests[2]).subject == current.subject
    assert any(isinstance(c, PromoteCandidate) for c in script.commands)
    assert result.state.failures == 0 and result.state.health == Health.ok
    assert any("unknown ca" in message for message in result.messages)


def test_a_renewal_refused_in_the_tls_handshake_falls_back_but_a_403_does_not(
        ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    script = Script(renewalinfo=status(404), simplereenroll=REFUSED,
                    simpleenroll=ca.enrollment_reply)
    script.queues["renewalinfo"].append(confirm(script, ca))  # type: ignore[arg-type]
    assert run(script, Identities(current, factory=True)).outcome is Outcome.enrolled
    assert script.operations() == ["renewalinfo", "simplereenroll", "simpleenroll",
                                   "renewalinfo"]
    assert script.requests[2].credential is Credential.factory
    # The application's 403 while valid is about timing or policy, not the certificate.
    http = Script(renewalinfo=status(404), simplereenroll=status(403, "not yet"))
    assert run(http, Identities(current, factory=True)).outcome is Outcome.failed
    assert "simpleenroll" not in http.operations()


def test_tls_refusals_of_every_credential_need_reprovisioning(ca: FakeCa) -> None:
    _, current = ca.pair()
    script = Script(renewalinfo=REFUSED,
                    simpleenroll=[REFUSED, status(401, "unknown bootstrap credential")])
    result = run(script, Identities(current, factory=True, bootstrap=BOOTSTRAP))
    assert result.outcome is Outcome.needs_reprovisioning
    assert result.state.health == Health.needs_reprovisioning
    assert result.state.last_error is not None
    assert "factory: " in result.state.last_error and "unknown ca" in result.state.last_error


def test_a_tls_refusal_waits_for_the_backoff_gate(ca: FakeCa) -> None:
    _, current = ca.pair()
    state = AgentState(next_attempt=NOW + DAY, failures=1)
    script = Script(renewalinfo=REFUSED)
    result = run(script, Identities(current, factory=True), state=state)
    assert result.outcome is Outcome.idle and script.operations() == ["renewalinfo"]


def test_a_candidate_refused_in_the_tls_handshake_is_discarded(ca: FakeCa) -> None:
    _, current = ca.pair()
    _, candidate = ca.pair()
    script = Script(renewalinfo=[REFUSED, renewal_info(current, NOW + 5 * DAY, NOW + 6 * DAY)])
    result = run(script, Identities(current, candidate=candidate))
    assert any(isinstance(c, DiscardCandidate) for c in script.commands)
    assert not any(isinstance(c, PromoteCandidate) for c in script.commands)
    assert result.state.serial == f"{current.serial_number:x}"


def test_expired_without_grace_goes_straight_to_the_factory_identity(ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 31 * DAY, not_after=NOW - DAY)
    script = Script(renewalinfo=[status(404)], simpleenroll=ca.enrollment_reply)
    script.queues["renewalinfo"].append(confirm(script, ca))  # type: ignore[arg-type]
    result = run(script, Identities(current, factory=True),
                 policy=RenewalPolicy(jitter=False, grace=False))
    assert result.outcome is Outcome.enrolled
    assert script.operations() == ["renewalinfo", "simpleenroll", "renewalinfo"]
    assert script.requests[1].credential is Credential.factory
    assert csr_of(script.requests[1]).subject == current.subject  # the device stays itself


def test_revoked_per_renewalinfo_enrolls_again_with_the_factory_identity(ca: FakeCa) -> None:
    _, current = ca.pair()
    script = Script(simpleenroll=ca.enrollment_reply)
    script.queues["renewalinfo"] = [renewal_info(current, NOW, NOW, status="revoked"),
                                    confirm(script, ca)]  # type: ignore[list-item]
    result = run(script, Identities(current, factory=True))
    assert result.outcome is Outcome.enrolled
    assert script.requests[1].credential is Credential.factory
    assert any(isinstance(c, PromoteCandidate) for c in script.commands)
    assert result.state.certificate_status == "valid"


def test_revoked_without_fallback_needs_reprovisioning(ca: FakeCa) -> None:
    _, current = ca.pair()
    script = Script(renewalinfo=renewal_info(current, NOW, NOW, status="revoked"))
    result = run(script, Identities(current, factory=True),
                 policy=RenewalPolicy(jitter=False, factory_fallback=False))
    assert result.outcome is Outcome.needs_reprovisioning
    assert script.operations() == ["renewalinfo"]


def test_no_identity_and_no_way_to_enroll_needs_reprovisioning() -> None:
    script = Script()
    result = run(script, Identities(None))
    assert result.outcome is Outcome.needs_reprovisioning and script.commands == []


# -- first enrollment ------------------------------------------------------------------------

def test_first_enrollment_with_a_bootstrap_secret_under_a_label(ca: FakeCa) -> None:
    script = Script(simpleenroll=ca.enrollment_reply)
    script.queues["renewalinfo"] = [confirm(script, ca)]  # type: ignore[list-item]
    result = run(script, Identities(None, bootstrap=BOOTSTRAP),
                 enrollee=Enrollee(name("device-9"), (x509.DNSName("d9.fleet.internal"),),
                                   "sensor"))
    assert result.outcome is Outcome.enrolled
    assert script.requests[0].path == "/.well-known/est/sensor/simpleenroll"
    csr = csr_of(script.requests[0])
    assert csr.subject == name("device-9")
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        x509.SubjectAlternativeName([x509.DNSName("d9.fleet.internal")])


def test_server_side_key_generation_keeps_the_key_the_server_made(ca: FakeCa) -> None:
    server_key = ec.generate_private_key(ec.SECP256R1())
    script = Script(serverkeygen=lambda request: ca.serverkeygen_reply(request, server_key))
    script.queues["renewalinfo"] = [confirm(script, ca)]  # type: ignore[list-item]
    result = run(script, Identities(None, bootstrap=BOOTSTRAP),
                 policy=RenewalPolicy(jitter=False, server_keygen=True))
    assert result.outcome is Outcome.enrolled
    assert script.requests[0].path.endswith("/serverkeygen")
    [save] = script.of(SaveCandidate)
    assert isinstance(save, SaveCandidate)
    assert spki(save.identity.key.public_key()) == spki(server_key.public_key())


# -- the candidate ---------------------------------------------------------------------------

def test_a_candidate_that_works_is_promoted(ca: FakeCa) -> None:
    _, current = ca.pair()
    _, candidate = ca.pair()
    script = Script(renewalinfo=renewal_info(candidate, NOW + 20 * DAY, NOW + 21 * DAY))
    result = run(script, Identities(current, candidate=candidate))
    assert script.requests[0].credential is Credential.candidate
    assert [type(c) for c in script.commands] == [HttpRequest, PromoteCandidate]
    assert result.state.serial == f"{candidate.serial_number:x}"


def test_a_candidate_the_server_refuses_is_discarded_and_the_current_one_kept(
        ca: FakeCa) -> None:
    _, current = ca.pair()
    _, candidate = ca.pair()
    script = Script(renewalinfo=[status(403, "unknown certificate"),
                                 renewal_info(current, NOW + 5 * DAY, NOW + 6 * DAY)])
    result = run(script, Identities(current, candidate=candidate))
    assert any(isinstance(c, DiscardCandidate) for c in script.commands)
    assert not any(isinstance(c, PromoteCandidate) for c in script.commands)
    assert result.state.serial == f"{current.serial_number:x}"


def test_an_unconfirmable_candidate_is_kept_while_the_current_one_works(ca: FakeCa) -> None:
    _, current = ca.pair()
    _, candidate = ca.pair()
    script = Script(renewalinfo=DOWN)
    result = run(script, Identities(current, candidate=candidate))
    assert result.outcome is Outcome.failed
    assert [type(c) for c in script.commands] == [HttpRequest]  # neither promoted nor dropped
    assert result.state.next_attempt is not None and result.state.next_attempt > NOW


def test_an_unconfirmable_candidate_is_used_when_the_current_one_expired(ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 31 * DAY, not_after=NOW - DAY)
    _, candidate = ca.pair()
    script = Script(renewalinfo=[DOWN, DOWN])
    result = run(script, Identities(current, candidate=candidate))
    assert PromoteCandidate() in script.commands
    assert result.state.serial == f"{candidate.serial_number:x}"


def test_a_just_issued_certificate_the_server_refuses_means_backoff_not_a_loop(
        ca: FakeCa) -> None:
    _, current = ca.pair(not_before=NOW - 27 * DAY, not_after=NOW + 3 * DAY)
    script = Script(renewalinfo=[status(404), status(403, "no")],
                    simplereenroll=ca.enrollment_reply)
    result = run(script, Identities(current))
    assert result.outcome is Outcome.failed
    assert any(isinstance(c, DiscardCandidate) for c in script.commands)
    assert result.new_certificate is None
    assert result.state.next_attempt is not None and result.state.next_attempt > NOW


def test_a_device_without_a_certificate_waits_for_its_backoff_too(ca: FakeCa) -> None:
    state = AgentState(next_attempt=NOW + dt.timedelta(minutes=5), failures=1)
    waiting = Script()
    assert run(waiting, Identities(None, bootstrap=BOOTSTRAP), state=state).outcome is \
        Outcome.idle
    assert waiting.commands == []
    forced = Script(simpleenroll=DOWN)
    assert run(forced, Identities(None, bootstrap=BOOTSTRAP), state=state,
               force=True).outcome is Outcome.failed
    assert forced.operations() == ["simpleenroll"]


def test_an_idevid_the_server_hangs_up_on_gives_way_to_the_bootstrap_secret(ca: FakeCa) -> None:
    script = Script(simpleenroll=[DOWN, ca.enrollment_reply])
    script.queues["renewalinfo"] = [confirm(script, ca)]  # type: ignore[list-item]
    result = run(script, Identities(None, factory=True, bootstrap=BOOTSTRAP))
    assert result.outcome is Outcome.enrolled
    assert [r.credential for r in script.requests[:2]] == [Credential.factory, Credential.none]


def test_no_answer_with_the_idevid_and_a_refused_secret_is_a_failure_not_the_end(
        ca: FakeCa) -> None:
    script = Script(simpleenroll=[DOWN, status(401, "unknown bootstrap credential")])
    result = run(script, Identities(None, factory=True, bootstrap=BOOTSTRAP))
    assert result.outcome is Outcome.failed and result.state.health == Health.ok
    assert result.state.last_error is not None and "refused the connection" in \
        result.state.last_error
