"""Metrics shared by forked workers through files: the directory the parent prepares, counts
added up across processes (dead ones included), and cleanup."""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import generate_latest, values
from prometheus_client.parser import text_string_to_metric_families

from fleetpki.metrics import process
from fleetpki.metrics.http import _Tally
from fleetpki.metrics.registry import (
    LATENCY_BUCKETS,
    EnrollmentCounter,
    FleetMetrics,
    scrape_registry,
)


def test_the_directory_exists_while_serving_and_everything_is_restored_after(
        tmp_path: Path) -> None:
    before_value, before_environment = values.ValueClass, os.environ.get(process.ENVIRONMENT)
    with process.multiprocess_metrics(tmp_path / "run") as shared:
        assert shared == tmp_path / "run" / "metrics" / str(os.getpid())
        assert shared.is_dir() and not any(shared.iterdir())
        assert process.directory() == shared
        assert values.ValueClass is not before_value
    assert not shared.exists()
    assert values.ValueClass is before_value
    assert os.environ.get(process.ENVIRONMENT) == before_environment


def test_directories_of_servers_that_are_gone_are_removed(tmp_path: Path) -> None:
    base = tmp_path / "run" / "metrics"
    base.mkdir(parents=True)
    gone_pid = _a_pid_that_has_exited()
    gone, alive = base / str(gone_pid), base / str(os.getppid())
    for directory in (gone, alive):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    with process.multiprocess_metrics(tmp_path / "run"):
        assert not gone.exists()
        assert alive.exists()  # another server, still running: not ours to empty


def test_counts_of_every_worker_add_up_dead_ones_included(tmp_path: Path) -> None:
    with process.multiprocess_metrics(tmp_path / "run") as shared:
        children = [_fork(lambda: _enroll(2)), _fork(lambda: _enroll(3))]
        for pid in children:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            process.worker_exited(pid)  # what the supervisor does when it reaps one
        assert sorted(p.name.split("_")[0] for p in shared.iterdir()) == ["counter", "counter"]
        text = generate_latest(scrape_registry(FleetMetrics.create(None))).decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.labels.get("profile") == "sensor"}
    assert samples["fleetpki_certificates_issued_total"] == 5


def test_a_dead_workers_live_gauges_are_dropped(tmp_path: Path) -> None:
    with process.multiprocess_metrics(tmp_path / "run") as shared:
        (shared / "gauge_livesum_4242.db").write_bytes(b"")
        (shared / "counter_4242.db").write_bytes(b"")
        process.worker_exited(4242)
        assert [p.name for p in shared.iterdir()] == ["counter_4242.db"]


def test_tallied_latencies_read_back_as_observed_ones_across_processes(tmp_path: Path) -> None:
    values = [0.0002, 0.001, 0.004, 0.004, 0.3, 11.0]

    def observe_and_tally() -> None:
        histogram = FleetMetrics.create(None).request_seconds
        for value in values:
            histogram.labels("est", "observed", "2xx").observe(value)
        tally = _Tally(histogram.labels("est", "tallied", "2xx"), len(LATENCY_BUCKETS) + 1)
        for value in values:
            tally.counts[bisect.bisect_left([*LATENCY_BUCKETS, math.inf], value)] += 1
            tally.total += value
        tally.write()

    with process.multiprocess_metrics(tmp_path / "run"):
        pid = _fork(observe_and_tally)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        text = generate_latest(scrape_registry(FleetMetrics.create(None))).decode()
    by_route: dict[str, dict[tuple[str, str], float]] = {"observed": {}, "tallied": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "route" in s.labels:
                by_route[s.labels["route"]][(s.name, s.labels.get("le", ""))] = s.value
    assert by_route["tallied"] == by_route["observed"]
    assert by_route["tallied"][("fleetpki_http_request_duration_seconds_count", "")] == 6


def _enroll(times: int) -> None:
    # What a worker does: its own metrics, made after the fork.
    counter = EnrollmentCounter(FleetMetrics.create(None))
    for _ in range(times):
        counter.issued("sensor", "est")


def _fork(work: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def _a_pid_that_has_exited() -> int:
    pid = _fork(lambda: None)
    os.waitpid(pid, 0)
    return pid
