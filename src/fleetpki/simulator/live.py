"""A smaller fleet against a live server: real agents, real HTTPS, real time.

The in-process simulator proves the policy over years in minutes; this proves the same agent
over the network, against a `fleetpki serve` (or any EST server with the same profile) that
runs as it will in production. Each virtual device is a complete `fleetpki-agent` (driver,
key store on disk, HTTPS transport with mutual TLS) in its own data directory; a pool of
threads wakes each device when its agent asks to be woken, and a device misses a wake-up
with the given probability. Certificate lifetimes are the server's profile's: give it a
profile with minutes-long certificates to see several renewals in a short run.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import heapq
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from fleetpki.agent.config import AgentConfig
from fleetpki.agent.driver import Agent
from fleetpki.agent.flow import Enrollee
from fleetpki.agent.key_pairs import KeystoreError
from fleetpki.agent.keystore import Keystore
from fleetpki.agent.policy import RenewalPolicy
from fleetpki.agent.state import Health
from fleetpki.agent.trust_store import TrustStoreError

# The longest a device sleeps between wake-ups, however far its next renewal: a live run is
# short, and a device that slept through it would say nothing about the server.
_MAX_SLEEP = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class LiveFleet:
    server_url: str
    roots_pem: bytes
    devices: int
    duration: dt.timedelta
    bootstrap: tuple[str, str]  # a group credential with a use per device
    label: str | None = None
    name_prefix: str = "live-"
    missed_wakeups: float = 0.0
    threads: int = 8
    seed: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class LiveResult:
    devices: int
    sessions: int
    outcomes: dict[str, int]
    with_valid_certificate: int  # at the end
    dark: int  # needs re-provisioning at the end
    certificates_issued: int  # distinct certificates the devices ended up holding, summed
    session_seconds_p50: float
    session_seconds_p99: float
    seconds: float
    # The last error of each device without a valid certificate at the end, counted.
    last_errors: dict[str, int] = dataclasses.field(default_factory=dict)


def run_live(fleet: LiveFleet, directory: Path,
             progress: Callable[[float], None] | None = None) -> LiveResult:
    agents = [_agent(fleet, directory / f"device-{index:05d}", index)
              for index in range(fleet.devices)]
    rng = random.Random(fleet.seed)
    began = time.monotonic()
    deadline = began + fleet.duration.total_seconds()
    queue = [(began + rng.random() * 2.0, index) for index in range(fleet.devices)]
    heapq.heapify(queue)
    lock = threading.Lock()
    outcomes: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    issued: set[tuple[int, int]] = set()

    def work() -> None:
        while True:
            with lock:
                if not queue or queue[0][0] >= deadline:
                    return
                pause = queue[0][0] - time.monotonic()
                if pause <= 0:
                    _, index = heapq.heappop(queue)
                    missed = rng.random() < fleet.missed_wakeups
            if pause > 0:
                time.sleep(min(pause, 0.5))
                continue
            agent = agents[index]
            if not missed:
                started = time.monotonic()
                try:
                    report = agent.run_session()
                except (KeystoreError, TrustStoreError, OSError) as error:
                    with lock:
                        outcomes[f"error: {type(error).__name__}"] += 1
                    report = None
                with lock:
                    latencies.append(time.monotonic() - started)
                    if report is not None:
                        outcomes[report.result.outcome.value] += 1
                        if report.result.new_certificate is not None:
                            issued.add((index,
                                        report.result.new_certificate.serial_number))
            delay = (agent.next_contact() - dt.datetime.now(dt.UTC)).total_seconds()
            with lock:
                heapq.heappush(queue, (time.monotonic() + min(max(delay, 1.0), _MAX_SLEEP),
                                       index))

    threads = [threading.Thread(target=work, name=f"live-{n}", daemon=True)
               for n in range(max(1, min(fleet.threads, fleet.devices)))]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if progress is not None:
            progress(min(1.0, (time.monotonic() - began) / fleet.duration.total_seconds()))
        for thread in threads:
            thread.join(timeout=0.5)
    if progress is not None:
        progress(1.0)
    return _result(fleet, agents, outcomes, latencies, len(issued),
                   time.monotonic() - began)


def _agent(fleet: LiveFleet, directory: Path, index: int) -> Agent:
    (directory / "trust").mkdir(parents=True, mode=0o700)
    directory.chmod(0o700)
    (directory / "trust" / "roots.pem").write_bytes(fleet.roots_pem)
    secret = directory / "bootstrap.secret"
    secret.touch(mode=0o600)
    secret.write_text(":".join(fleet.bootstrap), encoding="utf-8")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"{fleet.name_prefix}{index:05d}")])
    config = AgentConfig(
        source=directory / "generated", data_dir=directory, server_url=fleet.server_url,
        connect_timeout=dt.timedelta(seconds=10), read_timeout=dt.timedelta(seconds=30),
        enrollee=Enrollee(name, label=fleet.label), policy=RenewalPolicy())
    return Agent(config, rng=random.Random(fleet.seed * 100_003 + index))


def _result(fleet: LiveFleet, agents: list[Agent], outcomes: collections.Counter[str],
            latencies: list[float], issued: int, seconds: float) -> LiveResult:
    now = dt.datetime.now(dt.UTC)
    valid = dark = 0
    errors: collections.Counter[str] = collections.Counter()
    for agent in agents:
        loaded = Keystore(agent.config.data_dir).load(repair=False)
        current = loaded.current.certificate if loaded.current else None
        if current is not None and current.not_valid_before_utc <= now \
                < current.not_valid_after_utc:
            valid += 1
        elif loaded.state.last_error:
            errors[loaded.state.last_error[:200]] += 1
        if loaded.state.health == Health.needs_reprovisioning:
            dark += 1
    ordered = sorted(latencies) or [0.0]
    return LiveResult(
        devices=fleet.devices, sessions=len(latencies), outcomes=dict(outcomes),
        with_valid_certificate=valid, dark=dark, certificates_issued=issued,
        session_seconds_p50=ordered[len(ordered) // 2],
        session_seconds_p99=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        seconds=seconds, last_errors=dict(errors))
