"""OCSP responses/s over HTTP: `fleetpki serve` against `openssl ocsp -index -port`, in one run.

Run from the repository root, as root (see "network namespace" below):

    .venv/bin/python benchmarks/ocsp_responses.py [--duration 10] [--certificates 3000]
                                                  [--workers 1,2] [--json [PATH]]

What one run does:

1. A real fleetpki home in a temporary directory: `fleetpki init`; fleetpki.toml with
   `[revocation] listen` and `base_url` on a free loopback port (so the certificates point at
   the responder under test); `fleetpki batch --profile sensor --keygen ec-p256` for
   --certificates devices; --revoked-percent of them revoked for keyCompromise through the
   RevocationDesk that `fleetpki certs revoke` drives (in this process: a CLI start-up per
   certificate would take longer than the benchmark); `fleetpki crl publish`, which also makes
   the delegated OCSP responder in <home>/ocsp/.
2. One DER OCSPRequest per certificate with a SHA-1 CertID and no nonce (RFC 5019: the case a
   responder answers pre-signed), and the same requests with a 16-octet nonce (every answer
   signed for its request).
3. `fleetpki serve --listen 127.0.0.1:0 --revocation-listen 127.0.0.1:P --workers W` for each W
   of --workers, ready when it prints "CRLs and OCSP on http://...". Pre-signed answers are
   kept per worker process, so a warm-up sends every request about --warm-rounds times per
   worker (one-second passes with a connection per request, which spreads the requests over
   the workers; at most --warm-max seconds) before anything is timed.
4. The reference, on the same certificates: `openssl ocsp -index index.txt -port P -rsigner
   responder.pem -rkey responder.key -CA issuing.pem -nmin <ocsp validity> -resp_key_id`, one
   process and `-multi 2`. index.txt is written from the store (a V or R line per certificate:
   serial, expiry, revocation time and reason); the responder certificate and key are
   fleetpki's own (the key decrypted into the temporary directory), and -nmin and -resp_key_id
   make its answers carry a nextUpdate and a byKey responderID as fleetpki's do. Ready when its
   log says so (single process: "waiting for OCSP client connections"; -multi logs to syslog
   instead, so: "ACCEPT" and its N children alive): a connect-only probe would wedge it.

Before any load, a sample of answers from every server is decoded and checked (not timed):
successful, the status and revocation time the store holds, the CertID asked, a signature
that verifies under the responder certificate, the nonce echoed.

Phases, each --duration seconds after a one-second untimed pass, loaded by the generator of
benchmarks/ocsp_load.py (`run_load`) from this process (--generators to fork more), with
--connections connections:
- keep-alive: connections kept open, nonce-free requests (pre-signed answers);
- conn. per request: the same with `Connection: close`, a new connection for every request;
- nonce, keep-alive: every answer signed for its request.
openssl ocsp answers HTTP/1.0 and closes the connection after every answer whatever the client
asks, so its "keep-alive" figure is a connection per request as well (the "conn/ans" column
shows it). It also serves one connection at a time per process.

Reported per phase: responses/s, p50/p99 latency, errors, the server's CPU per answer and the
cores it used (/proc, its whole process group) and those of its busiest process (near 1: that
process is the bottleneck), the generator's CPU, and "other load": cores kept busy by other
processes meanwhile (issuance.Background minus the server). Then the ratios
fleetpki / openssl, like for like (1 worker against one process, 2 workers against -multi 2),
and the targets, as information only: >= 5,000 responses/s with keep-alive and >= 2x openssl
ocsp, on this 2-core machine with the load generator on the same cores. The script exits 0
whatever the figures.

Network namespace: `openssl ocsp -port` binds every interface ([::]:P) and cannot be told
otherwise, so the script first moves itself into a network namespace of its own with only
loopback up (unshare(CLONE_NEWNET): root or CAP_SYS_ADMIN); every server and generator it starts
inherits it, and nothing it opens is reachable from outside. Loopback there is the same kernel
path as the host's. Without the privilege the openssl reference is skipped.

Every process started is stopped by its PID and process group in a finally block, and every
wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime as dt
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from issuance import Background
from issuance import machine as issuance_machine
from ocsp_load import LoadResult, run_load
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetpki.core.reasons import RevocationReason
from fleetpki.ocsp_identity import ResponderFiles
from fleetpki.ra.authorizers import local_operator
from fleetpki.wiring import open_fleet

REPO = Path(__file__).resolve().parent.parent
PROFILE = "sensor"
ISSUER = "issuing"  # the issuing CA `fleetpki init` creates; the sensor profile's issuer
HOST = "127.0.0.1"
READY_FLEETPKI = "CRLs and OCSP on http://"
TARGET_RATE = 5000.0  # responses/s, keep-alive
TARGET_RATIO = 2.0  # fleetpki / openssl ocsp
CHECK_SAMPLE = 40  # answers decoded and checked per server (half of them revoked)
KEEP_ALIVE = "keep-alive"
PHASES = ((KEEP_ALIVE, True, False), ("conn. per request", False, False),
          ("nonce, keep-alive", True, True))

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# -- the network namespace -------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = struct.Struct("16sH22x")


def private_network() -> str | None:
    """Move this process into a new network namespace and bring its loopback up. None when
    done, else why not. Call it before any thread starts: the namespace is the calling
    thread's, and the processes it forks inherit it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        return f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _, flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- the fleetpki home and the certificates --------------------------------------------------


def fleetpki(home: Path, *args: str) -> list[str]:
    beside = Path(sys.executable).with_name("fleetpki")
    found = str(beside) if beside.exists() else shutil.which("fleetpki")
    if found is None:
        raise SystemExit("fleetpki is not installed in this environment")
    return [found, "--home", str(home), *args]


def run_cli(home: Path, *args: str, timeout: float) -> str:
    done = subprocess.run(fleetpki(home, *args), capture_output=True, text=True, check=False,
                          timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"fleetpki {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done.stdout


@dataclasses.dataclass(frozen=True)
class Certificate:
    cert: x509.Certificate
    revoked_at: dt.datetime | None
    reason: RevocationReason | None


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Everything both servers answer from, and the requests the generator sends."""

    home: Path
    port: int  # fleetpki's revocation listener (and the base_url in its certificates)
    issuer: x509.Certificate
    responder: x509.Certificate
    certificates: list[Certificate]
    requests: list[bytes]  # SHA-1 CertID, no nonce; one per certificate
    nonced: list[bytes]  # the same with a nonce each
    openssl_dir: Path  # index.txt, issuing.pem, responder.pem, responder.key
    ocsp_minutes: int  # fleetpki's answer validity, given to openssl as -nmin
    timings: dict[str, float]

    @property
    def revoked(self) -> int:
        return sum(c.revoked_at is not None for c in self.certificates)


def prepare(work: Path, count: int, percent: float, seed: int) -> Corpus:
    home, timings = work / "home", {}
    port = free_port()
    started = time.perf_counter()
    with console.status("fleetpki init"):
        run_cli(home, "init", timeout=180)
    (home / "fleetpki.toml").write_text(
        f'[revocation]\nlisten = "{HOST}:{port}"\nbase_url = "http://{HOST}:{port}"\n',
        encoding="utf-8")
    timings["init"] = time.perf_counter() - started

    devices = work / "devices.csv"
    with devices.open("w", encoding="ascii") as handle:
        handle.write("device_id,CN\n")
        handle.writelines(f"ocsp-bench-{i:06d},ocsp-bench-{i:06d}\n" for i in range(count))
    started = time.perf_counter()
    with console.status(f"fleetpki batch --profile {PROFILE} --keygen ec-p256: "
                        f"{count:,} certificates"):
        run_cli(home, "batch", "--profile", PROFILE, "--keygen", "ec-p256", "--no-chain",
                "--devices", str(devices), "--out", str(work / "issued"),
                timeout=600 + count / 20)
    timings["batch"] = time.perf_counter() - started
    leaves = [x509.load_pem_x509_certificate(path.read_bytes())
              for path in sorted((work / "issued").glob("*.pem"))]
    if len(leaves) != count:
        raise SystemExit(f"fleetpki batch wrote {len(leaves)} certificates, not {count}")

    chosen = random.Random(seed).sample(range(count), round(count * percent / 100))
    started = time.perf_counter()
    fleet = open_fleet(home)
    try:
        desk = fleet.revocations(local_operator())
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("revoking (keyCompromise)", total=len(chosen))
            for index in chosen:
                desk.revoke(leaves[index].serial_number, RevocationReason.key_compromise,
                            issuer=ISSUER)
                progress.advance(task)
        timings["revoke"] = time.perf_counter() - started
        statuses = [fleet.store.certificate_status(ISSUER, leaf.serial_number)
                    for leaf in leaves]
        issuer = fleet.chain(ISSUER)[0]
        passphrase = fleet.settings.passphrase.read()
        ocsp_minutes = int(fleet.settings.revocation.ocsp_validity.total_seconds() // 60)
    finally:
        fleet.close()
    certificates = []
    for leaf, status in zip(leaves, statuses, strict=True):
        if status is None:
            raise SystemExit(f"serial {leaf.serial_number:x} is not in the store")
        certificates.append(Certificate(leaf, status.revoked_at, status.reason))

    started = time.perf_counter()
    with console.status("fleetpki crl publish (also makes the OCSP responder)"):
        run_cli(home, "crl", "publish", timeout=180)
    timings["crl_publish"] = time.perf_counter() - started
    files = ResponderFiles.of(home / "ocsp", ISSUER)
    responder = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    openssl_dir = work / "openssl"
    write_openssl_files(openssl_dir, certificates, issuer, files, passphrase)

    with console.status("building OCSP requests"):
        requests, nonced = [], []
        for c in certificates:
            builder = ocsp.OCSPRequestBuilder().add_certificate(
                c.cert, issuer, hashes.SHA1())  # noqa: S303 - the CertID of RFC 5019
            requests.append(builder.build().public_bytes(serialization.Encoding.DER))
            nonced.append(builder.add_extension(x509.OCSPNonce(secrets.token_bytes(16)),
                                                critical=False)
                          .build().public_bytes(serialization.Encoding.DER))
    return Corpus(home, port, issuer, responder, certificates, requests, nonced, openssl_dir,
                  ocsp_minutes, timings)


def write_openssl_files(directory: Path, certificates: Sequence[Certificate],
                        issuer: x509.Certificate, files: ResponderFiles,
                        passphrase: bytes) -> None:
    """openssl's index.txt (what `openssl ca` keeps: status, expiry, revocation[,reason],
    serial, file, subject), the CA certificate, and fleetpki's responder with its key
    decrypted."""
    directory.mkdir(mode=0o700)
    (directory / "issuing.pem").write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    shutil.copyfile(files.certificate, directory / "responder.pem")
    key = serialization.load_pem_private_key(files.key.read_bytes(), passphrase)
    key_file = directory / "responder.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    lines = []
    for c in certificates:
        expiry = c.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        serial = f"{c.cert.serial_number:X}"
        serial = "0" * (len(serial) % 2) + serial  # openssl wants whole octets
        subject = "".join(f"/{a.rfc4514_attribute_name}={a.value!s}"
                          for a in c.cert.subject)
        if c.revoked_at is None:
            lines.append(f"V\t{expiry}\t\t{serial}\tunknown\t{subject}\n")
        else:
            revoked = c.revoked_at.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ")
            if c.reason is RevocationReason.key_compromise:
                revoked += ",keyCompromise"
            lines.append(f"R\t{expiry}\t{revoked}\t{serial}\tunknown\t{subject}\n")
    (directory / "index.txt").write_text("".join(lines), encoding="ascii")
    (directory / "index.txt.attr").write_text("unique_subject = no\n", encoding="ascii")


# -- servers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Server:
    name: str  # e.g. "fleetpki serve, 2 workers"
    kind: str  # "fleetpki" or "openssl"
    processes: int  # workers, or -multi
    url: str  # where OCSP requests are POSTed
    pgid: int  # its process group: the parent and every process it forks


def server_name(kind: str, processes: int) -> str:
    if kind == "fleetpki":
        return f"fleetpki, {processes} worker{'s' * (processes > 1)}"
    return "openssl ocsp" if processes == 1 else f"openssl ocsp -multi {processes}"


def _wait_until(done: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float,
                what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}) before it was ready: "
                               f"{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f} s: {_tail(log)}")
        time.sleep(0.05)


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8", errors="replace")[-2000:]
    return ""


def _stop(process: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM to the PID (a graceful stop), then to its process group, then SIGKILL, each
    wait bounded. The group is the one the process was started in (process_group=0)."""
    pgid = process.pid
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not group_members(pgid) and process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (group_members(pgid) or process.poll() is None):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
    if group_members(pgid):
        console.print(f"[red]{name}: processes {group_members(pgid)} did not stop[/red]")


@contextlib.contextmanager
def fleetpki_server(corpus: Corpus, workers: int, logs: Path,
                    timeout: float = 120.0) -> Iterator[Server]:
    """The real `fleetpki serve`, ready when it prints where it serves CRLs and OCSP."""
    out, err = logs / f"serve-{workers}w.out", logs / f"serve-{workers}w.log"
    command = fleetpki(corpus.home, "serve", "--listen", f"{HOST}:0", "--revocation-listen",
                       f"{HOST}:{corpus.port}", "--workers", str(workers))
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, process_group=0)
    name = server_name("fleetpki", workers)
    try:
        _wait_until(lambda: READY_FLEETPKI in _tail(out), process, timeout, name, err)
        line = next(x for x in _tail(out).splitlines() if x.startswith(READY_FLEETPKI))
        address = line[len(READY_FLEETPKI):].split("/", 1)[0]
        yield Server(name, "fleetpki", workers, f"http://{address}/ocsp", process.pid)
    finally:
        _stop(process, name)


@contextlib.contextmanager
def openssl_server(corpus: Corpus, multi: int, logs: Path,
                   timeout: float = 60.0) -> Iterator[Server]:
    """`openssl ocsp -index -port` over the same certificates and responder key."""
    d, port = corpus.openssl_dir, free_port()
    command = ["openssl", "ocsp", "-index", str(d / "index.txt"), "-port", str(port),
               "-rsigner", str(d / "responder.pem"), "-rkey", str(d / "responder.key"),
               "-CA", str(d / "issuing.pem"), "-nmin", str(corpus.ocsp_minutes),
               "-resp_key_id"]
    if multi > 1:
        command += ["-multi", str(multi)]
    log = logs / f"openssl-ocsp-{multi}.log"
    with log.open("wb") as output:
        # Its own process group but not a new session: with -multi it calls setpgid(0, 0),
        # which fails for a session leader, and then exits.
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, process_group=0)
    name = server_name("openssl", multi)
    try:
        if multi == 1:
            _wait_until(lambda: "waiting for OCSP client connections" in _tail(log), process,
                        timeout, name, log)
        else:  # the children log to syslog: the parent's ACCEPT line and N live children
            def ready() -> bool:
                return "ACCEPT" in _tail(log) and len(group_members(process.pid)) > multi

            _wait_until(ready, process, timeout, name, log)
            time.sleep(0.5)
            _wait_until(ready, process, 1.0, name, log)  # children that died would show
        yield Server(name, "openssl", multi, f"http://{HOST}:{port}/ocsp", process.pid)
    finally:
        _stop(process, name)


# -- CPU accounting from /proc ---------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[bytes] | None:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as handle:
        return handle.read().rsplit(b")", 1)[1].split()
    return None


def group_members(pgid: int) -> list[int]:
    members = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (fields := _stat_fields(pid)) is not None \
                and int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(pid))
    return members


def group_cpu(pgid: int) -> dict[int, float]:
    """CPU seconds of each process of a process group: utime + stime, and those of the
    children it has reaped (a worker that was replaced still counts)."""
    seconds = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (fields := _stat_fields(pid)) is not None \
                and int(fields[2]) == pgid:
            ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # proc(5) fields 14-17
            seconds[int(pid)] = ticks / _TICK
    return seconds


# -- checking answers (untimed) --------------------------------------------------------------


def post(url: str, body: bytes) -> bytes:
    if not url.startswith("http://"):
        raise ValueError(f"{url}: only http:// URLs")
    request = urllib.request.Request(  # noqa: S310 - http:// only, checked above
        url, data=body, method="POST", headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(request, timeout=15) as answer:  # noqa: S310
        return bytes(answer.read())


def check_answers(server: Server, corpus: Corpus) -> tuple[str, int]:
    """Decode and check a sample of answers (half revoked, half good; some with a nonce).
    Returns a verdict and the size of a nonce-free answer."""
    rng = random.Random(1)
    revoked = [i for i, c in enumerate(corpus.certificates) if c.revoked_at is not None]
    good = [i for i, c in enumerate(corpus.certificates) if c.revoked_at is None]
    sample = (rng.sample(revoked, min(len(revoked), CHECK_SAMPLE // 2))
              + rng.sample(good, min(len(good), CHECK_SAMPLE // 2)))
    key = corpus.responder.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    problems, size = [], 0
    for n, index in enumerate(sample):
        expected = corpus.certificates[index]
        nonce = n % 4 == 3
        request_der = corpus.nonced[index] if nonce else corpus.requests[index]
        try:
            der = post(server.url, request_der)
        except OSError as error:
            problems.append(f"POST failed: {error}")
            continue
        size = size or (0 if nonce else len(der))
        answer = ocsp.load_der_ocsp_response(der)
        if answer.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            problems.append(f"responseStatus {answer.response_status.name}")
            continue
        try:
            key.verify(answer.signature, answer.tbs_response_bytes,
                       ec.ECDSA(answer.signature_hash_algorithm))  # type: ignore[arg-type]
        except InvalidSignature:
            problems.append("signature does not verify under the responder certificate")
        want = (ocsp.OCSPCertStatus.GOOD if expected.revoked_at is None
                else ocsp.OCSPCertStatus.REVOKED)
        if answer.serial_number != expected.cert.serial_number:
            problems.append("another serial in the CertID")
        if answer.certificate_status is not want:
            problems.append(f"{answer.certificate_status.name} for a "
                            f"{want.name.lower()} certificate")
        elif expected.revoked_at is not None and (
                answer.revocation_time_utc != expected.revoked_at.replace(microsecond=0)
                or answer.revocation_reason is not x509.ReasonFlags.key_compromise):
            problems.append("revocation time or reason differs from the store")
        if answer.next_update_utc is None:
            problems.append("no nextUpdate")
        if nonce:
            sent = ocsp.load_der_ocsp_request(request_der).extensions.get_extension_for_class(
                x509.OCSPNonce).value.nonce
            try:
                echoed = answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            except x509.ExtensionNotFound:
                echoed = b""
            if echoed != sent:
                problems.append("nonce not echoed")
    if problems:
        first = sorted(set(problems))[:3]
        return f"{len(problems)} PROBLEMS: {'; '.join(first)}", size
    return f"{len(sample)}/{len(sample)} ok", size


# -- measuring -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PhaseResult:
    server: str
    kind: str  # fleetpki | openssl
    processes: int
    phase: str
    connections: int
    responses: int
    errors: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    connections_opened: int
    server_cpu_us: float  # per answer, the whole process group
    server_cores: float
    busiest_cores: float  # the server's busiest process: near 1.0, it is the limit
    generator_cpu_us: float
    generator_cores: float
    other_cores: float
    error_samples: tuple[str, ...]


def measure(server: Server, phase: str, requests: list[bytes], *, connections: int,
            duration: float, keep_alive: bool, generators: int) -> PhaseResult:
    run_load(server.url, requests, connections=connections, duration=1.0,
             keep_alive=keep_alive, processes=generators)  # untimed
    with Background() as background:
        cpu_before, started = group_cpu(server.pgid), time.perf_counter()
        result: LoadResult = run_load(server.url, requests, connections=connections,
                                      duration=duration, keep_alive=keep_alive,
                                      processes=generators)
        wall, cpu_after = time.perf_counter() - started, group_cpu(server.pgid)
    used = {pid: cpu - cpu_before.get(pid, 0.0) for pid, cpu in cpu_after.items()}
    server_cpu = sum(used.values())
    answers = max(result.responses, 1)
    return PhaseResult(
        server=server.name, kind=server.kind, processes=server.processes, phase=phase,
        connections=connections, responses=result.responses, errors=result.errors,
        seconds=result.seconds, rate=result.rate, p50_ms=result.p50_ms, p99_ms=result.p99_ms,
        connections_opened=result.connections, server_cpu_us=server_cpu / answers * 1e6,
        server_cores=server_cpu / wall, busiest_cores=max(used.values(), default=0.0) / wall,
        generator_cpu_us=result.cpu_seconds / answers * 1e6,
        generator_cores=result.cpu_seconds / wall,
        other_cores=max(background.cores - server_cpu / wall, 0.0),
        error_samples=result.error_samples)


def warm_up(server: Server, corpus: Corpus, *, connections: int, generators: int,
            rounds: float, limit: float) -> tuple[int, float]:
    """Until each worker has most likely been asked every nonce-free request (pre-signed
    answers are per process): `rounds` answers per request and worker in all, at most `limit`
    seconds. One-second passes with a connection per request: kept-alive connections opened
    together may all land in one worker (the workers race to accept on one socket), while
    one connection per request spreads the requests over the workers."""
    wanted = rounds * len(corpus.requests) * server.processes
    answers, started = 0, time.perf_counter()
    while answers < wanted and time.perf_counter() - started < limit:
        result = run_load(server.url, corpus.requests, connections=connections, duration=1.0,
                          keep_alive=False, processes=generators)
        answers += result.responses
    return answers, time.perf_counter() - started


@dataclasses.dataclass
class ServerRun:
    server: str
    kind: str
    processes: int
    checked: str = ""
    answer_bytes: int = 0
    warm_answers: int = 0
    warm_seconds: float = 0.0
    failure: str = ""
    phases: list[PhaseResult] = dataclasses.field(default_factory=list)


def run_server(server: Server, corpus: Corpus, args: argparse.Namespace,
               record: ServerRun) -> None:
    with console.status(f"{server.name}: checking {CHECK_SAMPLE} answers"):
        record.checked, record.answer_bytes = check_answers(server, corpus)
    console.print(f"{server.name}: answers checked: {record.checked}")
    if server.kind == "fleetpki":
        with console.status(f"{server.name}: warm-up (pre-signing every answer in every "
                            "worker)"):
            record.warm_answers, record.warm_seconds = warm_up(
                server, corpus, connections=args.connections, generators=args.generators,
                rounds=args.warm_rounds, limit=args.warm_max)
        console.print(f"{server.name}: warm-up {record.warm_answers:,} answers in "
                      f"{record.warm_seconds:.1f} s")
    for phase, keep_alive, nonce in PHASES:
        if nonce and args.no_nonce:
            continue
        with console.status(f"{server.name}: {phase}, {args.duration:g} s"):
            result = measure(server, phase, corpus.nonced if nonce else corpus.requests,
                             connections=args.connections, duration=args.duration,
                             keep_alive=keep_alive, generators=args.generators)
        record.phases.append(result)
        console.print(f"{server.name}: {phase}: {result.rate:,.0f} responses/s, "
                      f"{result.errors} errors, other load {result.other_cores:.2f}")


# -- reporting -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    return {**issuance_machine(), "date": dt.datetime.now(dt.UTC).isoformat("T", "seconds")}


def _find(runs: list[ServerRun], kind: str, processes: int, phase: str) -> PhaseResult | None:
    return next((p for r in runs if r.kind == kind and r.processes == processes
                 for p in r.phases if p.phase == phase), None)


def _pairs(runs: list[ServerRun]) -> list[tuple[str, int | None]]:
    """What is compared: each process count both sides ran, then the best of each side."""
    ours = {r.processes for r in runs if r.kind == "fleetpki"}
    theirs = {r.processes for r in runs if r.kind == "openssl"}
    both: list[tuple[str, int | None]] = [
        (f"{n} worker{'s' * (n > 1)} / {server_name('openssl', n)}", n)
        for n in sorted(ours & theirs)]
    return [*both, ("best / best", None)] if ours and theirs else []


def ratios(runs: list[ServerRun]) -> list[dict[str, object]]:
    """fleetpki / openssl: like for like (as many processes) and best against best."""
    rows: list[dict[str, object]] = []
    for phase, _, _ in PHASES:
        for label, n in _pairs(runs):
            if n is not None:
                ours, theirs = (_find(runs, "fleetpki", n, phase),
                                _find(runs, "openssl", n, phase))
            else:
                ours = max((p for r in runs if r.kind == "fleetpki" for p in r.phases
                            if p.phase == phase), key=lambda p: p.rate, default=None)
                theirs = max((p for r in runs if r.kind == "openssl" for p in r.phases
                              if p.phase == phase), key=lambda p: p.rate, default=None)
            if ours is None or theirs is None or theirs.rate <= 0:
                continue
            rows.append({"phase": phase, "compared": label if n is not None else
                         f"best / best ({ours.server} / {theirs.server})",
                         "fleetpki": ours.rate, "openssl": theirs.rate,
                         "ratio": ours.rate / theirs.rate,
                         "cpu_ratio": theirs.server_cpu_us / max(ours.server_cpu_us, 1e-9)})
    return rows


def targets(runs: list[ServerRun], compared: list[dict[str, object]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    keep = [p for r in runs if r.kind == "fleetpki" for p in r.phases if p.phase == KEEP_ALIVE]
    if keep:
        best = max(keep, key=lambda p: p.rate)
        rows.append({"figure": f"responses/s, keep-alive ({best.server})", "measured": best.rate,
                     "shown": f"{best.rate:,.0f}", "target": f">= {TARGET_RATE:,.0f}",
                     "met": best.rate >= TARGET_RATE})
    most = max((r.processes for r in runs if r.kind == "fleetpki"), default=0)
    wanted = [r for r in compared if r["phase"] == KEEP_ALIVE
              and str(r["compared"]).startswith(f"{most} worker")]
    for row in wanted or [r for r in compared if r["phase"] == KEEP_ALIVE]:
        ratio = float(row["ratio"])  # type: ignore[arg-type]
        rows.append({"figure": f"keep-alive / openssl ocsp ({row['compared']})",
                     "measured": ratio, "shown": f"{ratio:.2f}x",
                     "target": f">= {TARGET_RATIO:g}x", "met": ratio >= TARGET_RATIO})
    return rows


def report(info: dict[str, str], corpus: Corpus, runs: list[ServerRun],
           args: argparse.Namespace, network: str | None) -> dict[str, object]:
    console.rule("OCSP responses/s over HTTP: fleetpki serve vs openssl ocsp")
    console.print("  ".join(f"{key}: {value}" for key, value in info.items()))
    console.print(f"{len(corpus.certificates):,} certificates ({corpus.revoked:,} revoked, "
                  f"keyCompromise), SHA-1 CertIDs; {args.connections} connections from "
                  f"{args.generators} generator process(es); {args.duration:g} s per phase")
    table = Table(title="per phase", title_justify="left", caption=(
        "µs/ans: CPU per answer (server: its whole process group). cores: CPU time / wall "
        "time. busiest: the server's busiest process, in cores (near 1: that process is the "
        "limit). other: cores kept busy by other processes meanwhile. conn/ans: connections "
        "opened per answer (openssl ocsp closes after every answer, even when asked to keep "
        "the connection: its keep-alive is a connection per request)."),
        caption_justify="left")
    for column in ("server", "phase", "resp/s", "p50 ms", "p99 ms", "errors", "conn/ans",
                   "server µs/ans", "server cores", "busiest", "gen µs/ans", "gen cores",
                   "other"):
        table.add_column(column, justify="left" if column in ("server", "phase") else "right",
                         no_wrap=column in ("server", "phase"))
    for run in runs:
        if run.failure:
            table.add_row(run.server, "[red]FAILED[/red]", *[""] * 11)
        for p in run.phases:
            table.add_row(p.server, p.phase, f"{p.rate:,.0f}", f"{p.p50_ms:.2f}",
                          f"{p.p99_ms:.2f}", f"{p.errors:,}",
                          f"{p.connections_opened / max(p.responses, 1):.2f}",
                          f"{p.server_cpu_us:,.0f}", f"{p.server_cores:.2f}",
                          f"{p.busiest_cores:.2f}", f"{p.generator_cpu_us:,.0f}",
                          f"{p.generator_cores:.2f}", f"{p.other_cores:.2f}")
    console.print(table)
    for run in runs:
        if run.failure:
            console.print(f"[red]{run.server} failed: {run.failure}[/red]")
            continue
        extra = (f"; warm-up {run.warm_answers:,} answers in {run.warm_seconds:.1f} s"
                 if run.kind == "fleetpki" else "")
        console.print(f"{run.server}: answers checked {run.checked or '-'}; a nonce-free "
                      f"answer is {run.answer_bytes} bytes{extra}")
        for p in run.phases:
            for sample in p.error_samples[:3]:
                console.print(f"  [yellow]{p.phase} error: {sample}[/yellow]")
    if network is not None:
        console.print(f"[yellow]no private network namespace ({network}): openssl ocsp, which "
                      "binds every interface, was not run[/yellow]")

    compared = ratios(runs)
    if compared:
        table = Table(title="fleetpki / openssl ocsp (above 1: fleetpki answers more)",
                      title_justify="left", caption="CPU ratio: openssl's server CPU per answer "
                      "/ fleetpki's (above 1: fleetpki spends less per answer).",
                      caption_justify="left")
        for column in ("phase", "compared", "fleetpki /s", "openssl /s", "ratio", "CPU ratio"):
            table.add_column(column, justify="left" if column in ("phase", "compared")
                             else "right")
        for row in compared:
            table.add_row(str(row["phase"]), str(row["compared"]), f"{row['fleetpki']:,.0f}",
                          f"{row['openssl']:,.0f}", f"{row['ratio']:.2f}",
                          f"{row['cpu_ratio']:.2f}")
        console.print(table)
    goals = targets(runs, compared)
    if goals:
        table = Table(title="targets (information only: the script always exits 0)",
                      title_justify="left", caption="on this machine, the load generator "
                      "sharing its cores", caption_justify="left")
        for column in ("figure", "measured", "target", "verdict"):
            table.add_column(column, justify="left" if column == "figure" else "right")
        for goal in goals:
            table.add_row(str(goal["figure"]), str(goal["shown"]), str(goal["target"]),
                          "[bold green]MET[/]" if goal["met"] else "[bold red]MISSED[/]")
        console.print(table)
    lopsided = [f"{p.server} ({p.phase}): {p.busiest_cores / p.server_cores:.0%}"
                for r in runs if r.processes > 1 for p in r.phases
                if p.server_cores > 0 and p.busiest_cores / p.server_cores > 0.8]
    if lopsided:
        console.print("One process did most of a multi-process server's work (kept-alive "
                      "connections opened together can all be accepted by one worker): "
                      + "; ".join(lopsided) + ".")
    saturated = sorted({f"{p.server} ({p.phase})" for r in runs for p in r.phases
                        if p.generator_cores / args.generators >= 0.9})
    if saturated:
        console.print(f"The load generator ran at its limit (>= 0.9 cores per process) "
                      f"against: {', '.join(saturated)}.")
    loads = [p.other_cores for r in runs for p in r.phases]
    if loads and max(loads) > 0.25:
        console.print(f"[yellow]Other processes kept up to {max(loads):.2f} cores busy during "
                      "the measurements.[/yellow]")
    return {"machine": info, "certificates": len(corpus.certificates),
            "revoked": corpus.revoked, "connections": args.connections,
            "generators": args.generators, "duration": args.duration,
            "setup_seconds": corpus.timings, "private_network": network is None,
            "servers": [dataclasses.asdict(r) for r in runs],
            "ratios": compared, "targets": goals}


# -- main ------------------------------------------------------------------------------------


def counts(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive process counts")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per measured phase [10]")
    parser.add_argument("--certificates", type=int, default=3000,
                        help="certificates issued and asked about [3000]")
    parser.add_argument("--revoked-percent", type=float, default=10.0,
                        help="share of them revoked, keyCompromise [10]")
    parser.add_argument("--workers", type=counts, default=[1, 2],
                        help="fleetpki serve --workers, and openssl ocsp -multi, comma-separated "
                             "[1,2]")
    parser.add_argument("--connections", type=int, default=32,
                        help="concurrent connections of the load generator [32]")
    parser.add_argument("--generators", type=int, default=1,
                        help="load generator processes [1]")
    parser.add_argument("--warm-rounds", type=float, default=8.0,
                        help="warm-up: requests per certificate and fleetpki worker [8]")
    parser.add_argument("--warm-max", type=float, default=60.0,
                        help="warm-up: at most these many seconds per server [60]")
    parser.add_argument("--no-nonce", action="store_true", help="skip the nonce phases")
    parser.add_argument("--no-openssl", action="store_true", help="skip the openssl reference")
    parser.add_argument("--tmp", type=Path, default=None, help="where the temporary home goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="also write every figure as JSON to PATH (stdout without PATH)")
    args = parser.parse_args(argv)
    if args.certificates < 1 or args.duration <= 0 or args.connections < 1 \
            or args.generators < 1 or not 0 <= args.revoked_percent <= 100:
        parser.error("--certificates, --duration, --connections and --generators must be "
                     "positive, --revoked-percent between 0 and 100")
    global console
    if args.json == "-":  # keep stdout for the JSON
        console = Console(highlight=False, stderr=True,
                          width=None if sys.stderr.isatty() else 160)

    network = private_network()  # first: before anything starts a thread
    openssl = shutil.which("openssl")
    skip_openssl = args.no_openssl or network is not None or openssl is None
    if network is not None:
        console.print(f"[yellow]cannot make a private network namespace ({network}): the "
                      "openssl reference is skipped (it would listen on every interface)[/]")
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="fleetpki-ocsp-bench-", dir=args.tmp))
    logs = work / "logs"
    logs.mkdir()
    runs: list[ServerRun] = []
    try:
        corpus = prepare(work, args.certificates, args.revoked_percent, seed=6960)
        console.print(f"{len(corpus.certificates):,} certificates, {corpus.revoked:,} revoked; "
                      "setup " + ", ".join(f"{k} {v:.1f} s" for k, v in
                                           corpus.timings.items()))
        starts = [("fleetpki", n) for n in args.workers]
        if not skip_openssl:
            starts += [("openssl", n) for n in args.workers]
        for kind, n in starts:
            record = ServerRun(server_name(kind, n), kind, n)
            runs.append(record)
            console.print(f"starting {record.server}")
            try:
                with (fleetpki_server(corpus, n, logs) if kind == "fleetpki"
                      else openssl_server(corpus, n, logs)) as server:
                    run_server(server, corpus, args, record)
            except (RuntimeError, OSError) as error:
                record.failure = str(error)
                console.print(f"[red]{record.server}: {error}[/red]")
        figures = report(info, corpus, runs, args, network)
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json == "-":
        print(json.dumps(figures, indent=2, default=str))
    elif args.json is not None:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n",
                                   encoding="utf-8")
        console.print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
