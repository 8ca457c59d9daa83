"""The simulation loop: devices wake at their connectivity windows, in simulated time order.

A device is only visited when its agent wants something (schedule.next_contact) and it has
a window: a fleet that renews every two months costs a few sessions per device and
certificate, not one per device and day. Everything random comes from the scenario's seed,
and events are ordered by (time, device), so a run replays exactly.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import heapq
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography import x509

from fleetpki.agent.flow import Enrollee, Outcome, SessionResult, session
from fleetpki.agent.messages import HttpRequest
from fleetpki.agent.policy import RenewalPolicy
from fleetpki.agent.schedule import next_contact
from fleetpki.agent.state import Health
from fleetpki.simulator.connectivity import Connectivity
from fleetpki.simulator.device import VirtualDevice
from fleetpki.simulator.load import Load, LoadSummary
from fleetpki.simulator.scenario import DAY, Scenario
from fleetpki.simulator.virtual_network import EstEndpoint, VirtualNetwork


class SimClock:
    """The clock the RA, the CA and the agents all read: it moves only when the loop says."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def set(self, moment: dt.datetime) -> None:
        self._now = moment


class Operator(Protocol):
    """What the scenario's operator does through the real RA."""

    def revoke(self, certificate: x509.Certificate) -> None: ...

    def pull_renewals_forward(self, within: dt.timedelta, explanation: str) -> None: ...


class FactoryLine(Protocol):
    def idevid(self, device_id: str) -> x509.Certificate: ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """What a run counts, whether one process's share of it or the whole."""

    policy: str
    scenario: Scenario
    without_certificate_per_day: tuple[int, ...]
    outcomes: dict[str, int]  # session outcomes during the measured span
    rollout_enrollments: int
    # Enrollments with the factory identity of devices that held a certificate before: the
    # fallback when the certificate could no longer renew (revoked, expired past grace).
    fallback_enrollments: int
    dark: int  # needs re-provisioning at the end
    ever_dark: int
    devices_with_gaps: int
    gap_device_days: float
    longest_gap_days: float
    offline_devices: int
    revoked: int
    sessions: int
    requests: int
    seconds: float  # wall clock (of the slowest process, for a whole run)
    cpu_seconds: float  # (of all processes together)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShardResult(Tally):
    """One process's share of a run (devices whose index % shards == shard), with the raw
    per-minute load so that shards add up exactly."""

    ok_per_minute: bytes
    not_ok_per_minute: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunResult(Tally):
    load: LoadSummary
    enrollments_per_day: tuple[int, ...]
    processes: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Fleet:
    scenario: Scenario
    policy: RenewalPolicy
    policy_name: str
    endpoint: EstEndpoint
    operator: Operator
    factory: FactoryLine
    clock: SimClock
    label: str | None = None


def simulate(fleet: Fleet, progress: Callable[[float], None] | None = None, *,
             shard: int = 0, shards: int = 1) -> ShardResult:
    """Run the devices of one shard to the end of the scenario."""
    began, began_cpu = time.perf_counter(), time.process_time()
    scenario = fleet.scenario
    rng = random.Random(scenario.seed * 1000 + shard)
    links = Connectivity(scenario, random.Random(scenario.seed + 1))
    load = Load(scenario.start - scenario.rollout - DAY, scenario.end)
    network = VirtualNetwork(fleet.endpoint, [
        (scenario.start + o.start, scenario.start + o.start + o.length)
        for o in scenario.outages], load)
    devices = {i: VirtualDevice(i, f"DEV{i:07d}", fleet.factory.idevid(f"DEV{i:07d}"))
               for i in range(shard, scenario.devices, shards)}
    enrollees = {i: Enrollee(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME,
                                                             d.device_id)]), label=fleet.label)
                 for i, d in devices.items()}
    operations = _operations(scenario)
    queue: list[tuple[float, int]] = []
    for index in devices:
        deployed = scenario.start - scenario.rollout * rng.random()
        queue.append((links.next_window(index, deployed).timestamp(), index))
    heapq.heapify(queue)
    outcomes: collections.Counter[str] = collections.Counter()
    rollout = fallbacks = revoked = sessions = 0
    dark_seen: set[int] = set()
    end = scenario.end.timestamp()
    start = scenario.start.timestamp()
    span = end - start
    next_report = 0.0
    while queue and queue[0][0] < end:
        stamp, index = heapq.heappop(queue)
        now = dt.datetime.fromtimestamp(stamp, dt.UTC)
        while operations and operations[0][0] <= now:
            _, action = operations.pop(0)
            revoked += action(list(devices.values()), fleet.operator, rng)
        fleet.clock.set(now)
        device = devices[index]
        had_certificate = device.valid_until is not None
        result = _run_session(device, network, now, enrollees[index], fleet.policy, rng)
        sessions += 1
        if stamp >= start:
            outcomes[result.outcome.value] += 1
            if result.outcome is Outcome.enrolled and had_certificate:
                fallbacks += 1
        elif result.outcome is Outcome.enrolled:
            rollout += 1
        if result.outcome is Outcome.needs_reprovisioning:
            dark_seen.add(index)
        wanted = next_contact(device.state, now, has_identity=device.current is not None,
                              has_candidate=device.candidate is not None)
        after = max(wanted, now + scenario.window)
        heapq.heappush(queue, (links.next_window(index, after).timestamp(), index))
        if progress is not None and stamp >= next_report:
            progress(max(0.0, (stamp - start) / span))
            next_report = stamp + 86_400
    if progress is not None:
        progress(1.0)
    return _shard_result(fleet, list(devices.values()), load, links, outcomes, rollout,
                         fallbacks, len(dark_seen), revoked, sessions, network.requests,
                         time.perf_counter() - began, time.process_time() - began_cpu)


def combine(shards: Sequence[ShardResult]) -> RunResult:
    """One run's result from its shards."""
    first = shards[0]
    scenario = first.scenario
    load = Load(scenario.start - scenario.rollout - DAY, scenario.end)
    for shard in shards:
        load.add(shard.ok_per_minute, shard.not_ok_per_minute)
    outcomes: collections.Counter[str] = collections.Counter()
    for shard in shards:
        outcomes.update(shard.outcomes)
    return RunResult(
        policy=first.policy, scenario=scenario, load=load.summary(scenario.start),
        enrollments_per_day=tuple(load.per_day(scenario.start)),
        without_certificate_per_day=tuple(
            sum(day) for day in zip(*(s.without_certificate_per_day for s in shards),
                                    strict=True)),
        outcomes=dict(outcomes),
        rollout_enrollments=sum(s.rollout_enrollments for s in shards),
        fallback_enrollments=sum(s.fallback_enrollments for s in shards),
        dark=sum(s.dark for s in shards), ever_dark=sum(s.ever_dark for s in shards),
        devices_with_gaps=sum(s.devices_with_gaps for s in shards),
        gap_device_days=sum(s.gap_device_days for s in shards),
        longest_gap_days=max(s.longest_gap_days for s in shards),
        offline_devices=sum(s.offline_devices for s in shards),
        revoked=sum(s.revoked for s in shards), sessions=sum(s.sessions for s in shards),
        requests=sum(s.requests for s in shards), seconds=max(s.seconds for s in shards),
        cpu_seconds=sum(s.cpu_seconds for s in shards), processes=len(shards))


def _run_session(device: VirtualDevice, network: VirtualNetwork, now: dt.datetime,
                 enrollee: Enrollee, policy: RenewalPolicy, rng: random.Random
                 ) -> SessionResult:
    flow = session(now, device.state, device.identities(), enrollee, policy, rng)
    try:
        command = next(flow)
        while True:
            if isinstance(command, HttpRequest):
                command = flow.send(network.exchange(device, command, now))
            else:
                device.apply(command, now)
                command = flow.send(None)
    except StopIteration as stop:
        result: SessionResult = stop.value
    device.state = result.state
    return result


Action = Callable[[Sequence[VirtualDevice], Operator, random.Random], int]


def _operations(scenario: Scenario) -> list[tuple[dt.datetime, Action]]:
    operations: list[tuple[dt.datetime, Action]] = []
    for revocation in scenario.revocations:
        share = revocation.share

        def revoke(devices: Sequence[VirtualDevice], operator: Operator, rng: random.Random,
                   share: float = share) -> int:
            chosen = [d for d in devices if d.current is not None and rng.random() < share]
            for device in chosen:
                assert device.current is not None
                operator.revoke(device.current.certificate)
            return len(chosen)

        operations.append((scenario.start + revocation.at, revoke))
    for early in scenario.early_renewals:
        within = early.within

        def advise(devices: Sequence[VirtualDevice], operator: Operator, rng: random.Random,
                   within: dt.timedelta = within) -> int:
            operator.pull_renewals_forward(within, "simulated incident: renew every "
                                                   "certificate issued before now")
            return 0

        operations.append((scenario.start + early.at, advise))
    operations.sort(key=lambda item: item[0])
    return operations


def _shard_result(fleet: Fleet, devices: Sequence[VirtualDevice], load: Load,
                  links: Connectivity, outcomes: collections.Counter[str], rollout: int,
                  fallbacks: int, ever_dark: int, revoked: int, sessions: int,
                  requests: int, seconds: float, cpu_seconds: float) -> ShardResult:
    scenario = fleet.scenario
    days = int(scenario.duration / DAY)
    without = [0] * (days + 1)
    gap_days = 0.0
    longest = 0.0
    with_gaps = 0
    for device in devices:
        device.close_gaps(scenario.end)
        if device.gaps:
            with_gaps += 1
        for begins, ends in device.gaps:
            until = ends or scenario.end
            length = (until - max(begins, scenario.start)) / DAY
            if length <= 0:
                continue
            gap_days += length
            longest = max(longest, (until - begins) / DAY)
            first = max(0, int((begins - scenario.start) / DAY))
            last = min(days, int((until - scenario.start) / DAY))
            for day in range(first, last + 1):
                without[day] += 1
    dark = sum(1 for d in devices if d.state.health == Health.needs_reprovisioning)
    offline = sum(1 for d in devices if links.devices[d.index].offline_from is not None)
    return ShardResult(
        policy=fleet.policy_name, scenario=scenario, ok_per_minute=load.ok.tobytes(),
        not_ok_per_minute=load.not_ok.tobytes(), without_certificate_per_day=tuple(without),
        outcomes=dict(outcomes), rollout_enrollments=rollout, fallback_enrollments=fallbacks,
        dark=dark, ever_dark=ever_dark,
        devices_with_gaps=with_gaps, gap_device_days=gap_days, longest_gap_days=longest,
        offline_devices=offline, revoked=revoked, sessions=sessions, requests=requests,
        seconds=seconds, cpu_seconds=cpu_seconds)
