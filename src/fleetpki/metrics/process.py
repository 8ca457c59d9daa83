"""Counting across `fleetpki serve`'s worker processes (prometheus_client's multiprocess mode).

Each worker writes its counters and histograms to memory-mapped files of its own in one
directory, and a scrape, whichever worker answers it, adds up every file there: the workers'
that run, and those of workers that died (their counts stay part of the totals, as a counter
must never go down while the server runs).

prometheus_client decides between in-memory and file-backed values from the environment
variable PROMETHEUS_MULTIPROC_DIR, once, when it is first imported; the CLI has imported it long
before `serve` runs. So the parent, before it forks, names the directory in the environment the
workers inherit AND selects the file-backed value class again (`values.ValueClass`, which every
metric reads when it is created: the library's own tests switch it the same way). No metric may
exist before that: the workers create theirs after the fork (registry.process_metrics).

Each server gets a directory of its own, <home>/run/metrics/<parent pid>, removed when it stops:
a second `fleetpki serve` on the same home (refused a moment later for its ports) must not empty
the files of the one that runs. Directories of servers that were killed are removed at the
next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import multiprocess, values

__all__ = ["ENVIRONMENT", "directory", "multiprocess_metrics", "worker_exited"]

log = logging.getLogger(__name__)

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"


def directory() -> Path | None:
    """The directory this process's metrics are shared through, if they are."""
    named = os.environ.get(ENVIRONMENT)
    return Path(named) if named else None


@contextlib.contextmanager
def multiprocess_metrics(run_directory: Path) -> Iterator[Path]:
    """In the serving parent, around the fork of its workers: a fresh, empty directory of this
    server's own for their metric files, and the multiprocess mode switched on for the
    processes forked meanwhile. Restores the environment and removes the directory after."""
    base = run_directory / "metrics"
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)
    _remove_stale(base)
    own = base / str(os.getpid())
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir()
    previous_value, previous_environment = values.ValueClass, os.environ.get(ENVIRONMENT)
    os.environ[ENVIRONMENT] = str(own)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    try:
        yield own
    finally:
        values.ValueClass = previous_value
        if previous_environment is None:
            os.environ.pop(ENVIRONMENT, None)
        else:
            os.environ[ENVIRONMENT] = previous_environment
        shutil.rmtree(own, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """For the supervisor, when it reaps a worker: drop the dead process's live gauges (its
    counters and histograms stay in the totals)."""
    shared = directory()
    if shared is not None:
        multiprocess.mark_process_dead(pid, str(shared))  # type: ignore[no-untyped-call]


def _remove_stale(base: Path) -> None:
    """Directories of servers that no longer run (killed before they could clean up)."""
    for child in base.iterdir():
        if not child.name.isdigit() or int(child.name) == os.getpid():
            continue
        try:
            os.kill(int(child.name), 0)
        except (ProcessLookupError, OverflowError):
            log.info("removing the metrics of a server that is gone", extra={"path": str(child)})
            shutil.rmtree(child, ignore_errors=True)
        except PermissionError:
            pass  # a process of another user holds that PID: not ours to judge
