"""Runs the sans-I/O flow for real: HTTPS for its requests, the key store for everything else.

One session (`Agent.run_session`), under the key store's lock:

    1. load the identity directory (repairing what an interruption left, keystore.py)
    2. before a first enrollment, fetch /cacerts once (RFC 7030 §4.1.1: CA certificates
       before enrolling), so the first certificate's chain file is complete
    3. drive flow.session(): each HttpRequest goes to the transport with the client
       certificate it names; SaveCandidate / PromoteCandidate / DiscardCandidate /
       SavePendingKey go to the key store, each durable before the flow continues
    4. save the state; after a new certificate, refresh the trust store from /cacerts: a
       new root is added only if pinned (trust.py), an unpinned one is logged and refused.
       The certificate is on disk by then: a failure here (a bad trust/pins file) is logged
       as an error and reported, and steps 5 and the messages still happen
    5. outside the lock, after a promotion, run the configured hook

The daemon (`Agent.run_forever`) repeats sessions, sleeping until schedule.next_contact() in
slices of a few seconds so that SIGTERM stops it promptly between sessions. A SIGKILL at any
point is safe too: that is the key store's guarantee, not the daemon's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from fleetpki.agent import durable, flow, schedule, trust
from fleetpki.agent.config import AgentConfig, Hook
from fleetpki.agent.key_pairs import KeystoreError, Pair
from fleetpki.agent.keystore import Keystore, Loaded
from fleetpki.agent.messages import (
    CertificateRefused,
    Command,
    Credential,
    DiscardCandidate,
    HttpRequest,
    HttpResponse,
    PromoteCandidate,
    Reply,
    SaveCandidate,
    SavePendingKey,
    TransportFailure,
)
from fleetpki.agent.transport import ClientFiles, HttpsTransport, Transport
from fleetpki.agent.trust_store import TrustStoreError
from fleetpki.core.errors import BadInput
from fleetpki.protocols.est.codec import decode_base64_body, load_certs_only

log = logging.getLogger("fleetpki.agent")

# Longest sleep between two looks at the state: another process (an operator's `renew`)
# may have changed it, and clocks jump on devices without an RTC.
MAX_SLEEP = dt.timedelta(hours=1)
MIN_SLEEP = dt.timedelta(seconds=1)  # never a busy loop, whatever the state says
_SLICE = 5.0  # seconds: how long SIGTERM may wait while the daemon sleeps
_SESSION_SWEEPS = 10  # rounds of looking for a timed-out hook's processes (kill_session)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionReport:
    result: flow.SessionResult
    promoted: Pair | None  # the pair that became current in this session
    hook_ok: bool | None  # None: no hook ran
    trust_error: str | None = None  # the trust store could not be refreshed afterwards


class Agent:
    def __init__(self, config: AgentConfig, *, transport: Transport | None = None,
                 now: Callable[[], dt.datetime] = utc_now,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.store = Keystore(config.data_dir)
        self.transport: Transport = transport or HttpsTransport(
            config.server_url, self.store.trust.roots_file,
            connect_timeout=config.connect_timeout.total_seconds(),
            read_timeout=config.read_timeout.total_seconds())
        self._now = now
        self._rng = rng or random.SystemRandom()

    # -- one session ---------------------------------------------------------------------

    def run_session(self, *, force: bool = False) -> SessionReport:
        report = self._session(force=force, unless_enrolled=False)
        assert report is not None
        return report

    def enroll(self) -> SessionReport | None:
        """A first enrollment now; None if an identity is already current. That is decided
        under the lock, after loading: of two `enroll` started together, the second sees
        the first one's certificate instead of forcing a renewal."""
        return self._session(force=True, unless_enrolled=True)

    def _session(self, *, force: bool, unless_enrolled: bool) -> SessionReport | None:
        with self.store.lock():
            loaded = self.store.load()
            for note in loaded.notes:
                log.warning(note)
            if unless_enrolled and loaded.current is not None:
                return None
            if not self.store.trust.roots():
                raise KeystoreError(f"no trust roots in {self.store.trust.roots_file}: "
                                    "provision the fleet's root CA certificate there")
            if loaded.current is None and not self.store.trust.has_intermediates():
                self.refresh_trust(quiet=True)  # the session reports an unreachable server
            run = _Run(self, loaded)
            result = run.drive(flow.session(
                self._now(), loaded.state, loaded.identities(), self.config.enrollee,
                self.config.policy, self._rng, force=force))
            self.store.save_state(result.state)
            trust_error = (self._refresh_after_new_certificate()
                           if result.new_certificate is not None else None)
        _log_messages(result)
        hook_ok = None
        if run.promoted is not None and self.config.hook is not None:
            hook_ok = run_hook(self.config.hook, run.promoted, self.store.trust.roots_file)
        return SessionReport(result, run.promoted, hook_ok, trust_error)

    def _refresh_after_new_certificate(self) -> str | None:
        """refresh_trust() once the new certificate is saved (and perhaps promoted): that
        stands whatever happens here, so a failure is an error to log and report, never a
        reason to skip the hook that makes services use the new certificate."""
        try:
            self.refresh_trust()
        except (TrustStoreError, OSError) as error:
            message = (f"the new certificate is kept, but the trust store could not be "
                       f"refreshed: {error}")
            log.error(message)
            return message
        return None

    def refresh_trust(self, *, quiet: bool = False) -> None:
        """Fetch /cacerts anonymously (over TLS verified against the current roots) and
        keep its CA certificates: pinned new roots become anchors, the others are refused;
        intermediates are kept as path-building hints."""
        reply = self.transport.send(HttpRequest("GET", self.est_path("cacerts")), None)
        if not isinstance(reply, HttpResponse) or reply.status != 200:
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    f"could not refresh the CA certificates: {_describe(reply)}")
            return
        try:
            offered = load_certs_only(decode_base64_body(reply.body))
        except BadInput as error:
            log.warning(f"the server's /cacerts answer is unusable: {error}")
            return
        roots = self.store.trust.roots()
        offer = trust.offered_roots(offered, (trust.fingerprint(r) for r in roots),
                                    self.store.trust.pins() | self.config.pinned_roots)
        if offer.added:
            self.store.trust.add_roots(offer.added)
        for root in offer.added:
            log.warning(f"new trust root added (it was pinned): {root.subject.rfc4514_string()}"
                        f" sha256:{trust.fingerprint(root)}")
        for digest in offer.refused:
            log.warning(f"the server offered a root that is not pinned; refused: "
                        f"sha256:{digest}")
        self.store.trust.save_intermediates([c for c in offered if not trust.is_self_signed(c)])

    def est_path(self, operation: str) -> str:
        label = self.config.enrollee.label
        return f"{flow.EST_PREFIX}/{label}/{operation}" if label else \
            f"{flow.EST_PREFIX}/{operation}"

    # -- the daemon ----------------------------------------------------------------------

    def next_contact(self) -> dt.datetime:
        loaded = self.store.load(repair=False)
        return schedule.next_contact(loaded.state, self._now(),
                                     has_identity=loaded.current is not None,
                                     has_candidate=loaded.candidate is not None)

    def run_forever(self, stop: threading.Event) -> None:
        log.info(f"fleetpki-agent running: server {self.config.server_url}, identity in "
                 f"{self.config.data_dir}")
        while not stop.is_set():
            try:
                self.run_session()
                wake = self.next_contact()
            except (KeystoreError, TrustStoreError, OSError) as error:
                log.error(f"session failed: {error}")
                wake = self._now() + self.config.policy.backoff_initial
            now = self._now()
            wake = min(max(wake, now + MIN_SLEEP), now + MAX_SLEEP)
            log.debug(f"next contact {wake:%Y-%m-%d %H:%M:%S}Z")
            while not stop.is_set():
                remaining = (wake - self._now()).total_seconds()
                if remaining <= 0:
                    break
                stop.wait(min(remaining, _SLICE))
        log.info("fleetpki-agent stopped")


class _Run:
    """Performs one session's commands; remembers which files each credential names."""

    def __init__(self, agent: Agent, loaded: Loaded) -> None:
        self.agent = agent
        self.store = agent.store
        self.files: dict[Credential, ClientFiles | None] = {
            credential: loaded.client_files(credential) for credential in Credential}
        self.promoted: Pair | None = None

    def drive(self, session: flow.Session) -> flow.SessionResult:
        try:
            command = next(session)
            while True:
                command = session.send(self.perform(command))
        except StopIteration as stop:
            result: flow.SessionResult = stop.value
            return result
        finally:
            session.close()

    def perform(self, command: Command) -> Reply | None:
        if isinstance(command, HttpRequest):
            log.debug(f"{command.method} {command.path} ({command.credential.value} "
                      "credential)")
            return self.agent.transport.send(command, self.files.get(command.credential))
        if isinstance(command, SaveCandidate):
            identity = command.identity
            chain = identity.chain or build_chain(identity.certificate,
                                                  self.store.trust.intermediates())
            pair = self.store.save_candidate(dataclasses.replace(identity, chain=chain))
            self.files[Credential.candidate] = _client_files(pair)
        elif isinstance(command, PromoteCandidate):
            self.promoted = self.store.promote()
            self.files[Credential.current] = _client_files(self.promoted)
            self.files[Credential.candidate] = None
        elif isinstance(command, DiscardCandidate):
            self.store.discard()
            self.files[Credential.candidate] = None
            log.warning(f"new certificate discarded: {command.reason}")
        elif isinstance(command, SavePendingKey):
            self.store.save_pending_key(command.key)
        return None


def build_chain(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate]
                ) -> tuple[x509.Certificate, ...]:
    """The CA certificates above `leaf`, from those known, issuer by issuer (by name and
    signature), up to a root or the first gap. Roots are left out, as chain files do."""
    chain: list[x509.Certificate] = []
    certificate = leaf
    for _ in range(8):
        issuer = next((c for c in intermediates
                       if c.subject == certificate.issuer and _signed_by(certificate, c)), None)
        if issuer is None or issuer in chain or trust.is_self_signed(issuer):
            break
        chain.append(issuer)
        certificate = issuer
    return tuple(chain)


def run_hook(hook: Hook, pair: Pair, roots_file: os.PathLike[str]) -> bool:
    """Run the post-renewal hook with the new files named in its environment. Its failure
    is logged and changes nothing: the new identity is already current and on disk."""
    environment = {
        **os.environ,
        "FLEETPKI_AGENT_CERT": str(pair.certificate_file),
        "FLEETPKI_AGENT_KEY": str(pair.key_file),
        "FLEETPKI_AGENT_CHAIN": str(pair.chain_file or ""),
        "FLEETPKI_AGENT_FULLCHAIN": str(pair.fullchain_file or pair.certificate_file),
        "FLEETPKI_AGENT_ROOTS": os.fspath(roots_file),
        "FLEETPKI_AGENT_SERIAL": f"{pair.certificate.serial_number:x}",
        "FLEETPKI_AGENT_NOT_AFTER": pair.certificate.not_valid_after_utc.isoformat(),
    }
    name = hook.command[0]
    try:
        # Its output joins ours on stderr (the journal); its own session, so that a
        # timeout kills whatever it started too.
        process = subprocess.Popen(hook.command, env=environment, stdin=subprocess.DEVNULL,
                                   stdout=2, start_new_session=True)
    except (OSError, ValueError, TypeError, subprocess.SubprocessError) as error:
        # OSError: not found, not executable; ValueError: a NUL in an argument (config.py
        # refuses those, this is the second line); either way the identity stands.
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        log.error(f"the renewal hook {name} could not start: {reason}; the new certificate "
                  "is in use regardless")
        return False
    try:
        status = process.wait(timeout=hook.timeout.total_seconds())
    except subprocess.TimeoutExpired:
        kill_session(process.pid)
        process.wait()
        log.error(f"the renewal hook {name} did not finish within "
                  f"{hook.timeout.total_seconds():.0f} s and was killed; the new certificate "
                  "is in use regardless")
        return False
    if status != 0:
        log.error(f"the renewal hook {name} failed (exit status {status}); the new "
                  "certificate is in use regardless")
        return False
    log.info(f"the renewal hook {name} succeeded")
    return True


def kill_session(leader: int) -> None:
    """SIGKILL everything in the session a hook was started in (start_new_session): its
    process group, then, where /proc lists processes, each process still in the session,
    such as a child a job-control shell or setpgid() put in a group of its own.

    Only the hook's own processes are hit: a session is inherited and cannot be joined, so
    its members all descend from the hook (one that began a session of its own, as a daemon
    does, is left alone). The leader is not reaped yet (the caller waits afterwards), so the
    number naming the session cannot be reused meanwhile; each member is signalled through a
    pidfd opened before its session is checked, so a pid just reused is not hit either."""
    os.killpg(leader, signal.SIGKILL)  # the leader, unreaped, keeps its group in being
    signalled: set[int] = set()
    for _ in range(_SESSION_SWEEPS):  # a member may fork between a sweep and its signal
        members = [pid for pid in _pids() if pid not in signalled and _sid(pid) == leader]
        if not members:
            return
        for pid in members:
            _kill_member(pid, leader)
        signalled.update(members)


def _pids() -> list[int]:
    try:
        return [int(entry.name) for entry in durable.entries(Path("/proc"))
                if entry.name.isdigit()]
    except OSError:
        return []  # no /proc: the process group is all that can be reached


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _kill_member(pid: int, leader: int) -> None:
    try:
        handle = os.pidfd_open(pid)
    except OSError:  # gone already, or no pidfd (Linux < 5.3): never signal a bare pid
        return
    try:
        if _sid(pid) == leader:
            signal.pidfd_send_signal(handle, signal.SIGKILL)
    except OSError:
        pass  # it ended meanwhile
    finally:
        os.close(handle)


def _log_messages(result: flow.SessionResult) -> None:
    """The flow's messages, one event each. A session that failed ends with the message
    saying why and what happens next: that one carries the session's priority."""
    last = {flow.Outcome.failed: logging.WARNING,
            flow.Outcome.needs_reprovisioning: logging.ERROR}.get(result.outcome, logging.INFO)
    for number, message in enumerate(result.messages, start=1):
        log.log(last if number == len(result.messages) else logging.INFO, message)
    if not result.messages:
        log.debug(f"session: {result.outcome.value}")


def _client_files(pair: Pair) -> ClientFiles:
    return pair.fullchain_file or pair.certificate_file, pair.key_file


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _describe(reply: Reply) -> str:
    if isinstance(reply, TransportFailure | CertificateRefused):
        return reply.reason
    return f"HTTP {reply.status}"
