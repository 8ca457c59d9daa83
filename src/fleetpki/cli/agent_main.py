"""`fleetpki-agent`: the device agent's command line (argparse: the agent installs alone).

    fleetpki-agent [--config FILE] enroll          first enrollment (now, whatever the state)
    fleetpki-agent [--config FILE] renew [--force] one session; --force renews now
    fleetpki-agent [--config FILE] status [--json] identity, expiry, next renewal, last error
    fleetpki-agent [--config FILE] run             the daemon (systemd: docs/agent.md)
    fleetpki-agent [--config FILE] trust show      trust roots and pinned future roots

Logs are one line per event on stderr. Under systemd (JOURNAL_STREAM set) or in `run`, each
line starts with a syslog priority, `<3>` error to `<7>` debug, which journald reads as the
entry's priority (SyslogLevelPrefix=). Nothing secret is logged: no key, no bootstrap secret.

Exit status: 0 done, 1 failed (try again later, or read the message), 2 the configuration or
the command line is wrong, 3 the device needs re-provisioning (or `status`: no usable
identity; 1 when its files are there but cannot be read), 75 the enrollment is held for
approval (EX_TEMPFAIL).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cryptography import x509

from fleetpki import __version__
from fleetpki.agent import schedule, trust
from fleetpki.agent.config import DEFAULT_PATH, AgentConfig, AgentConfigError, load_config
from fleetpki.agent.driver import Agent, SessionReport, utc_now
from fleetpki.agent.flow import Outcome
from fleetpki.agent.key_pairs import KeystoreError, Pair
from fleetpki.agent.keystore import Keystore, Loaded
from fleetpki.agent.state import Health
from fleetpki.agent.trust_store import TrustStoreError

EXIT_FAILED, EXIT_CONFIG, EXIT_REPROVISION, EXIT_PENDING = 1, 2, 3, 75
_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
               logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """`<N>message` on one line: systemd's SyslogLevelPrefix= turns N into the priority."""

    def __init__(self, prefixed: bool) -> None:
        super().__init__()
        self.prefixed = prefixed

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())  # one event, one line
        if self.prefixed:
            return f"<{_PRIORITIES.get(record.levelno, 6)}>{text}"
        return f"fleetpki-agent: {record.levelname.lower()}: {text}"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    _configure_logging(args)
    try:
        config = load_config(args.config)
        result: int = args.handler(config, args)
        return result
    except AgentConfigError as error:
        print(f"fleetpki-agent: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (KeystoreError, TrustStoreError) as error:
        print(f"fleetpki-agent: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"fleetpki-agent: {error.filename or 'I/O'}: {error.strerror or error}; check "
              "the data directory's permissions and free space", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetpki-agent", description="Enrolls this device over EST, renews its "
        "certificate in time, and never loses a working identity.")
    parser.add_argument("--version", action="version", version=f"fleetpki-agent {__version__}")
    parser.add_argument("-c", "--config", type=Path, default=Path(os.environ.get(
        "FLEETPKI_AGENT_CONFIG", str(DEFAULT_PATH))), help=f"configuration file (default: "
        f"$FLEETPKI_AGENT_CONFIG or {DEFAULT_PATH})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    enroll = commands.add_parser("enroll", help="get a first certificate now")
    enroll.set_defaults(handler=_enroll)
    renew = commands.add_parser("renew", help="run one session: renew if it is time")
    renew.add_argument("--force", action="store_true", help="renew now, whatever the window")
    renew.set_defaults(handler=_renew)
    status = commands.add_parser("status", help="identity, expiry, next renewal, last error")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(handler=_status)
    run = commands.add_parser("run", help="run as a daemon until SIGTERM")
    run.set_defaults(handler=_run)
    trust_command = commands.add_parser("trust", help="the trust store")
    trust_actions = trust_command.add_subparsers(dest="action", metavar="ACTION", required=True)
    trust_actions.add_parser("show", help="trust roots and pinned future roots").set_defaults(
        handler=_trust_show)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """The daemon logs every event from info up; the one-shot commands print their outcome
    on stdout and log warnings and errors only (everything with --verbose)."""
    daemon = args.command == "run"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(daemon or "JOURNAL_STREAM" in os.environ))
    logger = logging.getLogger("fleetpki.agent")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO if daemon
                    else logging.WARNING)
    logger.propagate = False


# -- commands ------------------------------------------------------------------------------

def _enroll(config: AgentConfig, args: argparse.Namespace) -> int:
    agent = Agent(config)
    report = agent.enroll()  # decides "already enrolled" under the lock
    if report is None:
        loaded = agent.store.load(repair=False)
        current = loaded.current
        if current is not None and utc_now() >= current.certificate.not_valid_after_utc:
            print(f"fleetpki-agent: {_after_expiry(config, loaded, current)}", file=sys.stderr)
            return EXIT_FAILED
        print(f"already enrolled: {_describe(current) if current else 'no certificate'}; "
              "`fleetpki-agent renew --force` gets a new certificate")
        return 0
    return _outcome(agent, report)


def _after_expiry(config: AgentConfig, loaded: Loaded, current: Pair) -> str:
    """Why `enroll` did nothing for a device whose certificate expired, and what a session
    does about it, as flow.py decides it: with `grace`, simplereenroll presenting the
    expired certificate (the server's profile decides how long after expiry it accepts it);
    without grace, or when that is refused, simpleenroll with the factory identity, then the
    bootstrap secret, if `factory_fallback` allows; else the device needs re-provisioning."""
    policy = config.policy
    fallbacks = [name for name, present in (("the factory identity", loaded.factory),
                                            ("the bootstrap secret", loaded.bootstrap))
                 if present is not None]
    if not policy.factory_fallback:
        fallback = "the device needs re-provisioning ([policy] factory_fallback is off)"
    elif not fallbacks:
        fallback = ("the device needs re-provisioning (it has no usable factory identity or "
                    "bootstrap secret)")
    else:
        fallback = f"it tries to enroll again with {', then '.join(fallbacks)}"
    plan = (f"renews it with the expired certificate if the server's grace period allows, "
            f"and otherwise {fallback}" if policy.grace
            else f"does not renew it ([policy] grace is off): {fallback}")
    return (f"certificate {_serial(current)} for {current.certificate.subject.rfc4514_string()}"
            f" expired on {_time(current.certificate.not_valid_after_utc)}, so `enroll` did "
            f"nothing; `fleetpki-agent renew --force` (or the daemon, at its next contact) "
            f"{plan}")


def _renew(config: AgentConfig, args: argparse.Namespace) -> int:
    agent = Agent(config)
    return _outcome(agent, agent.run_session(force=args.force))


def _outcome(agent: Agent, report: SessionReport) -> int:
    """Print a session's outcome; its exit status."""
    result = report.result
    current = agent.store.load(repair=False).current
    if result.outcome in (Outcome.renewed, Outcome.enrolled):
        print(f"{result.outcome.value}: {_describe(current) if current else 'no certificate'}")
        return 0
    if result.outcome in (Outcome.idle, Outcome.advised):
        when = result.state.renew_at
        print(f"nothing to do: {_describe(current) if current else 'no certificate'}"
              + (f"; renewal after {_time(when)}" if when else ""))
        return 0
    if result.outcome is Outcome.pending:
        print(f"held for approval by the CA's operator; retrying after "
              f"{_time(result.state.next_attempt)}", file=sys.stderr)
        return EXIT_PENDING
    # A failure was logged (warning or error) with what happens next: no second line.
    if result.outcome is Outcome.needs_reprovisioning:
        return EXIT_REPROVISION
    return EXIT_FAILED


def _run(config: AgentConfig, args: argparse.Namespace) -> int:
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logging.getLogger("fleetpki.agent").info(
            f"{signal.Signals(signum).name} received: stopping after the current step")
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    Agent(config).run_forever(stop)
    return 0


def _status(config: AgentConfig, args: argparse.Namespace) -> int:
    store = Keystore(config.data_dir)
    try:
        loaded = store.load(repair=False)
    except KeystoreError as error:
        # An identity that is there but cannot be read is not "none": say what is wrong.
        if args.json:
            print(json.dumps({"healthy": False, "health": "unreadable", "error": str(error),
                              "data_dir": str(config.data_dir)}, indent=2, sort_keys=True))
        else:
            print(f"health:   unreadable\nidentity: {error}")
        return EXIT_FAILED
    report = status_report(config, store, loaded)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_status(report)
    return 0 if report["healthy"] else EXIT_REPROVISION


def status_report(config: AgentConfig, store: Keystore, loaded: Loaded) -> dict[str, Any]:
    """What `status` shows, as plain data (the JSON form is this, as it is)."""
    state, now = loaded.state, utc_now()
    current = loaded.current
    window = state.window if current is not None and state.serial == _serial(current) else None
    renew_at = state.renew_at if window is not None else None
    health = state.health
    if health == Health.ok and current is None:
        health = "no-identity"  # "ok" beside "identity: none" would contradict itself
    elif health == Health.ok and current is not None \
            and now >= current.certificate.not_valid_after_utc:
        health = "expired"
    return {
        "healthy": health == Health.ok,
        "health": health,
        "identity": _pair_report(current, now),
        "candidate": _pair_report(loaded.candidate, now),
        "previous": _pair_report(loaded.previous, now),
        "next_renewal": _iso(renew_at),
        "window": None if window is None else {
            "start": _iso(window.start), "end": _iso(window.end), "source": window.source,
            "explanation": window.explanation},
        "next_contact": _iso(schedule.next_contact(
            state, now, has_identity=current is not None,
            has_candidate=loaded.candidate is not None)),
        "certificate_status": state.certificate_status,
        "last_renewal": _iso(state.last_renewal_at),
        "last_error": state.last_error,
        "last_error_at": _iso(state.last_error_at),
        "failures": state.failures,
        "pending_since": _iso(state.pending_since),
        "factory_identity": loaded.factory is not None,
        "bootstrap_secret": loaded.bootstrap is not None,  # whether one exists, never what
        "server": config.server_url,
        "data_dir": str(config.data_dir),
        # What loading found: a state file or a bootstrap secret that cannot be used, a
        # fallback to the previous identity. A session logs these as warnings; status must
        # show them too, or "bootstrap_secret: false" would not say which file to fix.
        "notes": list(loaded.notes),
    }


def _pair_report(pair: Pair | None, now: dt.datetime) -> dict[str, Any] | None:
    if pair is None:
        return None
    certificate = pair.certificate
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": _serial(pair),
        "not_before": _iso(certificate.not_valid_before_utc),
        "not_after": _iso(certificate.not_valid_after_utc),
        "expired": now >= certificate.not_valid_after_utc,
        "certificate_file": str(pair.certificate_file),
        "key_file": str(pair.key_file),
    }


def _print_status(report: dict[str, Any]) -> None:
    identity = report["identity"]
    lines = [("health", report["health"])]
    if identity is None:
        lines.append(("identity", "none (run `fleetpki-agent enroll`)"))
    else:
        lines += [("identity", f"{identity['subject']} (serial {identity['serial']})"),
                  ("issuer", identity["issuer"]),
                  ("expires", f"{identity['not_after']}"
                              + (" (EXPIRED)" if identity["expired"] else ""))]
    window = report["window"]
    if report["next_renewal"]:
        source = f", window from the {'server' if window['source'] == 'server' else 'policy'}"
        lines.append(("next renewal", f"{report['next_renewal']}{source}"))
        if window["explanation"]:
            lines.append(("why", window["explanation"]))
    lines.append(("next contact", report["next_contact"]))
    if report["candidate"]:
        lines.append(("candidate", f"serial {report['candidate']['serial']} (not yet "
                                   "confirmed)"))
    if report["pending_since"]:
        lines.append(("pending since", report["pending_since"]))
    lines.append(("last renewal", report["last_renewal"] or "never"))
    error = report["last_error"]
    lines.append(("last error", f"{error} ({report['last_error_at']})" if error else "none"))
    lines += [("note", note) for note in report["notes"]]
    width = max(len(name) for name, _ in lines) + 1
    for name, value in lines:
        print(f"{name + ':':<{width}} {value}")


def _trust_show(config: AgentConfig, args: argparse.Namespace) -> int:
    store = Keystore(config.data_dir).trust
    roots = store.roots()
    present = {trust.fingerprint(root) for root in roots}
    print(f"trust roots ({store.roots_file}):")
    for root in roots:
        print(f"  {root.subject.rfc4514_string()}  sha256:{trust.fingerprint(root)}  "
              f"until {_time(root.not_valid_after_utc)}")
    if not roots:
        print("  none: provision the fleet's root CA certificate there")
    pins = sorted(store.pins() | config.pinned_roots)
    print("pinned future roots:")
    for pin in pins:
        print(f"  sha256:{pin}  {'installed' if pin in present else 'not yet offered'}")
    if not pins:
        print("  none")
    return 0


def _describe(pair: Pair) -> str:
    return (f"certificate {_serial(pair)} for {pair.certificate.subject.rfc4514_string()}, "
            f"valid until {_time(pair.certificate.not_valid_after_utc)}")


def _serial(item: Pair | x509.Certificate) -> str:
    certificate = item.certificate if isinstance(item, Pair) else item
    return f"{certificate.serial_number:x}"


def _time(moment: dt.datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}Z"


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).replace(
        microsecond=0).isoformat()


if __name__ == "__main__":
    sys.exit(main())
