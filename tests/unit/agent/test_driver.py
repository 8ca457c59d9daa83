"""The driver with a fake EST server in place of the network: files, trust refresh, hooks,
and the daemon's stop."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.agent import trust
from fleetpki.agent.config import AgentConfig, Hook, load_config
from fleetpki.agent.driver import Agent, build_chain
from fleetpki.agent.flow import Outcome
from fleetpki.agent.key_pairs import KeystoreError
from fleetpki.agent.messages import Credential, HttpRequest, HttpResponse, NewIdentity, Reply
from fleetpki.agent.transport import ClientFiles
from fleetpki.cli import agent_main
from fleetpki.protocols.est.codec import CT_PKCS7, certs_only, encode_base64_body
from support.agent_fakes import (
    Authority,
    FakeCa,
    make_ca,
    make_unreadable,
    renewal_info,
    status,
)


class FakeServer:
    """Answers as fleetpki's EST server would, in memory."""

    def __init__(self, ca: FakeCa, *, offered: tuple[x509.Certificate, ...] = ()) -> None:
        self.ca = ca
        self.offered = offered
        self.log: list[tuple[HttpRequest, ClientFiles | None]] = []

    def send(self, request: HttpRequest, client: ClientFiles | None) -> Reply:
        self.log.append((request, client))
        operation = request.path.rsplit("/", 1)[-1]
        now = dt.datetime.now(dt.UTC)
        if operation == "cacerts":
            certificates = [self.ca.issuing.certificate, self.ca.root.certificate,
                            *self.offered]
            return HttpResponse(200, {"content-type": CT_PKCS7},
                                encode_base64_body(certs_only(certificates)))
        if operation in ("simpleenroll", "simplereenroll"):
            return self.ca.enrollment_reply(request, now=now - dt.timedelta(minutes=1))
        if operation == "renewalinfo" and client is not None:
            presented = x509.load_pem_x509_certificates(client[0].read_bytes())[0]
            return renewal_info(presented, now + dt.timedelta(days=10),
                                now + dt.timedelta(days=12))
        return status(404)

    def operations(self) -> list[str]:
        return [request.path.rsplit("/", 1)[-1] for request, _ in self.log]


@pytest.fixture(scope="module")
def ca() -> FakeCa:
    return FakeCa()


@pytest.fixture
def config(tmp_path: Path, ca: FakeCa) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text('data_dir = "data"\n[server]\nurl = "https://est.invalid"\n'
                    '[device]\ncommon_name = "device-7"\n[policy]\njitter = false\n')
    loaded = load_config(path)
    (loaded.data_dir / "trust").mkdir(parents=True)
    (loaded.data_dir / "trust" / "roots.pem").write_bytes(
        ca.root.certificate.public_bytes(serialization.Encoding.PEM))
    (loaded.data_dir / "bootstrap.secret").write_text("boot-7:secret-7\n")
    return loaded


def hook_recording_to(path: Path, *, exit_status: int = 0, sleep: float = 0) -> Hook:
    script = (f"import json, os, sys, time; time.sleep({sleep!r}); "
              f"open({str(path)!r}, 'w').write(json.dumps({{k: v for k, v in "
              f"os.environ.items() if k.startswith('FLEETPKI_AGENT_')}})); "
              f"sys.exit({exit_status})")
    return Hook((sys.executable, "-c", script), dt.timedelta(seconds=1))


def test_enroll_then_renew_runs_the_hook_with_the_new_files(config: AgentConfig, ca: FakeCa,
                                                            tmp_path: Path) -> None:
    seen = tmp_path / "hook.json"
    agent = Agent(dataclasses.replace(config, hook=hook_recording_to(seen)),
                  transport=FakeServer(ca))
    enrolled = agent.run_session()
    assert enrolled.result.outcome is Outcome.enrolled and enrolled.hook_ok is True
    first = agent.store.load().current
    assert first is not None
    renewed = agent.run_session(force=True)
    assert renewed.result.outcome is Outcome.renewed and renewed.hook_ok is True
    loaded = agent.store.load()
    assert loaded.current is not None and loaded.previous is not None
    assert loaded.previous.certificate == first.certificate
    environment = json.loads(seen.read_text())
    assert environment["FLEETPKI_AGENT_CERT"] == str(loaded.current.certificate_file)
    assert environment["FLEETPKI_AGENT_KEY"] == str(loaded.current.key_file)
    assert environment["FLEETPKI_AGENT_SERIAL"] == f"{loaded.current.certificate.serial_number:x}"
    assert x509.load_pem_x509_certificates(
        Path(environment["FLEETPKI_AGENT_CHAIN"]).read_bytes()) == [ca.issuing.certificate]
    assert agent.store.load_state().serial == environment["FLEETPKI_AGENT_SERIAL"]


def test_a_failing_or_hanging_hook_is_logged_and_the_identity_kept(
        config: AgentConfig, ca: FakeCa, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    for hook, says in ((hook_recording_to(tmp_path / "a.json", exit_status=3), "exit status 3"),
                       (hook_recording_to(tmp_path / "b.json", sleep=30), "did not finish")):
        agent = Agent(dataclasses.replace(config, hook=hook), transport=FakeServer(ca))
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="fleetpki.agent"):
            report = agent.run_session(force=True)
        assert time.monotonic() - started < 10
        assert report.hook_ok is False and report.promoted is not None
        assert agent.store.load().current == report.promoted
        assert says in caplog.text


def test_first_session_fetches_the_ca_certificates_and_builds_the_chain(
        config: AgentConfig, ca: FakeCa) -> None:
    server = FakeServer(ca)
    Agent(config, transport=server).run_session()
    assert server.operations()[:2] == ["cacerts", "simpleenroll"]
    assert server.log[1][0].credential is Credential.none
    current = Agent(config, transport=server).store.load().current
    assert current is not None and current.chain == (ca.issuing.certificate,)
    assert current.fullchain_file is not None
    assert len(x509.load_pem_x509_certificates(current.fullchain_file.read_bytes())) == 2


def test_only_pinned_roots_join_the_trust_store(config: AgentConfig, ca: FakeCa,
                                                caplog: pytest.LogCaptureFixture) -> None:
    planned, rogue = make_ca("Planned Root 2030"), make_ca("Rogue Root")
    pinned = dataclasses.replace(
        config, pinned_roots=frozenset({trust.fingerprint(planned.certificate)}))
    agent = Agent(pinned, transport=FakeServer(ca, offered=(planned.certificate,
                                                            rogue.certificate)))
    with caplog.at_level(logging.INFO, logger="fleetpki.agent"):
        agent.refresh_trust()
    assert agent.store.trust.roots() == [ca.root.certificate, planned.certificate]
    assert f"refused: sha256:{trust.fingerprint(rogue.certificate)}" in caplog.text
    assert agent.store.trust.intermediates() == [ca.issuing.certificate]


def test_without_trust_roots_nothing_is_sent(config: AgentConfig, ca: FakeCa) -> None:
    (config.data_dir / "trust" / "roots.pem").unlink()
    server = FakeServer(ca)
    with pytest.raises(KeystoreError, match="no trust roots"):
        Agent(config, transport=server).run_session()
    assert server.log == []


def test_no_secret_or_key_is_logged(config: AgentConfig, ca: FakeCa,
                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="fleetpki.agent"):
        Agent(config, transport=FakeServer(ca)).run_session()
        Agent(config, transport=FakeServer(ca)).run_session(force=True)
    assert "secret-7" not in caplog.text and "PRIVATE KEY" not in caplog.text
    assert "simpleenroll" in caplog.text


def test_build_chain_follows_signatures_not_just_names(ca: FakeCa) -> None:
    _, leaf = ca.pair()
    impostor = Authority(make_ca("Fake Issuing").key, make_ca("Fake Issuing").certificate)
    assert build_chain(leaf, [impostor.certificate, ca.issuing.certificate,
                              ca.root.certificate]) == (ca.issuing.certificate,)


def test_the_daemon_stops_promptly(config: AgentConfig, ca: FakeCa) -> None:
    agent = Agent(config, transport=FakeServer(ca))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while agent.store.load(repair=False).current is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert agent.store.load(repair=False).current is not None  # it enrolled
    stopped = time.monotonic()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - stopped < 1


# -- an identity that cannot be read ---------------------------------------------------------

def test_an_unreadable_certificate_stops_the_session_and_keeps_the_identity(
        config: AgentConfig, ca: FakeCa, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    Agent(config, transport=FakeServer(ca)).run_session()
    current = Agent(config, transport=FakeServer(ca)).store.load().current
    assert current is not None
    generations = sorted(p.name for p in (config.data_dir / "generations").iterdir())
    make_unreadable(current.certificate_file, monkeypatch)
    server = FakeServer(ca)
    with pytest.raises(KeystoreError, match=r"cannot read .*cert\.pem: Permission denied"):
        Agent(config, transport=server).run_session(force=True)
    assert server.log == []  # no request, so no secret spent and nothing renewed

    monkeypatch.setattr(agent_main, "load_config", lambda _path: config)
    assert agent_main.main(["status"]) == agent_main.EXIT_FAILED
    out = capsys.readouterr().out
    assert "cannot read" in out and "identity: none" not in out
    assert agent_main.main(["status", "--json"]) == agent_main.EXIT_FAILED
    assert "Permission denied" in json.loads(capsys.readouterr().out)["error"]

    monkeypatch.undo()
    current.certificate_file.chmod(0o644)
    assert sorted(p.name for p in (config.data_dir / "generations").iterdir()) == generations
    assert Agent(config, transport=FakeServer(ca)).store.load().current == current


def test_a_bad_pins_file_after_a_renewal_keeps_it_and_still_runs_the_hook(
        config: AgentConfig, ca: FakeCa, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    seen = tmp_path / "hook.json"
    agent = Agent(dataclasses.replace(config, hook=hook_recording_to(seen)),
                  transport=FakeServer(ca))
    agent.run_session()
    (config.data_dir / "trust" / "pins").write_text("not a fingerprint\n")
    seen.unlink()
    with caplog.at_level(logging.INFO, logger="fleetpki.agent"):
        report = agent.run_session(force=True)
    assert report.result.outcome is Outcome.renewed and report.promoted is not None
    assert agent.store.load().current == report.promoted
    assert report.hook_ok is True and seen.exists()
    assert report.trust_error is not None and "pins:1" in report.trust_error
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("could not be refreshed" in message for message in errors)
    assert report.result.messages and report.result.messages[-1] in caplog.text


def test_a_hook_that_cannot_start_is_a_logged_failure_not_a_crash(
        config: AgentConfig, ca: FakeCa, caplog: pytest.LogCaptureFixture) -> None:
    for command in (("/nonexistent/hook",), ("/bin/true", "nul\0byte")):
        hook = Hook(command, dt.timedelta(seconds=1))
        agent = Agent(dataclasses.replace(config, hook=hook), transport=FakeServer(ca))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="fleetpki.agent"):
            report = agent.run_session(force=True)
        assert report.promoted is not None and report.hook_ok is False
        assert "could not start" in caplog.text


def test_a_second_enroll_waiting_on_the_lock_finds_the_first_ones_certificate(
        config: AgentConfig, ca: FakeCa, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer(ca)
    monkeypatch.setattr(agent_main, "load_config", lambda _path: config)
    monkeypatch.setattr(agent_main, "Agent", lambda cfg: Agent(cfg, transport=server))
    store = Agent(config, transport=server).store
    codes: list[int] = []
    second = threading.Thread(target=lambda: codes.append(agent_main.main(["enroll"])))
    with store.lock():  # the first `enroll`, in the middle of its session
        second.start()
        time.sleep(0.5)  # the second has started and waits for the lock
        key, certificate = ca.pair()
        store.save_candidate(NewIdentity(key, certificate, (ca.issuing.certificate,)))
        store.promote()
    second.join(timeout=40)
    assert not second.is_alive() and codes == [0]
    assert capsys.readouterr().out.startswith("already enrolled: certificate ")
    assert "simpleenroll" not in server.operations()
    assert "simplereenroll" not in server.operations()
    current = store.load().current
    assert current is not None and current.certificate == certificate


def test_status_without_an_identity_does_not_say_ok(
        config: AgentConfig, ca: FakeCa, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(agent_main, "load_config", lambda _path: config)
    assert agent_main.main(["status", "--json"]) == agent_main.EXIT_REPROVISION
    report = json.loads(capsys.readouterr().out)
    assert report["identity"] is None and report["health"] == "no-identity"
    assert not report["healthy"]
    Agent(config, transport=FakeServer(ca)).run_session()
    assert agent_main.main(["status"]) == 0
    assert capsys.readouterr().out.startswith("health:       ok\n")


def test_a_bad_state_file_and_a_malformed_secret_are_named_in_the_log_and_in_status(
        config: AgentConfig, ca: FakeCa, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    state_file = config.data_dir / "state.json"
    secret_file = config.data_dir / "bootstrap.secret"
    state_file.write_text('{"failures": "many"}\n')
    secret_file.write_text("secret-7\n")  # the id is missing
    secret_file.chmod(0o600)
    server = FakeServer(ca)
    monkeypatch.setattr(agent_main, "load_config", lambda _path: config)
    monkeypatch.setattr(agent_main, "Agent", lambda cfg: Agent(cfg, transport=server))

    assert agent_main.main(["renew"]) == agent_main.EXIT_REPROVISION
    errors = capsys.readouterr().err.splitlines()
    assert errors[-1].startswith("fleetpki-agent: error: needs re-provisioning")
    assert errors[-1].endswith("no usable factory identity or bootstrap secret")
    warnings = [line for line in errors if line.startswith("fleetpki-agent: warning: ")]
    assert any(f"{state_file} is not valid agent state (failures must be a count)" in line
               and "start afresh" in line for line in warnings)
    assert any(f"{secret_file} is not one line '<id>:<secret>'" in line
               and "provision it again" in line for line in warnings)
    assert not any("secret-7" in line for line in errors)
    assert "simpleenroll" not in server.operations()  # nothing to enroll with
    assert json.loads(state_file.read_text())["failures"] == 1  # rewritten by the session
    assert secret_file.read_text() == "secret-7\n"  # provisioned: never touched

    assert agent_main.main(["status"]) == agent_main.EXIT_REPROVISION
    out = capsys.readouterr().out
    assert f"note:         {secret_file} is not one line" in out and "secret-7" not in out
    assert agent_main.main(["status", "--json"]) == agent_main.EXIT_REPROVISION
    [note] = json.loads(capsys.readouterr().out)["notes"]
    assert note.startswith(f"{secret_file} is not one line")


@pytest.mark.parametrize(("policy", "says"), [
    ({}, "renews it with the expired certificate if the server's grace period allows, and "
         "otherwise it tries to enroll again with the bootstrap secret"),
    ({"grace": False}, "does not renew it ([policy] grace is off): it tries to enroll again with "
                       "the bootstrap secret"),
    ({"grace": False, "factory_fallback": False},
     "does not renew it ([policy] grace is off): the device needs re-provisioning ([policy] "
     "factory_fallback is off)"),
])
def test_enroll_with_an_expired_certificate_says_when_it_expired_and_what_happens_next(
        config: AgentConfig, ca: FakeCa, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], policy: dict[str, bool], says: str) -> None:
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, **policy))
    server = FakeServer(ca)
    monkeypatch.setattr(agent_main, "load_config", lambda _path: config)
    monkeypatch.setattr(agent_main, "Agent", lambda cfg: Agent(cfg, transport=server))
    store = Agent(config, transport=server).store
    expired_at = dt.datetime(2025, 6, 1, 8, 30, tzinfo=dt.UTC)
    key, certificate = ca.pair(cn="device-7", not_before=expired_at - dt.timedelta(days=30),
                               not_after=expired_at)
    store.save_candidate(NewIdentity(key, certificate, (ca.issuing.certificate,)))
    store.promote()

    assert agent_main.main(["enroll"]) == agent_main.EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.out == "" and "already enrolled" not in captured.err
    assert captured.err.splitlines()[-1] == (
        f"fleetpki-agent: certificate {certificate.serial_number:x} for CN=device-7 expired on "
        f"2025-06-01 08:30:00Z, so `enroll` did nothing; `fleetpki-agent renew --force` (or "
        f"the daemon, at its next contact) {says}")
    assert server.log == []  # nothing was sent: enroll only reports
    current = store.load().current
    assert current is not None and current.certificate == certificate


def process_state(pid: int) -> str | None:
    """The /proc state letter of `pid` ('Z' for a zombie), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


@pytest.mark.parametrize("own_group", [False, True], ids=["same-group", "own-group"])
def test_a_hook_killed_at_its_timeout_takes_its_grandchildren_with_it(
        config: AgentConfig, ca: FakeCa, tmp_path: Path, own_group: bool) -> None:
    # The hook starts a sleeping grandchild (in the hook's process group, or in a group of
    # its own as a job-control shell would make it), writes its pid, and outlives its timeout.
    marker = f"grandchild-of-a-hook-{tmp_path.name}"
    pid_file = tmp_path / "grandchild.pid"
    script = (f"import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', "
              f"'import time; time.sleep(60)', {marker!r}], process_group="
              f"{0 if own_group else None}); "
              f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    hook = Hook((sys.executable, "-c", script), dt.timedelta(seconds=2))
    agent = Agent(dataclasses.replace(config, hook=hook), transport=FakeServer(ca))
    report = agent.run_session()
    assert report.promoted is not None and report.hook_ok is False
    grandchild = int(pid_file.read_text())
    try:
        deadline = time.monotonic() + 5  # SIGKILL is prompt; reaping by init may not be
        while process_state(grandchild) not in (None, "Z") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_state(grandchild) in (None, "Z"), "the grandchild survived the hook"
    finally:
        # Clean up after a failure: only the process this test started (its marker).
        with contextlib.suppress(OSError):
            if process_state(grandchild) not in (None, "Z") and marker in Path(
                    f"/proc/{grandchild}/cmdline").read_text():
                os.kill(grandchild, signal.SIGKILL)
