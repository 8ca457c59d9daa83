"""Issuance throughput of `fleetpki batch`, set against the references it should be judged by.

Run from the repository root:

    .venv/bin/python benchmarks/issuance.py [--devices 100000] [--million]

What is measured, in one run, and why each reference exists:

(a) `openssl speed -seconds 3 ecdsap256`, on one core and with `-multi <cores>`.
    The raw ECDSA P-256 sign rate is the hard ceiling of any CA on this machine: every
    certificate costs at least one signature. The verify rate is printed too, because a batch
    driven by CSRs also verifies one CSR self-signature per device, and a P-256 verification
    costs about three signatures. (This is the `openssl` command's own libcrypto; the
    `cryptography` wheel bundles its own OpenSSL, so treat it as an order of magnitude, not an
    exact bound.)

(b) A bare reference loop using `cryptography` alone: read each pre-generated CSR file, parse
    it, verify its self-signature, build and sign a certificate with the same extensions
    fleetpki's `sensor` profile produces (basicConstraints CA:FALSE critical, keyUsage
    digitalSignature+keyAgreement critical, SKI, AKI, EKU clientAuth, SAN copied from the CSR),
    and DER-encode it. No policy, no store, no audit, no output files. This is the cost of the
    unavoidable work done in Python with the same library, so "e2e / bare loop" says how much
    fleetpki's own machinery (policy, reservations, commits, hash-chained audit, files, IPC)
    costs. It runs in one process and split across one process per core; the multi-process
    figure is the like-for-like reference for a batch with one worker per core. Its rate is
    flat after a few thousand CSRs, so it runs over the first --reference-devices (20,000),
    best of --repeats (2) runs.

(c) fleetpki end to end: the real CLI (`fleetpki batch --profile sensor`) in a subprocess, on a
    fresh `fleetpki init` home in a temporary directory, for N devices. Timed as wall clock
    from spawn to exit, so interpreter start, migrations check and CA key unlock are included
    (a header-only batch is timed separately to show that fixed cost). Memory is measured two
    ways: polling /proc every 50 ms and summing RSS (and PSS, which splits pages shared between
    the parent and its forked workers instead of counting them twice) over the whole process
    tree, and the kernel's max RSS of the largest single process (wait4 rusage).

With --million, a 1,000,000-device batch is run as well, to show that memory stays flat.

Every phase also reports "other load": the cores kept busy by other processes while it ran
(from /proc/stat minus this script's own CPU). On a shared machine that is the difference
between a figure and a guess.

CSRs are generated once (one P-256 key per device, CN = device id, SAN
urn:dev:mac:<12 hex>) and cached under .benchcache/ at the repository root; later runs reuse
them. Targets are printed with PASS/MISS, but the script always exits 0: it is a benchmark, not
a test.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import platform
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".benchcache" / "csrs-p256-v1"
SHARD = 1000  # CSR files per cache directory
MILLION = 1_000_000
PROFILE = "sensor"

TARGET_RATE = 5000.0  # certificates per second, end to end
TARGET_RATIO = 0.75  # end to end / bare reference loop
TARGET_RSS_MB = 500.0  # peak memory of the 1M-device run

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


# -- other load on the machine ---------------------------------------------------------------


def _busy_seconds() -> float:
    """CPU time spent by everything on the machine (user, nice, system, irq, softirq)."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = handle.readline().split()
    ticks = sum(int(fields[i]) for i in (1, 2, 3, 6, 7))
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU time of this script and every child it has reaped."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class Background:
    """How many cores something else on the machine kept busy during a measurement.

    Benchmarks on a shared machine are only as good as the quiet around them, so every phase
    reports this next to its figure instead of pretending the machine was idle.
    """

    cores: float = 0.0

    def __enter__(self) -> Background:
        self._start = (time.perf_counter(), _busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, own = (time.perf_counter(), _busy_seconds(), _own_seconds())
        foreign = (busy - self._start[1]) - (own - self._start[2])
        self.cores = max(foreign, 0.0) / max(wall - self._start[0], 1e-9)


# -- the cached CSR corpus -------------------------------------------------------------------


def device_id(index: int) -> str:
    return f"sensor-{index:07d}"


def csr_relpath(index: int) -> str:
    return f"{index // SHARD:04d}/{device_id(index)}.pem"


def _generate_shard(shard: int) -> int:
    """Write one shard of CSRs (each with its own P-256 key), then mark it complete."""
    directory = CACHE / f"{shard:04d}"
    directory.mkdir(parents=True, exist_ok=True)
    sha256 = hashes.SHA256()
    for index in range(shard * SHARD, (shard + 1) * SHARD):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id(index))]))
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:dev:mac:02{index:010x}")]), critical=False)
            .sign(key, sha256)
        )
        (CACHE / csr_relpath(index)).write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    (directory / ".done").touch()
    return SHARD


def ensure_csrs(count: int, processes: int) -> None:
    """Generate whatever part of the first `count` CSRs is not cached yet (whole shards)."""
    shards = -(-count // SHARD)
    missing = [s for s in range(shards) if not (CACHE / f"{s:04d}" / ".done").exists()]
    if not missing:
        console.print(f"CSR cache: {shards * SHARD:,} CSRs already in {CACHE}")
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress, \
            multiprocessing.get_context("fork").Pool(processes) as pool:
        task = progress.add_task(f"generating CSRs into {CACHE.relative_to(REPO)}",
                                 total=len(missing) * SHARD)
        for done in pool.imap_unordered(_generate_shard, missing):
            progress.advance(task, done)


def device_list(count: int) -> Path:
    """The device CSV for the first `count` devices, next to the CSRs it names (cached)."""
    path = CACHE / f"devices-{count}.csv"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="ascii") as handle:
            handle.write("device_id,csr\n")
            handle.writelines(f"{device_id(i)},{csr_relpath(i)}\n" for i in range(count))
        tmp.replace(path)
    return path


def warm_inputs(count: int) -> None:
    """Read the first `count` cached CSR files once, untimed, so that the batch is timed on
    warm inputs as the bare loop is. With a cold page cache (after another benchmark filled
    memory), reading 100,000 of these small files took 32 s here against 2.5 s warm: the
    batch then measured the disk, not issuance."""
    started = time.perf_counter()
    with console.status(f"reading {count:,} input CSRs into the page cache"):
        for index in range(count):
            (CACHE / csr_relpath(index)).read_bytes()
    console.print(f"input CSRs read once before timing: {count:,} files in "
                  f"{time.perf_counter() - started:.1f} s")


# -- (a) openssl speed -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpeedResult:
    processes: int
    sign_per_s: float
    verify_per_s: float
    background_cores: float


def openssl_speed(seconds: int, processes: int) -> SpeedResult:
    command = ["openssl", "speed", "-seconds", str(seconds)]
    if processes > 1:
        command += ["-multi", str(processes)]
    with Background() as background:
        output = subprocess.run([*command, "ecdsap256"], capture_output=True, text=True,
                                check=True).stdout
    lines = [line for line in output.splitlines() if "ecdsa (nistp256)" in line]
    if not lines:
        raise RuntimeError(f"no nistp256 line in `openssl speed` output:\n{output}")
    sign, verify = (float(x) for x in lines[-1].split()[-2:])
    return SpeedResult(processes, sign, verify, background.cores)


# -- (b) the bare cryptography loop ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BareIssuer:
    """A throwaway P-256 issuing CA; keys travel as DER so the worker processes can load them."""

    key_der: bytes
    certificate_der: bytes

    @classmethod
    def create(cls) -> BareIssuer:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetpki"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "bench Issuing CA 1")])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(
            key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            certificate.public_bytes(serialization.Encoding.DER),
        )


def bare_loop(job: tuple[BareIssuer, Sequence[str]]) -> int:
    """Issue one certificate per CSR path; returns how many were issued."""
    issuer, paths = job
    key = serialization.load_der_private_key(issuer.key_der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    issuer_certificate = x509.load_der_x509_certificate(issuer.certificate_der)
    issuer_name = issuer_certificate.subject
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    basic_constraints = x509.BasicConstraints(ca=False, path_length=None)
    key_usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    sha256 = hashes.SHA256()
    not_before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = not_before + dt.timedelta(days=365)
    issued = 0
    for path in paths:
        with open(path, "rb") as handle:
            csr = x509.load_pem_x509_csr(handle.read())
        if not csr.is_signature_valid:
            raise ValueError(f"{path}: CSR signature does not verify")
        public_key = csr.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(issuer_name)
            .public_key(public_key)
            .serial_number(secrets.randbits(127) | (1 << 126))
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(basic_constraints, critical=True)
            .add_extension(key_usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(aki, critical=False)
            .add_extension(eku, critical=False)
        )
        with contextlib.suppress(x509.ExtensionNotFound):
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            builder = builder.add_extension(san.value, critical=False)
        builder.sign(key, sha256).public_bytes(serialization.Encoding.DER)
        issued += 1
    return issued


@dataclasses.dataclass(frozen=True)
class RateResult:
    label: str
    processes: int
    count: int
    seconds: float
    background_cores: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def run_bare(paths: list[str], processes: int, repeats: int) -> RateResult:
    """Best of `repeats` runs. Even the one-process loop runs in a forked child, so that both
    figures carry the same (small) cost of starting processes and neither runs in this busier
    process."""
    issuer = BareIssuer.create()
    parts = [(issuer, paths[i::processes]) for i in range(processes)]
    best: RateResult | None = None
    for _ in range(repeats):
        with Background() as background:
            start = time.perf_counter()
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                issued = sum(pool.map(bare_loop, parts, chunksize=1))
            seconds = time.perf_counter() - start
        if issued != len(paths):
            raise RuntimeError(f"bare loop issued {issued} of {len(paths)}")
        result = RateResult(f"bare loop, {processes} process{'es' if processes > 1 else ''}",
                            processes, issued, seconds, background.cores)
        if best is None or result.seconds < best.seconds:
            best = result
    assert best is not None
    return best


# -- (c) fleetpki end to end -----------------------------------------------------------------


_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PSS_EVERY = 10  # smaps_rollup walks page tables: read it on every 10th sample only (500 ms)


def _proc_tree(root: int) -> list[int]:
    """The root and all its descendants, from /proc/<pid>/task/<tid>/children."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:  # gone meanwhile
            continue
    return tree


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_KIB
    except OSError:
        return 0


def _pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
        for line in handle:
            if line.startswith(b"Pss:"):
                return int(line.split()[1])
    return 0


@dataclasses.dataclass
class TreeMemory:
    """Peaks over the samples taken while a process tree runs."""

    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    peak_processes: int = 0
    samples: int = 0

    def sample(self, root: int) -> int:
        pids = _proc_tree(root)
        rss = sum(_rss_kib(pid) for pid in pids)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        if self.samples % PSS_EVERY == 0:
            self.peak_pss_kib = max(self.peak_pss_kib, sum(_pss_kib(pid) for pid in pids))
        self.peak_processes = max(self.peak_processes, len(pids))
        self.samples += 1
        return rss


@dataclasses.dataclass(frozen=True)
class BatchResult:
    devices: int
    workers: int
    seconds: float
    issued: int
    exit_code: int
    output_files: int
    memory: TreeMemory
    max_single_rss_kib: int  # wait4 rusage: the largest single process in the tree
    cpu_seconds: float  # user + system over the whole tree
    sys_seconds: float  # of which in the kernel (file creation, fsync, IPC)
    background_cores: float
    monitor_cpu_seconds: float  # this script's own polling meanwhile
    summary: str

    @property
    def rate(self) -> float:
        return self.issued / self.seconds

    @property
    def cpu_utilisation(self) -> float:
        return self.cpu_seconds / (self.seconds * (os.cpu_count() or 1))


def fleetpki_executable() -> str:
    beside = Path(sys.executable).with_name("fleetpki")
    found = str(beside) if beside.exists() else shutil.which("fleetpki")
    if found is None:
        raise SystemExit("fleetpki is not installed in this environment")
    return found


def init_home(home: Path) -> None:
    subprocess.run([fleetpki_executable(), "--home", str(home), "init"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_batch(home: Path, devices_csv: Path, out: Path, devices: int, workers: int,
              log: Path, label: str, layout: str) -> BatchResult:
    command = [fleetpki_executable(), "--home", str(home), "batch", "--profile", PROFILE,
               "--devices", str(devices_csv), "--out", str(out), "--workers", str(workers),
               "--layout", layout]
    memory = TreeMemory()
    monitor_start = time.process_time()
    with log.open("wb") as log_handle, console.status(label) as status, \
            Background() as background:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log_handle, stderr=subprocess.STDOUT)
        last_update = start
        while True:
            # wait4 on this pid: its rusage covers the batch and the workers it reaped, and
            # nothing else this script started.
            pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            rss = memory.sample(process.pid)
            now = time.perf_counter()
            if now - last_update > 0.5:
                status.update(f"{label}: {now - start:,.0f} s, tree RSS {rss / 1024:,.0f} MiB")
                last_update = now
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    monitor_cpu = time.process_time() - monitor_start
    exit_code = os.waitstatus_to_exitcode(wait_status)
    process.returncode = exit_code
    text = log.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"issued (\d+), already issued (\d+)", text)
    summary = match.group(0) if match else text.strip().splitlines()[-1] if text.strip() else ""
    # Certificates written out: device files, or lines of certificates.jsonl.
    log_file = out / "certificates.jsonl"
    if log_file.exists():
        with log_file.open("rb") as handle:
            output_files = sum(1 for _ in handle)
    else:
        output_files = sum(1 for e in os.scandir(out) if e.name.endswith(".pem")) \
            if out.exists() else 0
    return BatchResult(
        devices=devices, workers=workers, seconds=seconds,
        issued=int(match.group(1)) if match else 0, exit_code=exit_code,
        output_files=output_files, memory=memory,
        max_single_rss_kib=usage.ru_maxrss,  # KiB on Linux
        cpu_seconds=usage.ru_utime + usage.ru_stime, sys_seconds=usage.ru_stime,
        background_cores=background.cores,
        monitor_cpu_seconds=monitor_cpu, summary=summary)


def fixed_overhead(home: Path, workdir: Path, workers: int, layout: str) -> float:
    """Wall time of a header-only batch: interpreter start, imports, store, CA key unlock."""
    empty = workdir / "empty.csv"
    empty.write_text("device_id,csr\n", encoding="ascii")
    start = time.perf_counter()
    subprocess.run([fleetpki_executable(), "--home", str(home), "batch", "--profile", PROFILE,
                    "--devices", str(empty), "--out", str(workdir / "empty-out"),
                    "--workers", str(workers), "--layout", layout],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


@dataclasses.dataclass(frozen=True)
class EndToEnd:
    batch: BatchResult
    overhead_seconds: float | None


def end_to_end(devices: int, workers: int, workdir: Path, *, measure_overhead: bool,
               layout: str) -> EndToEnd:
    """One batch on a fresh home in `workdir`. The caller removes `workdir`, at the very end:
    deleting many files right before a run slows the next run's file creation on ext4 (the
    inode allocator skips recently deleted inodes), which would penalise the following batch."""
    csv_path = device_list(devices)
    warm_inputs(devices)
    home = workdir / "home"
    with console.status("fleetpki init"):
        init_home(home)
    overhead = fixed_overhead(home, workdir, workers, layout) if measure_overhead else None
    result = run_batch(home, csv_path, workdir / "out", devices, workers,
                       workdir / "batch.log", f"fleetpki batch, {devices:,} devices, --layout "
                       f"{layout}", layout)
    if result.exit_code != 0 or result.issued != devices:
        console.print(f"[red]batch exit code {result.exit_code}: {result.summary}; "
                      f"log in {workdir / 'batch.log'}[/red]")
    return EndToEnd(result, overhead)


class Workdirs:
    """Temporary directories for the batches, removed together on exit unless kept."""

    def __init__(self, root: Path | None, keep: bool) -> None:
        self._root = root
        self._keep = keep
        self._paths: list[Path] = []

    def new(self) -> Path:
        if self._root is not None:
            self._root.mkdir(parents=True, exist_ok=True)  # --tmp may name a new directory
        path = Path(tempfile.mkdtemp(prefix="fleetpki-bench-", dir=self._root))
        self._paths.append(path)
        return path

    def __enter__(self) -> Workdirs:
        return self

    def __exit__(self, *exc: object) -> None:
        for path in self._paths:
            if self._keep:
                console.print(f"kept {path}")
                continue
            with console.status(f"removing {path}"):
                shutil.rmtree(path, ignore_errors=True)


# -- reporting -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]MISS[/]"


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    openssl_cli = subprocess.run(["openssl", "version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
    git = ["git", "--no-optional-locks", "-C", str(REPO)]  # read-only: others share the tree
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True, check=False).stdout.split("\n")
    changed = [line[3:] for line in dirty if line.strip()]
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssl_cli": openssl_cli,
        "cryptography_openssl": openssl_backend.openssl_version_text(),
        "fleetpki_source": (head or "unknown") + (
            f" + uncommitted changes to {', '.join(changed)}" if changed else ""),
    }


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def report(info: dict[str, str], speeds: list[SpeedResult], bares: list[RateResult],
           e2e: EndToEnd, million: EndToEnd | None) -> dict[str, object]:
    console.rule("machine")
    for key, value in info.items():
        console.print(f"{key:>22}: {value}")

    rates = Table(title="Issuance rates (certificates per second)", title_justify="left",
                  caption="other load: cores kept busy by other processes during the "
                          "measurement (0 = quiet machine)", caption_justify="left")
    for column in ("measurement", "work", "count", "seconds", "rate /s", "other load"):
        rates.add_column(column, justify="left" if column in ("measurement", "work") else "right")
    for s in speeds:
        bound = 1 / (1 / s.sign_per_s + 1 / s.verify_per_s)
        rates.add_row(f"openssl speed ecdsap256, {s.processes} proc", "ECDSA P-256 sign",
                      "-", "-", f"{s.sign_per_s:,.0f}", f"{s.background_cores:.2f}")
        rates.add_row("", "ECDSA P-256 verify", "-", "-", f"{s.verify_per_s:,.0f}", "")
        rates.add_row("", "1 verify + 1 sign (crypto bound)", "-", "-", f"{bound:,.0f}", "")
    for b in bares:
        rates.add_row(b.label, "read+parse+verify CSR, build+sign cert", f"{b.count:,}",
                      f"{b.seconds:,.2f}", f"{b.rate:,.0f}", f"{b.background_cores:.2f}")
    for run in (e2e, million):
        if run is None:
            continue
        r = run.batch
        rates.add_row(f"fleetpki batch, {r.workers} workers", "end to end (CLI wall clock)",
                      f"{r.issued:,}", f"{r.seconds:,.2f}", f"{r.rate:,.0f}",
                      f"{r.background_cores:.2f}")
        if run.overhead_seconds is not None:
            steady = r.issued / max(r.seconds - run.overhead_seconds, 1e-9)
            rates.add_row("", f"same, minus fixed start-up ({run.overhead_seconds:.2f} s, "
                          "header-only batch)", "", "", f"{steady:,.0f}", "")
    console.print(rates)

    memory = Table(title="fleetpki batch: process tree", title_justify="left",
                   caption="CPU use: tree CPU time / (wall time x cores); CPU us/cert: tree CPU "
                           "per certificate; monitor: this script's polling CPU meanwhile",
                   caption_justify="left")
    for column in ("devices", "peak tree RSS (sum)", "peak tree PSS (sum)",
                   "max single-process RSS", "processes", "CPU s (of it sys)", "CPU use",
                   "CPU us/cert",
                   "monitor", "files", "exit"):
        memory.add_column(column, justify="right")
    for run in (e2e, million):
        if run is None:
            continue
        r = run.batch
        memory.add_row(f"{r.devices:,}", mib(r.memory.peak_rss_kib), mib(r.memory.peak_pss_kib),
                       mib(r.max_single_rss_kib), str(r.memory.peak_processes),
                       f"{r.cpu_seconds:,.1f} ({r.sys_seconds:,.1f})",
                       f"{r.cpu_utilisation:.0%}",
                       f"{1e6 * r.cpu_seconds / max(r.issued, 1):,.0f}",
                       f"{r.monitor_cpu_seconds / r.seconds:.1%}",
                       f"{r.output_files:,}", str(r.exit_code))
    console.print(memory)

    bare = {b.processes: b for b in bares}
    multi = max(bare)
    rate = e2e.batch.rate
    checks = Table(title="Targets", title_justify="left")
    for column in ("figure", "value", "target", "verdict"):
        checks.add_column(column, justify="left" if column == "figure" else "right")
    checks.add_row("end-to-end rate", f"{rate:,.0f} /s", f">= {TARGET_RATE:,.0f} /s",
                   verdict(rate >= TARGET_RATE))
    ratios: dict[str, float] = {}
    for processes in sorted(bare, reverse=True):
        ratio = rate / bare[processes].rate
        ratios[f"e2e/bare_{processes}p"] = ratio
        like = " (like for like)" if processes == multi else ""
        checks.add_row(f"e2e / bare loop, {processes} proc{like}", f"{ratio:.2f}",
                       f">= {TARGET_RATIO:.2f}", verdict(ratio >= TARGET_RATIO))
    if 1 in bare:
        e2e_cpu = e2e.batch.cpu_seconds / max(e2e.batch.issued, 1)
        cost = e2e_cpu / (bare[1].seconds / bare[1].count)
        ratios["cpu_per_cert_e2e/bare_1p"] = cost
        checks.add_row("CPU per certificate, e2e / bare loop", f"{cost:.2f}x", "-", "info")
    for s in speeds:
        ratio = rate / s.sign_per_s
        ratios[f"e2e/openssl_sign_{s.processes}p"] = ratio
        checks.add_row(f"e2e / openssl sign, {s.processes} proc", f"{ratio:.2f}", "-", "info")
    if million is not None:
        m = million.batch
        checks.add_row("1M devices: rate", f"{m.rate:,.0f} /s", f">= {TARGET_RATE:,.0f} /s",
                       verdict(m.rate >= TARGET_RATE))
        checks.add_row("1M devices: peak tree RSS", mib(m.memory.peak_rss_kib),
                       f"< {TARGET_RSS_MB:,.0f} MB",
                       verdict(m.memory.peak_rss_kib * 1024 < TARGET_RSS_MB * 1e6))
        checks.add_row("1M devices: peak tree PSS", mib(m.memory.peak_pss_kib),
                       f"< {TARGET_RSS_MB:,.0f} MB",
                       verdict(m.memory.peak_pss_kib * 1024 < TARGET_RSS_MB * 1e6))
    console.print(checks)
    loads = [x.background_cores for x in speeds] + [b.background_cores for b in bares] + [
        run.batch.background_cores for run in (e2e, million) if run is not None]
    if max(loads) > 0.25:
        console.print(f"[yellow]Other processes kept up to {max(loads):.2f} cores busy during "
                      "the measurements: the rates above are lower than on a quiet machine."
                      "[/yellow]")
    console.print("Verdicts are informational; this script always exits 0.")

    def batch_json(run: EndToEnd | None) -> dict[str, object] | None:
        if run is None:
            return None
        r = run.batch
        return {"devices": r.devices, "workers": r.workers, "seconds": r.seconds,
                "issued": r.issued, "rate": r.rate, "exit_code": r.exit_code,
                "output_files": r.output_files, "overhead_seconds": run.overhead_seconds,
                "peak_tree_rss_kib": r.memory.peak_rss_kib,
                "peak_tree_pss_kib": r.memory.peak_pss_kib,
                "max_single_rss_kib": r.max_single_rss_kib, "cpu_seconds": r.cpu_seconds,
                "sys_seconds": r.sys_seconds,
                "background_cores": r.background_cores,
                "monitor_cpu_seconds": r.monitor_cpu_seconds,
                "memory_samples": r.memory.samples, "summary": r.summary}

    return {
        "machine": info,
        "openssl_speed": [dataclasses.asdict(s) for s in speeds],
        "bare_loop": [dataclasses.asdict(b) | {"rate": b.rate} for b in bares],
        "end_to_end": batch_json(e2e),
        "million": batch_json(million),
        "ratios": ratios,
    }


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=100_000,
                        help="devices in the end-to-end batch [100000]")
    parser.add_argument("--reference-devices", type=int, default=20_000,
                        help="CSRs run through the bare loop (its rate is flat beyond a few "
                             "thousand) [20000, at most --devices]")
    parser.add_argument("--repeats", type=int, default=2,
                        help="bare-loop runs per configuration; the best is reported [2]")
    parser.add_argument("--million", action="store_true",
                        help="also run a 1,000,000-device batch (memory must stay flat)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="fleetpki batch workers and bare-loop processes [one per core]")
    parser.add_argument("--openssl-seconds", type=int, default=3)
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary fleetpki homes and outputs")
    parser.add_argument("--tmp", type=Path, default=None,
                        help="where the temporary homes and outputs go [system temp dir]")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--layout", choices=["jsonl", "files"], default="jsonl",
                        help="output layout of the batch: one certificates.jsonl (default) or a "
                             "file per device [jsonl]")
    args = parser.parse_args(argv)
    if min(args.devices, args.workers, args.repeats, args.reference_devices) < 1:
        parser.error("--devices, --workers, --repeats and --reference-devices must be positive")

    info = machine()  # now: the source under test is the one at the start of the run
    ensure_csrs(max(args.devices, MILLION if args.million else 0), args.workers)

    speeds = []
    for processes in sorted({1, args.workers}):
        with console.status(f"openssl speed ecdsap256, {processes} process(es)"):
            speeds.append(openssl_speed(args.openssl_seconds, processes))

    paths = [str(CACHE / csr_relpath(i))
             for i in range(max(min(args.reference_devices, args.devices), 1))]
    bares = []
    for processes in sorted({1, args.workers}):
        with console.status(f"bare cryptography loop, {processes} process(es)"):
            bares.append(run_bare(paths, processes, args.repeats))
    del paths

    with Workdirs(args.tmp, args.keep) as workdirs:
        e2e = end_to_end(args.devices, args.workers, workdirs.new(), measure_overhead=True,
                         layout=args.layout)
        million = (end_to_end(MILLION, args.workers, workdirs.new(), measure_overhead=False,
                              layout=args.layout) if args.million else None)
        figures = report(info, speeds, bares, e2e, million)
        if args.json is not None:  # before the (slow, for a million files) clean-up
            figures["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            figures["argv"] = sys.argv
            args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
            console.print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
