"""The device agent against a real `fleetpki serve` over EST with mutual TLS.

One server for the module, on a port fixed at start so that it can be stopped and started
again at the same address (a restart, an outage). Each test provisions its own devices: a
data directory with the fleet's root, a bootstrap secret or an IDevID made by openssl.
The agent runs in this process (Agent.run_session), as the `fleetpki-agent` command, as a
daemon from a venv holding only the agent's wheel, and in forked children killed with
SIGKILL. Every wait is bounded; every process started is stopped by its PID.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from packaging.markers import Marker

from fleetpki.agent.config import load_config
from fleetpki.agent.driver import Agent
from fleetpki.agent.flow import Outcome
from fleetpki.agent.keystore import Keystore, Loaded
from support.agent_fakes import make_ca
from support.est_home import Credential, Home, make_factory_pki, openssl, prepare_est_home
from support.fleet_server import stop_server
from support.lint import require_tool
from support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
VALIDITY = 6  # seconds: the short-lived profiles, so that an outage outlasts a certificate
PROFILES = f"""
[profiles.brief]
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = {{ default = "{VALIDITY}s", maximum = "{VALIDITY}s", backdate = "0s" }}
subject.attributes.CN = {{ required = true, pattern = "^[A-Za-z0-9-]{{3,64}}$" }}
extensions = {{ key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }}
renewal = {{ window_fraction = 1.0, grace_after_expiry = "1h", info_interval = "1m" }}

[profiles.brief_nograce]
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = {{ default = "{VALIDITY}s", maximum = "{VALIDITY}s", backdate = "0s" }}
subject.attributes.CN = {{ required = true, pattern = "^[A-Za-z0-9-]{{3,64}}$" }}
extensions = {{ key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }}
renewal = {{ window_fraction = 1.0, info_interval = "1m" }}
"""
# Two manufacturers: devices enroll with an IDevID into their manufacturer's profile only.
FACTORY_SERIALS = {"acme": ("renewable", ["AGENT-0001"]),
                   "brevis": ("brief_nograce", ["AGENT-0002"])}
_READY = re.compile(r"serving EST on https://127\.0\.0\.1:(\d+)/")


class EstServer:
    """`fleetpki serve` on a fixed port, which start() and stop() can cycle."""

    def __init__(self, home: Path, log: Path) -> None:
        self.home, self.log = home, log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fleetpki.cli", "--home", str(self.home), "serve",
                 "--listen", f"127.0.0.1:{self.port}", "--revocation-listen", "127.0.0.1:0",
                 "--admin-listen", "127.0.0.1:0",
                 "--workers", "1"], stdout=subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None
        text, deadline = "", time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline and not _READY.search(text):
                if selector.select(timeout=0.2):
                    chunk = os.read(self.process.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    text += chunk.decode(errors="replace")
        if not _READY.search(text):
            self.stop()
            raise RuntimeError(f"fleetpki serve did not start: {text!r} "
                               f"{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_server(process)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclasses.dataclass(frozen=True)
class Fleet:
    home: Home
    server: EstServer
    root_pem: bytes
    factory: Path
    work: Path

    def device(self, name: str, *, profile: str, cn: str | None = None,
               bootstrap: bool = True, factory: str | None = None, policy: str = "",
               extra: str = "", roots: bytes | None = None) -> Device:
        directory = self.work / name
        data = directory / "data"
        (data / "trust").mkdir(parents=True)
        (data / "trust" / "roots.pem").write_bytes(roots or self.root_pem)
        credential = self.home.credential(profile) if bootstrap else None
        if credential is not None:
            secret = data / "bootstrap.secret"
            secret.write_text(f"{credential.id}:{credential.secret}\n")
            secret.chmod(0o600)
        if factory is not None:
            (data / "factory").mkdir()
            maker = next(m for m, (_, serials) in FACTORY_SERIALS.items() if factory in serials)
            for suffix, target in (("pem", "idevid.pem"), ("key", "idevid.key")):
                (data / "factory" / target).write_bytes(
                    (self.factory / maker / f"{factory}.{suffix}").read_bytes())
        (directory / "agent.toml").write_text(
            f'data_dir = "data"\n[server]\nurl = "{self.server.url}"\nlabel = "{profile}"\n'
            f'connect_timeout = "2s"\nread_timeout = "10s"\n'
            f'[device]\ncommon_name = "{cn or name}"\n'
            f"[policy]\n{policy}\n{extra}")
        return Device(directory, credential)


@dataclasses.dataclass(frozen=True)
class Device:
    directory: Path
    credential: Credential | None

    @property
    def config_file(self) -> Path:
        return self.directory / "agent.toml"

    def session(self, *, force: bool = False) -> Outcome:
        return Agent(load_config(self.config_file)).run_session(force=force).result.outcome

    def loaded(self) -> Loaded:
        return Keystore(self.directory / "data").load(repair=False)

    def current(self) -> x509.Certificate:
        pair = self.loaded().current
        assert pair is not None, "the device has no current certificate"
        return pair.certificate

    def cli(self, *args: str, agent: str | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
        command = [agent] if agent else [sys.executable, "-m", "fleetpki.cli.agent_main"]
        return subprocess.run([*command, "-c", str(self.config_file), *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def fleet(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("agent")
    home = prepare_est_home(initialised_home_template, base / "home")
    with (home.path / "profiles.toml").open("a") as handle:
        handle.write(PROFILES)
    factory = base / "factory"
    for maker, (profile, serials) in FACTORY_SERIALS.items():
        maker_ca = make_factory_pki(factory / maker, serials, maker=maker)
        allow = factory / f"{maker}-allowed.txt"
        allow.write_text("\n".join(serials) + "\n")
        home.cli("manufacturers", "add", maker, "--ca", str(maker_ca), "--profile", profile,
                 "--allow-list", str(allow))
    root_pem = home.cli("ca", "export-chain", "root").encode()
    server = EstServer(home.path, base / "serve.log")
    server.start()
    try:
        yield Fleet(home, server, root_pem, factory, base / "devices")
    finally:
        server.stop()


def chain_verifies(fleet: Fleet, leaf: Path, chain: Path) -> None:
    """openssl, not fleetpki, judges the files the agent wrote."""
    root = fleet.work / "root.pem"
    root.write_bytes(fleet.root_pem)
    out = openssl("verify", "-CAfile", str(root), "-untrusted", str(chain), "-purpose",
                  "sslclient", str(leaf))
    assert b": OK" in out


# -- enrollment ----------------------------------------------------------------------------

def test_enroll_with_a_bootstrap_secret_and_report_status(fleet: Fleet) -> None:
    device = fleet.device("boot-0001", profile="renewable")
    enrolled = device.cli("enroll")
    assert enrolled.returncode == 0, enrolled.stderr
    assert enrolled.stdout.startswith("enrolled: certificate ")
    loaded = device.loaded()
    assert loaded.current is not None and loaded.current.chain_file is not None
    chain_verifies(fleet, loaded.current.certificate_file, loaded.current.chain_file)
    assert device.credential is not None
    assert device.credential.secret not in enrolled.stderr + enrolled.stdout
    assert "PRIVATE KEY" not in enrolled.stderr

    status = device.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["healthy"] and report["health"] == "ok" and report["last_error"] is None
    assert report["identity"]["serial"] == f"{loaded.current.certificate.serial_number:x}"
    assert report["identity"]["subject"] == "CN=boot-0001"
    assert report["window"]["source"] == "server"  # renewalinfo answered
    assert report["next_renewal"] is not None and report["bootstrap_secret"] is True
    assert device.credential.secret not in status.stdout
    again = device.cli("enroll")
    assert again.returncode == 0 and again.stdout.startswith("already enrolled")


def test_enroll_with_the_factory_identity(fleet: Fleet) -> None:
    device = fleet.device("AGENT-0001", profile="renewable", bootstrap=False,
                          factory="AGENT-0001")
    assert device.session() is Outcome.enrolled
    certificate = device.current()
    assert certificate.subject.rfc4514_string() == "CN=AGENT-0001"
    assert certificate.issuer != x509.load_pem_x509_certificate(
        (fleet.factory / "acme" / "maker-ca.pem").read_bytes()).subject
    assert "idevid:acme:AGENT-0001" in fleet.home.cli("audit", "list", "--limit", "100000")


def test_a_server_not_chaining_to_the_trust_store_is_refused(fleet: Fleet) -> None:
    stranger = make_ca("Somebody Else's Root").certificate.public_bytes(
        serialization.Encoding.PEM)
    device = fleet.device("wary-0001", profile="renewable", roots=stranger)
    refused = device.cli("enroll")
    assert refused.returncode == 1
    assert "not trusted" in refused.stderr and device.loaded().current is None
    assert device.loaded().state.last_error is not None
    # The one-time secret never reached the server: with the right root it still works.
    (device.directory / "data" / "trust" / "roots.pem").write_bytes(fleet.root_pem)
    assert device.cli("enroll").returncode == 0


# -- renewal ---------------------------------------------------------------------------------

def test_renewal_runs_the_hook_and_keeps_the_previous_pair(fleet: Fleet) -> None:
    seen = fleet.work / "hook-seen.json"
    hook = (f'[hook]\ncommand = ["{sys.executable}", "-c", "import json, os; '
            f"open('{seen}', 'w').write(json.dumps(dict(os.environ)))\"]\ntimeout = \"20s\"\n")
    device = fleet.device("renew-0001", profile="renewable", extra=hook)
    assert device.session() is Outcome.enrolled
    first = device.current()
    renewed = device.cli("renew", "--force")
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.startswith("renewed: ")
    loaded = device.loaded()
    assert loaded.current is not None and loaded.previous is not None
    assert loaded.previous.certificate == first
    assert loaded.current.certificate.subject == first.subject
    assert loaded.current.certificate.serial_number != first.serial_number
    environment = json.loads(seen.read_text())
    assert environment["FLEETPKI_AGENT_CERT"] == str(loaded.current.certificate_file)
    chain_verifies(fleet, Path(environment["FLEETPKI_AGENT_CERT"]),
                   Path(environment["FLEETPKI_AGENT_CHAIN"]))
    idle = device.cli("renew")  # the window is ahead: nothing to do
    assert idle.returncode == 0 and idle.stdout.startswith("nothing to do")


def test_sigkill_at_random_points_never_loses_the_identity(fleet: Fleet) -> None:
    """Children forked from this process renew in a loop and are killed at random instants;
    after each kill the identity directory must load a current key and certificate that
    match. Forking skips the interpreter's start-up, so the kills land in sessions."""
    device = fleet.device("crash-0001", profile="renewable")
    assert device.session() is Outcome.enrolled
    config = load_config(device.config_file)
    serials = {device.current().serial_number}
    rng = random.Random()
    kills = 0
    # At least 30 kills and 10 renewals between them (more kills on a loaded machine), bounded.
    while kills < 30 or len(serials) < 10:
        assert kills < 100, f"only {len(serials)} renewals in {kills} kills"
        kills += 1
        pid = os.fork()
        if pid == 0:  # the child: renew until killed
            try:
                agent = Agent(config)
                while True:
                    agent.run_session(force=True)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.02, 0.35))
        os.kill(pid, signal.SIGKILL)
        _, code = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(code), f"the renewing child ended by itself (status {code})"
        loaded = Keystore(device.directory / "data").load()  # recovers, as the agent would
        assert loaded.current is not None, "no current identity after a kill"
        public = loaded.current.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert public == loaded.current.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        on_disk = x509.load_pem_x509_certificate(loaded.current.certificate_file.read_bytes())
        assert on_disk == loaded.current.certificate
        serials.add(loaded.current.certificate.serial_number)
    assert device.session(force=True) is Outcome.renewed  # and the agent carries on


# -- the agent installed alone ---------------------------------------------------------------

def _uv() -> str:
    """uv on PATH, or the one scripts/bootstrap installed with pip (`python3 -m uv`), whose
    script directory need not be on PATH."""
    if shutil.which("uv"):
        return require_tool("uv")
    found = subprocess.run(["python3", "-c", "import uv; print(uv.find_uv_bin())"],
                           capture_output=True, text=True, timeout=30, check=False)
    if found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    return require_tool("uv")  # fails, saying what to install


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """packaging/agent built into a wheel and installed, with only its dependencies at the
    versions uv.lock pins, into a fresh venv. Not --offline: `uv sync` fills uv's cache with
    the locked wheels but not with the index pages an install resolves against, so on a
    machine set up by scripts/bootstrap alone an offline install finds nothing."""
    uv = _uv()
    base = tmp_path_factory.mktemp("agent-wheel")
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    environment.pop("PYTHONPATH", None)
    environment.pop("VIRTUAL_ENV", None)

    def run(*args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False,
                              env=environment, cwd=REPO)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    run(uv, "build", "--wheel", "--python", sys.executable, "--out-dir",
        str(base / "dist"), str(REPO / "packaging" / "agent"))
    [wheel] = (base / "dist").glob("fleetpki_agent-*.whl")
    venv = base / "venv"
    run(uv, "venv", "--offline", "--python", sys.executable, str(venv))
    pins = [f"{name}=={version}" for name, version in dependency_closure(wheel).items()]
    run(uv, "pip", "install", "--no-deps", "--python", str(venv / "bin/python"),
        str(wheel), *pins)
    assert "All installed packages are compatible" in run(
        uv, "pip", "check", "--offline", "--python", str(venv / "bin/python"))
    return venv


def dependency_closure(wheel: Path) -> dict[str, str]:
    """The wheel's Requires-Dist and theirs, at the versions uv.lock pins."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(n).decode() for n in archive.namelist()
                        if n.endswith(".dist-info/METADATA"))
    wanted = [re.match(r"[A-Za-z0-9._-]+", line.split(":", 1)[1].strip()).group(0)  # type: ignore[union-attr]
              for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    lock = {p["name"]: p for p in tomllib.loads((REPO / "uv.lock").read_text())["package"]}
    closure: dict[str, str] = {}
    while wanted:
        name = wanted.pop().lower().replace("_", "-")
        if name in closure:
            continue
        package = lock[name]
        closure[name] = package["version"]
        wanted += [d["name"] for d in package.get("dependencies", [])
                   if "marker" not in d or Marker(d["marker"]).evaluate()]
    return closure


def test_the_agent_wheel_installs_alone_and_enrolls(fleet: Fleet, agent_venv: Path) -> None:
    python = str(agent_venv / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "import importlib.util, json, fleetpki; print(json.dumps({'file': "
         "fleetpki.__file__, 'found': [m for m in ('starlette', 'sqlalchemy', 'click', "
         "'rich', 'uvicorn', 'pyasn1', 'fleetpki.ca', 'fleetpki.ra') "
         "if importlib.util.find_spec(m)]}))"],
        capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(probe.stdout)
    assert found["found"] == [] and found["file"].startswith(str(agent_venv))
    agent = str(agent_venv / "bin" / "fleetpki-agent")
    helped = subprocess.run([agent, "--help"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert helped.returncode == 0 and "enroll" in helped.stdout and "status" in helped.stdout
    device = fleet.device("wheel-0001", profile="renewable")
    enrolled = device.cli("enroll", agent=agent)
    assert enrolled.returncode == 0, enrolled.stderr
    assert device.current().subject.rfc4514_string() == "CN=wheel-0001"


# -- the daemon through a restart and an outage ----------------------------------------------

def test_daemon_survives_a_restart_and_an_outage_longer_than_the_certificate(
        fleet: Fleet, agent_venv: Path) -> None:
    """A daemon renewing a short-lived certificate keeps running while the server is down
    past the certificate's expiry, and renews with the expired certificate (the profile's
    grace) once it is back. A second device, whose profile has no grace, falls back to its
    factory identity. The daemon's resident memory is measured meanwhile."""
    fast = 'backoff_initial = "1s"\nbackoff_max = "2s"\n'
    graced = fleet.device("outage-0001", profile="brief", policy=fast)
    nograce = fleet.device("AGENT-0002", profile="brief_nograce", factory="AGENT-0002",
                           policy=fast)
    log = graced.directory / "daemon.log"
    with log.open("w") as stderr:
        daemon = subprocess.Popen([str(agent_venv / "bin" / "fleetpki-agent"), "-c",
                                   str(graced.config_file), "run"], stderr=stderr,
                                  stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: graced.loaded().previous is not None, 15, "a first daemon renewal")
        assert nograce.session() is Outcome.enrolled
        rss_kib = resident_kib(daemon.pid)

        fleet.server.stop()
        outage_started = time.monotonic()
        expiries = [graced.current().not_valid_after_utc, nograce.current().not_valid_after_utc]
        wait_for(lambda: dt.datetime.now(dt.UTC) > max(expiries) + dt.timedelta(seconds=1),
                 VALIDITY + 5, "both certificates to expire while the server is down")
        assert daemon.poll() is None, "the daemon died during the outage"
        expired_serial = graced.current().serial_number
        assert dt.datetime.now(dt.UTC) > graced.current().not_valid_after_utc
        fleet.server.start()
        assert time.monotonic() - outage_started > VALIDITY / 2

        # Without grace: renewal refused, enrolled again with the IDevID.
        assert nograce.session() is Outcome.enrolled
        assert nograce.current().not_valid_after_utc > dt.datetime.now(dt.UTC)
        assert nograce.loaded().previous is not None

        # With grace: the daemon renews with its expired certificate.
        wait_for(lambda: graced.current().serial_number != expired_serial
                 and graced.current().not_valid_after_utc > dt.datetime.now(dt.UTC),
                 20, "the daemon to renew after the outage")
        rss_kib = max(rss_kib, resident_kib(daemon.pid))
        assert rss_kib < 40 * 1024, f"daemon resident memory {rss_kib} KiB"
        print(f"\nfleetpki-agent run: VmRSS {rss_kib} KiB")

        stopped = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        assert time.monotonic() - stopped < 10
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)
        if fleet.server.process is None:
            fleet.server.start()
    lines = log.read_text().splitlines()
    assert lines and all(re.match(r"<[0-7]>\S", line) for line in lines), lines[:5]
    text = "\n".join(lines)
    assert re.search(r"^<4>renewal failed: .*refused the connection", text, re.MULTILINE)
    assert "SIGTERM received" in text and lines[-1] == "<6>fleetpki-agent stopped"
    assert graced.credential is not None and graced.credential.secret not in text
    assert "PRIVATE KEY" not in text
    audit = fleet.home.cli("audit", "list", "--limit", "100000")
    assert "idevid:brevis:AGENT-0002" in audit


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def resident_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))
