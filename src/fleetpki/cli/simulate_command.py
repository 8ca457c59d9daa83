"""`fleetpki simulate`: prove, at fleet scale, that the renewal policy keeps devices alive."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import queue
import socket
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from cryptography import x509
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetpki.cli.context import read_input_file
from fleetpki.cli.output import console
from fleetpki.simulator.scenario import (
    DAY,
    POLICIES,
    REFERENCE,
    EarlyRenewal,
    MassRevocation,
    Outage,
    Scenario,
)

if TYPE_CHECKING:
    from fleetpki.simulator.engine import RunResult

_WAIT_SECONDS = 0.2
# A run that has not reported for this long is stuck, not slow: simulated days pass in
# seconds even at 50,000 devices.
_SILENCE_LIMIT = 600.0


def register(cli: click.Group) -> None:
    cli.add_command(simulate)


def _pair(text: str, option: str) -> tuple[float, float]:
    first, colon, second = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return float(first), float(second)
    except ValueError:
        raise click.BadParameter(f"'{text}' must look like DAY:VALUE, e.g. 200:7",
                                 param_hint=option) from None


@click.command()
@click.option("--devices", type=click.IntRange(1, 1_000_000), default=REFERENCE.devices,
              show_default=True)
@click.option("--days", type=click.IntRange(1, 7300), default=REFERENCE.duration.days,
              show_default=True, help="Simulated days.")
@click.option("--lifetime", "lifetime_days", type=click.IntRange(2, 3650),
              default=REFERENCE.lifetime.days, show_default=True,
              help="Certificate lifetime in days.")
@click.option("--missed", type=click.FloatRange(0, 0.99), default=REFERENCE.missed_windows,
              show_default=True, help="Share of daily connectivity windows missed.")
@click.option("--offline-share", type=click.FloatRange(0, 1),
              default=REFERENCE.offline_share, show_default=True,
              help="Share of devices offline once for 60-240 days.")
@click.option("--outage", "outages", multiple=True, metavar="DAY:DAYS",
              help="A CA outage starting on DAY for DAYS days [default: 200:7].")
@click.option("--no-outage", is_flag=True, help="No CA outage at all.")
@click.option("--revoke", "revocations", multiple=True, metavar="DAY:SHARE",
              help="Revoke a share of the fleet's certificates on DAY, e.g. 100:0.1.")
@click.option("--early-renewal", "early", multiple=True, metavar="DAY:DAYS",
              help="On DAY, ask every certificate issued before it to renew within DAYS.")
@click.option("--grace", "grace_days", type=click.IntRange(0, 3650),
              default=REFERENCE.grace_after_expiry.days, show_default=True,
              help="The profile's renewal grace after expiry, in days.")
@click.option("--info-interval", "info_days", type=click.IntRange(1, 90),
              default=REFERENCE.info_interval.days, show_default=True,
              help="How often agents ask for renewal information, in days.")
@click.option("--policy", type=click.Choice(["both", *POLICIES]), default="both",
              show_default=True, help="Agent policy; 'both' runs them side by side.")
@click.option("--seed", type=int, default=REFERENCE.seed, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the report goes [default: ./simulation-<time>].")
@click.option("--live", "live_url", default=None, metavar="URL",
              help="Instead: run --devices real agents over HTTPS against this EST server "
                   "(e.g. https://127.0.0.1:8443) for --minutes, in real time.")
@click.option("--roots", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="With --live: the root CA certificate(s) the agents trust.")
@click.option("--bootstrap", "bootstrap_credential", default=None, metavar="ID:SECRET",
              help="With --live: a group bootstrap credential with a use per device.")
@click.option("--label", default=None, help="With --live: the EST label (profile).")
@click.option("--minutes", type=click.FloatRange(0.1, 24 * 60), default=5.0,
              show_default=True, help="With --live: how long to run.")
@click.option("--name-prefix", default="live-", show_default=True,
              help="With --live: device CNs are this prefix and a number.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes per policy, each simulating a share of the fleet on its own "
                   "server [default: the number of cores].")
def simulate(devices: int, days: int, lifetime_days: int, missed: float, offline_share: float,
             outages: tuple[str, ...], no_outage: bool, revocations: tuple[str, ...],
             early: tuple[str, ...], grace_days: int, info_days: int, policy: str, seed: int,
             out: Path | None, live_url: str | None, roots: Path | None,
             bootstrap_credential: str | None, label: str | None, minutes: float,
             name_prefix: str, workers: int | None) -> None:
    """Run virtual devices against the real RA, CA and store with a simulated clock.

    Each policy's fleet is shared among --workers processes, each with its own throwaway
    server (SQLite, new CA). The report (summary.json, SVG charts, report.html) goes to
    --out."""
    # Imported here: the simulator's server side (the EST front end and its ASN.1 modules)
    # is for this command, not for every command of the CLI.
    from fleetpki.simulator.report import write_report

    if live_url is not None:
        _live(live_url, roots, bootstrap_credential, label, devices, minutes, missed,
              name_prefix, seed, out)
        return
    if no_outage and outages:
        raise click.BadParameter("--no-outage and --outage contradict each other")
    chosen_outages = (() if no_outage else
                      tuple(Outage(d * DAY, n * DAY) for d, n in
                            (_pair(o, "--outage") for o in outages)) or REFERENCE.outages)
    scenario = Scenario(
        devices=devices, duration=days * DAY, lifetime=lifetime_days * DAY,
        missed_windows=missed, offline_share=offline_share, outages=chosen_outages,
        revocations=tuple(MassRevocation(d * DAY, s) for d, s in
                          (_pair(r, "--revoke") for r in revocations)),
        early_renewals=tuple(EarlyRenewal(d * DAY, n * DAY) for d, n in
                             (_pair(e, "--early-renewal") for e in early)),
        grace_after_expiry=grace_days * DAY, info_interval=info_days * DAY, seed=seed)
    names = list(POLICIES) if policy == "both" else [policy]
    out = out or Path(f"simulation-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}")
    console.print(f"simulating {devices:,} devices for {days} days "
                  f"({', '.join(names)}); servers in a temporary directory")
    results = _run(scenario, names, workers or os.cpu_count() or 1)
    _print_summary(results)
    for path in write_report(out, results):
        console.print(f"wrote {path}")


def _run(scenario: Scenario, names: list[str], workers: int) -> list[RunResult]:
    """Each policy's fleet is split into `workers` shards (by device index), each shard on its
    own server in its own process, at most `workers` processes at a time: a simulation is
    CPU-bound, and shards of one fleet do not interact."""
    from fleetpki.simulator.engine import ShardResult, combine

    context = multiprocessing.get_context("spawn")
    messages: Any = context.Queue()
    jobs = [(name, shard) for name in names for shard in range(workers)]
    done: dict[tuple[str, int], ShardResult] = {}
    shard_progress: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="fleetpki-sim-") as scratch, \
            Progress(TextColumn("{task.description:>8}"), BarColumn(),
                     TextColumn("{task.percentage:>5.1f}% of simulated time"),
                     TimeElapsedColumn(), console=console) as progress:
        tasks = {name: progress.add_task(name, total=1.0) for name in names}
        running: dict[tuple[str, int], Any] = {}
        waiting = list(jobs)
        heard = time.monotonic()
        while len(done) < len(jobs):
            while waiting and len(running) < workers:
                job = waiting.pop(0)
                process = context.Process(target=_worker, args=(
                    scenario, job[0], job[1], workers, Path(scratch), messages), daemon=True)
                process.start()
                running[job] = process
            try:
                name, shard, kind, value = messages.get(timeout=_WAIT_SECONDS)
            except queue.Empty:
                failed = [p for p in running.values() if not p.is_alive() and p.exitcode]
                if failed or time.monotonic() - heard > _SILENCE_LIMIT:
                    _stop(running)
                    raise click.ClickException(
                        "a simulation process stopped without a result (exit code "
                        f"{failed[0].exitcode if failed else 'none: it went silent'})") from None
                continue
            heard = time.monotonic()
            if kind == "error":
                _stop(running)
                raise click.ClickException(f"the {name} run failed: {value}")
            shard_progress[(name, shard)] = 1.0 if kind == "result" else value
            progress.update(tasks[name], completed=sum(
                v for (n, _), v in shard_progress.items() if n == name) / workers)
            if kind == "result":
                done[(name, shard)] = value
                running.pop((name, shard)).join(timeout=30)
    return [combine([done[(name, shard)] for shard in range(workers)]) for name in names]


def _stop(running: dict[tuple[str, int], Any]) -> None:
    for process in running.values():
        process.terminate()
        process.join(timeout=10)


def _worker(scenario: Scenario, name: str, shard: int, shards: int, scratch: Path,
            messages: Any) -> None:
    try:
        from fleetpki.simulation_setup import run_shard

        result = run_shard(scenario, name, scratch, shard=shard, shards=shards,
                           progress=lambda done: messages.put((name, shard, "progress", done)))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which exits non-zero
        messages.put((name, shard, "error", f"{type(error).__name__}: {error}"))
        return
    messages.put((name, shard, "result", result))


def _roots(path: Path) -> bytes:
    """Checked before the run: with no usable root every agent would fail every session."""
    data = read_input_file(path, what="root CA file", limit=1024 * 1024)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise click.BadParameter(f"{path} is not a PEM bundle of certificates; give the EST "
                                 "server's root CA certificate (the last certificate of "
                                 "`fleetpki ca export-chain issuing`)",
                                 param_hint="--roots") from None
    return data


def _reachable(url: str) -> None:
    """A live run is meant for a running server: say so at once rather than after --minutes
    of refused connections."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise click.BadParameter(f"{url} is not an https:// URL", param_hint="--live")
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=5):
            pass
    except OSError as error:
        raise click.UsageError(f"cannot reach {parts.hostname}:{parts.port or 443} "
                               f"({error.strerror or error}); start the server (`fleetpki "
                               "serve`) or check --live") from None


def _live(url: str, roots: Path | None, credential: str | None, label: str | None,
          devices: int, minutes: float, missed: float, name_prefix: str, seed: int,
          out: Path | None) -> None:
    from fleetpki.simulator.live import LiveFleet, run_live

    if roots is None or credential is None or ":" not in credential:
        raise click.UsageError("--live needs --roots (the server's root CA) and --bootstrap "
                               "ID:SECRET (a group credential with a use per device: "
                               "`fleetpki bootstrap create --uses N`)")
    if devices > 2000:
        raise click.BadParameter("a live run starts a real agent per device; keep it to "
                                 "2,000 devices or fewer", param_hint="--devices")
    roots_pem = _roots(roots)
    _reachable(url)
    username, _, secret = credential.partition(":")
    fleet = LiveFleet(server_url=url, roots_pem=roots_pem, devices=devices,
                      duration=dt.timedelta(minutes=minutes), bootstrap=(username, secret),
                      label=label, name_prefix=name_prefix, missed_wakeups=missed, seed=seed)
    out = out or Path(f"simulation-live-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}")
    with tempfile.TemporaryDirectory(prefix="fleetpki-live-") as scratch, \
            Progress(TextColumn("live"), BarColumn(), TimeElapsedColumn(),
                     console=console) as progress:
        task = progress.add_task("live", total=1.0)
        result = run_live(fleet, Path(scratch),
                          lambda done: progress.update(task, completed=done))
    table = Table(title=f"live run against {url}")
    table.add_column("")
    table.add_column("value", justify="right")
    for name, value in (
            ("devices", result.devices),
            ("with a valid certificate at the end", result.with_valid_certificate),
            ("needing re-provisioning", result.dark),
            ("certificates obtained", result.certificates_issued),
            ("sessions", result.sessions),
            *((f"  {outcome}", count) for outcome, count in sorted(result.outcomes.items())),
            ("session seconds, median / 99th percentile",
             f"{result.session_seconds_p50:.3f} / {result.session_seconds_p99:.3f}"),
            ("seconds", f"{result.seconds:.0f}")):
        table.add_row(name, str(value))
    console.print(table)
    for message, count in sorted(result.last_errors.items(), key=lambda item: -item[1])[:5]:
        console.print(f"{count} device(s) last said: {message}", markup=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / "live.json").write_text(json.dumps(dataclasses.asdict(result), indent=1),
                                   encoding="utf-8")
    console.print(f"wrote {out / 'live.json'}")
    if result.dark or result.with_valid_certificate < result.devices:
        raise click.ClickException(f"{result.devices - result.with_valid_certificate} of "
                                   f"{result.devices} devices ended without a valid "
                                   "certificate")


def _print_summary(results: list[RunResult]) -> None:
    from fleetpki.simulator.report import summary_rows

    table = Table(title="fleet simulation")
    table.add_column("")
    for result in results:
        table.add_column(result.policy, justify="right")
    for label, values in summary_rows(results):
        table.add_row(label, *values)
    console.print(table)
