"""EST enrollment throughput of `fleetpki serve`, set against a bare mutual-TLS handshake loop.

    .venv/bin/python benchmarks/est_enroll.py [--enrollments 5000] [--clients 32] [--workers 2]

A device renews by opening a TLS connection with its current certificate and sending one
`simplereenroll` (RFC 7030 §4.2.2), so full mutual-TLS handshakes bound the enrollment rate
first. That bound is measured in the same run with the same client code, so "fleetpki /
reference" says what fleetpki's own work (HTTP, EST, RA, store, signing, audit) costs.

Untimed set-up: a fresh `fleetpki init` home in a temporary directory, a `renewable` profile
(P-256, may renew at any time), rate limits off, a group bootstrap credential, `fleetpki serve
--listen 127.0.0.1:0` as a child process. Each client is a device whose P-256 key and CSR are
made in memory (a few dozen take milliseconds: nothing worth caching); it enrolls once with the
bootstrap secret for the certificate it presents in mutual TLS; a round of re-enrollments then
warms every worker. Timed phases, the same requests from the same generator (est_load.py):
  reference   a trivial TLS server (certificates, TLS context, forked workers, event loop as
              fleetpki's) answering a fixed response: its CPU per handshake is the TLS floor.
  (a)         fleetpki, one fresh mutual-TLS connection per re-enrollment (the IoT case).
  (b)         fleetpki, each client re-enrolls over one kept-alive mutual-TLS connection;
              (b1) the same with one client: the cost of the work without concurrency.
TLS 1.3, and 1.2 for the reference and (a); no session resumption; P-256 on both sides.

Server CPU per request comes from /proc/<pid>/stat around each phase, and the RA alone is timed
and profiled in-process at the end: together they say whether the time goes to TLS, HTTP/EST,
the RA or waiting. Each phase also reports the generator's and other processes' CPU: on a small
machine the generator competes with the server for cores. Always exits 0: not a test.
"""

from __future__ import annotations

import argparse
import base64
import collections
import cProfile
import dataclasses
import datetime as dt
import json
import math
import os
import pstats
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import est_load
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from est_load import Device, Job, Phase
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetpki.ra.api import EnrollmentKind, EnrollmentRequest
from fleetpki.serving.tls import server_tls_context
from fleetpki.wiring import Fleet, open_fleet

REPO = Path(__file__).resolve().parent.parent
EST = "/.well-known/est"
TLS13 = ssl.TLSVersion.TLSv1_3
PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER
PROFILE = """
[profiles.renewable]
description = "benchmark devices: P-256, renewal at any time"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true, pattern = "^[A-Za-z0-9-]{3,64}$" }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 1.0 }
"""
SETTINGS = """[server]
workers = {workers}
[est]
default_profile = "renewable"
[est.rate_limits]
per_credential = "off"
per_address = "off"
"""
TARGETS = {"fresh": 300.0, "ratio": 0.6, "keepalive": 1500.0, "p99_ms": 100.0}
console = Console(highlight=False, stderr=True, width=None if sys.stderr.isatty() else 130)


# -- the fleetpki home, server and devices ---------------------------------------------------


def fleetpki(home: Path, *args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("fleetpki")), "--home", str(home), *args]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_home(home: Path, profiles: str, settings: str) -> None:
    """`fleetpki init`, then the benchmark's profiles appended and its settings written."""
    subprocess.run(fleetpki(home, "init"), capture_output=True, check=True, timeout=120)
    with (home / "profiles.toml").open("a", encoding="utf-8") as handle:
        handle.write(profiles)
    (home / "fleetpki.toml").write_text(settings, encoding="utf-8")


def prepare_home(home: Path, workers: int, uses: int) -> tuple[str, str]:
    """init, the renewable profile, settings; returns a bootstrap credential (id, secret)."""
    subprocess.run(fleetpki(home, "init"), capture_output=True, check=True, timeout=120)
    with (home / "profiles.toml").open("a", encoding="utf-8") as handle:
        handle.write(PROFILE)
    (home / "fleetpki.toml").write_text(SETTINGS.format(workers=workers), encoding="utf-8")
    made = json.loads(subprocess.run(
        fleetpki(home, "bootstrap", "create", "--profile", "renewable", "--uses", str(uses),
                 "--json"), capture_output=True, check=True, timeout=120).stdout)
    return made["id"], made["secret"]


@contextmanager
def fleet_server(home: Path, workers: int, timeout: float = 60.0) -> Iterator[tuple[int, int]]:
    """`fleetpki serve` on 127.0.0.1 and a free port; yields (port, PID). Stopped by its PID
    with bounded waits, whatever happens."""
    ready = "fleetpki serving EST on https://127.0.0.1:"
    with (home / "serve.log").open("w", encoding="utf-8") as log, subprocess.Popen(
            fleetpki(home, "serve", "--listen", "127.0.0.1:0", "--workers", str(workers)),
            stdout=subprocess.PIPE, stderr=log, text=True) as process:
        try:
            assert process.stdout is not None
            port, deadline = 0, time.monotonic() + timeout
            with selectors.DefaultSelector() as selector:
                selector.register(process.stdout, selectors.EVENT_READ)
                while not port and time.monotonic() < deadline and process.poll() is None:
                    line = process.stdout.readline() if selector.select(timeout=0.5) else ""
                    if line.startswith(ready):
                        port = int(line[len(ready):].split("/", 1)[0])
            if not port:
                raise SystemExit(f"fleetpki serve did not start within {timeout:.0f} s: "
                                 f"{(home / 'serve.log').read_text()[-3000:]}")
            yield port, process.pid
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def make_devices(directory: Path, count: int) -> list[Device]:
    directory.mkdir(parents=True, exist_ok=True)
    devices = []
    for index in range(count):
        key, cn = ec.generate_private_key(ec.SECP256R1()), f"est-bench-{index:05d}"
        csr = (x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256()))
        key_file = directory / f"{cn}.key"
        key_file.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        devices.append(Device(cn, base64.b64encode(csr.public_bytes(DER)), str(key_file)))
    return devices


def phase(name: str, job: Job, server: int | list[int], generators: int) -> Phase:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(f"{name}, {job.clients} clients", total=job.requests)
        return est_load.measure(name, job, server, generators,
                                lambda n: bar.update(task, completed=n))


# -- the RA alone, in-process ----------------------------------------------------------------


def _area(path: str, name: str) -> str:
    """The component a profiled function belongs to."""
    if path == "~":  # C functions: named by their module
        return next((area for marker, area in (("sqlite3", "sqlite3 (C)"), ("_thread.lock", (
            "waiting on locks")), ("cryptography", "cryptography (Rust)")) if marker in name),
            "builtins")
    if "/src/fleetpki/" in path:
        return "fleetpki." + path.split("/src/fleetpki/")[1].split("/")[0].removesuffix(".py")
    return path.split("site-packages/")[1].split("/")[0] if "site-packages/" in path \
        else "stdlib"


def profile_ra(home: Path, device: Device, calls: int, warm: int = 20) -> dict[str, Any]:
    """CPU and wall time of EnrollmentService.enroll for one re-enrollment, in this process
    with the server stopped: the RA (authenticate, policy, store, sign, audit) without HTTP,
    TLS or other workers. Then the same calls under cProfile, by component, in CPU time."""
    assert device.cert_file is not None
    request = EnrollmentRequest(
        csr=base64.b64decode(device.csr_b64), kind=EnrollmentKind.reenroll,
        client_address="127.0.0.1", client_certificate=x509.load_pem_x509_certificate(
            Path(device.cert_file).read_bytes()).public_bytes(DER))

    def enroll(fleet: Fleet, count: int) -> None:
        for _ in range(count):
            fleet.enrollment.enroll(request)

    fleet = open_fleet(home)
    try:
        enroll(fleet, warm)
        cpu, wall = time.process_time(), time.perf_counter()  # process: every thread
        enroll(fleet, calls)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        fleet.close()
    # The store may write on a thread of its own (group commit). A profiler of this thread
    # alone would see that work as time waiting on a lock, so every new thread gets one too.
    threads: list[cProfile.Profile] = []

    def profile_thread(*_: object) -> None:
        sys.setprofile(None)
        threads.append(cProfile.Profile(time.thread_time))
        threads[-1].enable()

    main = cProfile.Profile(time.thread_time)
    threading.setprofile(profile_thread)
    fleet = open_fleet(home)
    try:
        enroll(fleet, warm)
        main.runcall(enroll, fleet, calls)
    finally:
        fleet.close()  # stops the store's threads: their profiles are complete
        threading.setprofile(None)
    areas: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    by_thread: collections.Counter[str] = collections.Counter()
    for profiler, scale in [(main, 1.0)] + [(t, calls / (calls + warm)) for t in threads]:
        stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        for (path, line, name), (_, _, own, _, _) in stats.items():
            areas[_area(path, name)] += own * scale
            functions[f"{Path(path).name}:{line} {name}"] += own * scale
            by_thread["caller" if profiler is main else "other threads"] += own * scale
    total, ms = sum(areas.values()) or 1.0, cpu / calls * 1e3
    return {"calls": calls, "cpu_ms": ms, "wall_ms": wall / calls * 1e3,
            "threads_ms": {k: round(t / total * ms, 3) for k, t in by_thread.items()},
            "areas_ms": {area: round(t / total * ms, 3) for area, t in areas.most_common()},
            "top_ms": {f: round(t / total * ms, 3) for f, t in functions.most_common(12)}}


# -- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path) -> tuple[list[Phase], dict[str, Any] | None]:
    home, count = tmp / "home", args.clients
    with console.status("fleetpki init, profile, settings, bootstrap credential, device keys"):
        credential, secret = prepare_home(home, args.workers, count + 10)
        fleet = open_fleet(home)
        try:
            root = fleet.chain(fleet.profiles["renewable"].issuer)[-1]
            client_trust, passphrase = fleet.client_trust_pem(), fleet.settings.passphrase.read()
        finally:
            fleet.close()
        devices = make_devices(tmp / "devices", count)
    basic = "Basic " + base64.b64encode(f"{credential}:{secret}".encode()).decode("ascii")
    phases: list[Phase] = []
    with fleet_server(home, args.workers) as (port, pid):
        bootstrap = Job(port, f"{EST}/simpleenroll", tuple(devices), count, count,
                        keep_alive=True, tls_version=TLS13,
                        trust_pem=root.public_bytes(PEM).decode("ascii"), basic=basic,
                        check_every=1)
        with console.status(f"warm-up: {count} devices enroll with the bootstrap secret"):
            warm = est_load.drive(bootstrap, args.generators)
        if len(warm.certificates) != count:
            raise SystemExit(f"only {len(warm.certificates)} of {count} devices enrolled: "
                             f"{dict(warm.errors)} {warm.error_samples}")
        for device in devices:
            Path(device.key_file).with_suffix(".pem").write_bytes(warm.certificates[device.cn])
        devices = [dataclasses.replace(d, cert_file=str(Path(d.key_file).with_suffix(".pem")))
                   for d in devices]
        job = dataclasses.replace(
            bootstrap, path=f"{EST}/simplereenroll", devices=tuple(devices), basic=None,
            requests=args.enrollments, keep_alive=False, check_every=args.check_every)
        with console.status("warm-up: re-enrollment with mutual TLS"):
            again = est_load.drive(dataclasses.replace(job, requests=4 * args.clients),
                                   args.generators)
        for sample in again.error_samples:
            console.print(f"[yellow]warm-up re-enrollment: {sample}")
        reference = server_tls_context(home / "server" / "tls-chain.pem",
                                       home / "server" / "tls-key.pem", key_password=passphrase,
                                       client_trust_pem=client_trust)
        with est_load.reference_server(reference, args.workers) as (ref_port, ref_pids):
            for version in [TLS13, ssl.TLSVersion.TLSv1_2] if args.tls12 else [TLS13]:
                tls, same = version.name[-3:].replace("_", "."), dataclasses.replace(
                    job, tls_version=version)
                phases.append(phase(f"reference, TLS {tls}", dataclasses.replace(
                    same, port=ref_port, check_every=0), ref_pids, args.generators))
                phases.append(phase(f"(a) fresh, TLS {tls}", same, pid, args.generators))
            keep = dataclasses.replace(job, keep_alive=True)
            phases.append(phase("(b) keep-alive, TLS 1.3", keep, pid, args.generators))
            phases.append(phase("(b1) keep-alive, 1 client", dataclasses.replace(
                keep, clients=1, requests=max(200, args.enrollments // 20)), pid, 1))
    with console.status(f"RA alone, in-process: {args.ra_calls} re-enrollments, twice"):
        return phases, profile_ra(home, devices[0], args.ra_calls) if args.ra_calls else None


# -- reporting -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    git = ["git", "--no-optional-locks", "-C", str(REPO)]  # read-only, no index refresh
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True, check=False).stdout.splitlines()
    return {"cpus": str(os.cpu_count()), "python": sys.version.split()[0],
            "ssl": ssl.OPENSSL_VERSION, "date": dt.datetime.now(dt.UTC).isoformat("T", "seconds"),
            "fleetpki_source": head + (f" + changes to {len(dirty)} paths in src/" * bool(dirty))}


def _table(title: str, columns: Sequence[str], rows: list[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def report(args: argparse.Namespace, phases: list[Phase], ra: dict[str, Any] | None
           ) -> dict[str, Any]:
    info, cpus = machine(), os.cpu_count() or 1
    console.rule("EST enrollment benchmark")
    console.print("  ".join(f"{key}: {value}" for key, value in info.items()))
    console.print(_table(
        f"{args.clients} clients, {args.workers} server workers. Latency: connect (+ handshake)"
        " + request + response; CPU: per request", ("phase", "requests", "errors", "rate /s",
        "p50 ms", "p95 ms", "p99 ms", "max ms", "server CPU ms", "generator CPU ms"),
        [(p.name, f"{p.requests:,}", str(sum(p.errors.values())), f"{p.rate:,.0f}",
          *(f"{p.latency_ms[q]:,.1f}" for q in ("p50", "p95", "p99", "max")),
          f"{p.server_cpu_ms:.2f}", f"{p.generator_cpu_ms:.2f}") for p in phases]))
    console.print(_table(
        f"Where the {cpus} cores went (CPU time / wall time) and what the CPU cost per request "
        "allows", ("phase", "server", "generator", "other processes", "machine busy",
                   "server + generator CPU allow /s", "server CPU alone allows /s"),
        [(p.name, f"{p.server_cores:.2f}", f"{p.generator_cores:.2f}", f"{p.other_cores:.2f}",
          f"{(p.server_cores + p.generator_cores + p.other_cores) / cpus:.0%}",
          f"{cpus / (p.server_cpu_ms + p.generator_cpu_ms) * 1e3:,.0f}",
          f"{min(cpus, args.workers) / p.server_cpu_ms * 1e3:,.0f}") for p in phases]))
    for p in phases:
        for sample in p.error_samples + (["a server worker restarted"] * p.server_restarted):
            console.print(f"[red]{p.name}: {sample}[/red]")
    by = {p.name: p for p in phases}
    ref, fresh = by["reference, TLS 1.3"], by["(a) fresh, TLS 1.3"]
    keep, one = by["(b) keep-alive, TLS 1.3"], by["(b1) keep-alive, 1 client"]
    ratios = {"fresh/reference_tls13": fresh.rate / ref.rate,
              "reference_cpu/fresh_cpu_tls13": ref.server_cpu_ms / fresh.server_cpu_ms}
    if args.tls12:
        ratios["fresh/reference_tls12"] = by["(a) fresh, TLS 1.2"].rate / by[
            "reference, TLS 1.2"].rate
    ra_ms = ra["cpu_ms"] if ra else float("nan")  # rows with it are dropped without a profile
    parts = {"bare mTLS handshake (reference server)": ref.server_cpu_ms,
             "(a) enrollment on a fresh mTLS connection": fresh.server_cpu_ms,
             "  beyond TLS: (a) - reference": fresh.server_cpu_ms - ref.server_cpu_ms,
             f"(b) enrollment, kept-alive connection, {args.clients} clients": keep.server_cpu_ms,
             "(b1) the same, 1 client (no concurrency)": one.server_cpu_ms,
             "  of which the RA alone, in-process (auth, policy, store, sign, audit)": ra_ms,
             "  of which uvicorn + Starlette + EST + thread hop: (b1) - RA":
                 one.server_cpu_ms - ra_ms,
             "concurrency: cost (+) or batching gain (-): (b) - (b1)":
                 keep.server_cpu_ms - one.server_cpu_ms,
             "per-connection work beyond the handshake: (a) - reference - (b)":
                 fresh.server_cpu_ms - ref.server_cpu_ms - keep.server_cpu_ms}
    parts = {label: ms for label, ms in parts.items() if not math.isnan(ms)}
    console.print(_table("Server CPU per request, TLS 1.3", ("part", "ms"),
                         [(label, f"{ms:.2f}") for label, ms in parts.items()]))
    if ra is not None:
        console.print(f"RA in-process: {ra['cpu_ms']:.2f} ms CPU, {ra['wall_ms']:.2f} ms wall "
                      f"per enrollment; CPU ms by thread: {ra['threads_ms']} (the store's "
                      "writer thread works inside write transactions, under SQLite's one write "
                      "lock for all workers). CPU ms by component: " + ", ".join(
                          f"{k} {v:.2f}" for k, v in ra["areas_ms"].items() if v >= 0.05))
        console.print("Top functions, own CPU ms: " + "; ".join(
            f"{f} {v:.2f}" for f, v in list(ra["top_ms"].items())[:6]))
    errors = sum(sum(p.errors.values()) for p in phases)
    rows = [("(a) fresh mTLS, TLS 1.3", f"{fresh.rate:,.0f} /s", f">= {TARGETS['fresh']:.0f} /s",
             fresh.rate >= TARGETS["fresh"]),
            ("(a) / reference, TLS 1.3", f"{ratios['fresh/reference_tls13']:.2f}",
             f">= {TARGETS['ratio']}", ratios["fresh/reference_tls13"] >= TARGETS["ratio"]),
            ("(b) keep-alive, TLS 1.3", f"{keep.rate:,.0f} /s",
             f">= {TARGETS['keepalive']:.0f} /s", keep.rate >= TARGETS["keepalive"]),
            *((f"{p.name[:3]} p99, {args.clients} clients", f"{p.latency_ms['p99']:.1f} ms",
               f"< {TARGETS['p99_ms']:.0f} ms", p.latency_ms["p99"] < TARGETS["p99_ms"])
              for p in (fresh, keep)),
            ("errors, all phases", str(errors), "0", errors == 0)]
    console.print(_table("Targets", ("figure", "value", "target", "verdict"), [
        (*row[:3], "[bold green]PASS[/]" if row[3] else "[bold red]MISS[/]") for row in rows]))
    console.print(f"Server CPU per request, reference / (a): "
                  f"{ratios['reference_cpu/fresh_cpu_tls13']:.2f} (the rate ratio flatters (a) "
                  "when the generator takes cores the reference server needed). Verdicts are "
                  "informational; this script always exits 0.")
    return {"machine": info, "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "phases": [dataclasses.asdict(p) for p in phases], "ratios": ratios,
            "server_cpu_ms_per_request": parts, "ra_profile": ra, "targets": [
                dict(zip(("figure", "value", "target", "met"), r, strict=True)) for r in rows]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    option = parser.add_argument
    option("--enrollments", type=int, default=5000, help="requests per timed phase [5000]")
    option("--clients", type=int, default=32, help="concurrent clients [32]")
    option("--workers", type=int, default=2, help="fleetpki and reference server workers [2]")
    option("--generators", type=int, default=2, help="load generator processes [2]")
    option("--check-every", type=int, default=25, help="check every n-th response [25]")
    option("--ra-calls", type=int, default=300, help="in-process RA calls, 0: skip [300]")
    option("--no-tls12", dest="tls12", action="store_false", help="skip the TLS 1.2 phases")
    option("--keep", action="store_true", help="keep the temporary directory")
    option("--json", action="store_true", help="print every figure as one JSON object")
    args = parser.parse_args(argv)
    if min(args.enrollments, args.clients, args.workers, args.generators, args.check_every,
           args.ra_calls + 1) < 1:
        parser.error("counts must be positive")
    tmp = Path(tempfile.mkdtemp(prefix="fleetpki-est-bench-"))
    try:
        figures = report(args, *run(args, tmp))
    finally:
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
