"""CRL generation: fleetpki's `sign_crl` against `openssl ca -gencrl` on the same revoked entries.

Run from the repository root:

    .venv/bin/python benchmarks/crl_generation.py [--sizes 10000,100000,1000000] [--json [PATH]]

For each size N, in one run, with one P-256 issuing CA (made by fleetpki's own ceremony):

(a) fleetpki: `sign_crl(signer, CrlFields(...), entries)` in this process: encode the
    TBSCertList, sign it once, return the DER. The N entries come from `entries_source(n)` and
    are collected *before* the clock starts, so the cost of producing them (today a generator,
    later a stream from the SQL store) is reported beside the figure, not inside it.
(a') fleetpki from the store: the same N entries as revoked certificate rows in a SQLite
    store (filled untimed, see store_rows.py), then `sign_crl` over `store.revoked_entries(...)`
    as the publisher runs it: the entries stream from the database into the encoder, so the
    time includes reading, converting and encoding every row. This is the figure that answers
    "how long does publishing a CRL of N entries take".
(b) the reference: `openssl ca -gencrl` in a subprocess, on the same N entries written as an
    openssl `index.txt` (one `R` line each: same serials, revocation times and reasons;
    keyCompromise entries carry their invalidity date as openssl's `keyTime`), with the same CA
    key and certificate and the same CRL extensions (AKI, cRLNumber). Wall clock of that one
    command: start-up, reading the index, building and sorting the entries, signing, writing
    the CRL (PEM: `openssl ca` has no DER output). Writing the index is not timed.

Reported: seconds and DER bytes of each, and openssl seconds / fleetpki seconds (above 1:
fleetpki is faster). Each measurement is the best of --repeats runs. Afterwards (untimed) both
CRLs are parsed with cryptography, checked to verify under the CA key, to hold N entries and,
up to --compare-up-to entries, to hold the same serials, reasons and invalidity dates. Every
measurement also reports "other load", the cores other processes kept busy meanwhile. There are
no targets: the script always exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from issuance import Background
from issuance import machine as issuance_machine
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from store_rows import Row, fill

from fleetpki.ca.ceremony import ca_name, create_issuing, create_root
from fleetpki.ca.crl_signing import CrlFields, sign_crl
from fleetpki.ca.signer import Signer
from fleetpki.core.keys import KeySpec
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CARecord, CARole, RevokedEntry
from fleetpki.store.api import AuditEvent, RevokedQuery
from fleetpki.store.sql.store import SqlStore

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
CRL_DAYS = 7
SEED = 5280
MIN_LOAD_SECONDS = 0.5

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


# -- the entries -----------------------------------------------------------------------------

# How often each reason occurs. None and unspecified both end up without a reasonCode
# (RFC 5280 §5.3.1); keyCompromise entries also carry an invalidity date.
REASON_MIX: tuple[tuple[RevocationReason | None, int], ...] = (
    (None, 50),
    (RevocationReason.superseded, 20),
    (RevocationReason.cessation_of_operation, 15),
    (RevocationReason.affiliation_changed, 5),
    (RevocationReason.key_compromise, 5),
    (RevocationReason.unspecified, 5),
)


def entries_source(n: int) -> Iterator[RevokedEntry]:
    """The N revoked entries both tools get. Deterministic (seeded): fleetpki-shaped serials
    (127 random bits, at least 64 significant), revocation times spread over the last year in
    chronological order with microseconds, as a store returns them (so no two share an instant:
    the worst case for fleetpki's Time cache), and the reasons of REASON_MIX.

    The one place entries come from: switch this to stream from the SQL store and the rest of
    the benchmark stays as it is."""
    rng = random.Random(SEED)
    reasons = [reason for reason, weight in REASON_MIX for _ in range(weight)]
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=365)
    step = dt.timedelta(days=365) / max(n, 1)
    for index in range(n):
        serial = rng.getrandbits(127) | (1 << 64)
        revoked_at = start + step * index + dt.timedelta(microseconds=rng.randrange(1000))
        reason = reasons[rng.randrange(len(reasons))]
        invalidity = (revoked_at - dt.timedelta(hours=rng.randrange(1, 72))
                      if reason is RevocationReason.key_compromise else None)
        yield RevokedEntry(serial, revoked_at, reason, invalidity)


def collect(n: int) -> tuple[list[RevokedEntry], float]:
    """entries_source(n) as a list, with a progress bar; and the seconds it took.

    The cyclic garbage collector is paused meanwhile and the entries are frozen afterwards:
    otherwise it scans the growing list again and again (a million entries took 15 s instead
    of 5), and later scans of them would land inside the timed runs. A stream from the store
    holds no such list."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    entries: list[RevokedEntry] = []
    gc.disable()
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"entries_source({n:,})", total=n)
            started = time.perf_counter()
            for entry in entries_source(n):
                entries.append(entry)
                if len(entries) % 10_000 == 0:
                    progress.update(task, completed=len(entries))
            seconds = time.perf_counter() - started
    finally:
        gc.enable()
    gc.collect()
    gc.freeze()
    return entries, seconds


# -- openssl's side --------------------------------------------------------------------------

# openssl ca's names for the reasons (apps/ca.c crl_reasons[]; it has none for
# privilegeWithdrawn and aACompromise). 'unspecified' is left out of the index on purpose:
# openssl would then write reasonCode unspecified, where fleetpki writes none (RFC 5280 §5.3.1).
# keyCompromise with an invalidity date is openssl's "keyTime,<GeneralizedTime>".
OPENSSL_REASONS = {
    RevocationReason.key_compromise: "keyCompromise",
    RevocationReason.ca_compromise: "CACompromise",
    RevocationReason.affiliation_changed: "affiliationChanged",
    RevocationReason.superseded: "superseded",
    RevocationReason.cessation_of_operation: "cessationOfOperation",
    RevocationReason.certificate_hold: "certificateHold",
}

OPENSSL_CONFIG = """\
[ ca ]
default_ca = bench

[ bench ]
database = {directory}/index.txt
certificate = {directory}/ca.pem
private_key = {directory}/ca.key
crlnumber = {directory}/crlnumber
default_md = sha256
default_crl_days = {days}
crl_extensions = crl_ext
unique_subject = no

[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


def index_line(entry: RevokedEntry) -> str:
    """One `R` line of openssl's index.txt: status, expiry, revocation[,reason[,time]], serial,
    file name, subject. openssl ca -gencrl reads only the status, revocation field and serial."""
    revoked = entry.revoked_at.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ")
    if entry.reason is RevocationReason.key_compromise and entry.invalidity_date is not None:
        invalidity = entry.invalidity_date.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")
        revoked += f",keyTime,{invalidity}"
    elif entry.reason is not None and entry.reason is not RevocationReason.unspecified:
        revoked += "," + OPENSSL_REASONS[entry.reason]
    serial = f"{entry.serial:X}"
    if len(serial) % 2:  # openssl refuses an odd number of hex digits ("bad serial number length")
        serial = "0" + serial
    return f"R\t491231235959Z\t{revoked}\t{serial}\tunknown\t/CN=device\n"


def openssl_ca_directory(directory: Path, signer: Signer, entries: Sequence[RevokedEntry]
                         ) -> Path:
    """A minimal `openssl ca` home: CA certificate and key, config, and the index."""
    directory.mkdir(parents=True)
    (directory / "ca.pem").write_bytes(signer.certificate.public_bytes(
        serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    config = directory / "ca.cnf"
    config.write_text(OPENSSL_CONFIG.format(directory=directory, days=CRL_DAYS),
                      encoding="ascii")
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress, \
            (directory / "index.txt").open("w", encoding="ascii") as index:
        task = progress.add_task(f"writing openssl index.txt ({len(entries):,} R lines)",
                                 total=len(entries))
        for start in range(0, len(entries), 10_000):
            index.writelines(index_line(e) for e in entries[start:start + 10_000])
            progress.update(task, completed=min(start + 10_000, len(entries)))
    return config


def openssl_gencrl(openssl: str, config: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `openssl ca -gencrl` (cRLNumber 1, like fleetpki's run)."""
    (config.parent / "crlnumber").write_text("01\n", encoding="ascii")
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run([openssl, "ca", "-config", str(config), "-gencrl", "-out", str(out)],
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"openssl ca -gencrl failed ({done.returncode}):\n{done.stderr}")
    return seconds, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- measuring -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    seconds: float  # wall clock
    cpu_seconds: float  # user + system: what a busy machine changes least
    size: int
    background_cores: float


@dataclasses.dataclass(frozen=True)
class Result:
    entries: int
    source_seconds: float
    fleetpki: Run
    from_store: Run
    openssl: Run
    checked: str

    @property
    def ratio(self) -> float:
        return self.openssl.seconds / self.fleetpki.seconds

    @property
    def store_ratio(self) -> float:
        return self.openssl.seconds / self.from_store.seconds

    @property
    def cpu_ratio(self) -> float:
        return self.openssl.cpu_seconds / max(self.fleetpki.cpu_seconds, 1e-9)


def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.seconds)


def measure(n: int, signer: Signer, openssl: str, workdir: Path, repeats: int,
            compare_up_to: int) -> Result:
    console.rule(f"{n:,} entries")
    entries, source_seconds = collect(n)
    console.print(f"entries_source({n:,}): {source_seconds:,.2f} s (not timed below)")

    now = dt.datetime.now(dt.UTC)
    fields = CrlFields(number=1, this_update=now, next_update=now + dt.timedelta(days=CRL_DAYS))
    ours: list[Run] = []
    der = b""
    for attempt in range(1, repeats + 1):
        del der
        console.print(f"fleetpki sign_crl, run {attempt}/{repeats} ...")
        with Background() as background:
            started, cpu_before = time.perf_counter(), time.process_time()
            der = sign_crl(signer, fields, entries)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        ours.append(Run(seconds, cpu, len(der), background.cores))

    from_store = streamed_from_store(n, signer, entries, fields, workdir, repeats)

    config = openssl_ca_directory(workdir / f"openssl-{n}", signer, entries)
    pem_path = config.parent / "crl.pem"
    theirs: list[Run] = []
    for attempt in range(1, repeats + 1):
        with console.status(f"openssl ca -gencrl, run {attempt}/{repeats}"), \
                Background() as background:
            seconds, cpu = openssl_gencrl(openssl, config, pem_path)
        theirs.append(Run(seconds, cpu, 0, background.cores))
    with console.status("checking both CRLs (untimed)"):
        reference = x509.load_pem_x509_crl(pem_path.read_bytes())
        reference_der = reference.public_bytes(serialization.Encoding.DER)
        theirs = [dataclasses.replace(r, size=len(reference_der)) for r in theirs]
        checked = check(x509.load_der_x509_crl(der), reference, signer, entries, compare_up_to)
    del entries, der
    gc.unfreeze()
    gc.collect()
    return Result(n, source_seconds, best(ours), from_store, best(theirs), checked)


def streamed_from_store(n: int, signer: Signer, entries: Sequence[RevokedEntry],
                        fields: CrlFields, workdir: Path, repeats: int) -> Run:
    """The same entries as rows of a real store, streamed into sign_crl; best of `repeats`."""
    directory = workdir / f"store-{n}"
    directory.mkdir()
    store = SqlStore(f"sqlite:///{directory / 'fleet.db'}")
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    store.add_ca(CARecord(signer.name, CARole.issuing, signer.certificate.public_bytes(
        serialization.Encoding.DER), None, "k", issued),
        AuditEvent("bench", "ca.created", signer.name), at=issued)
    not_after = fields.this_update + dt.timedelta(days=365)
    fill(directory / "fleet.db", signer.name, "bench", (
        Row(e.serial, not_after, None, e.revoked_at, e.reason or RevocationReason.unspecified,
            e.invalidity_date) for e in entries), total=n, issued_at=issued)
    query = RevokedQuery(issuer=signer.name, valid_at=fields.this_update,
                         expired_cutoff=fields.this_update)
    runs = []
    for attempt in range(1, repeats + 1):
        console.print(f"fleetpki from the store, run {attempt}/{repeats} ...")
        with Background() as background:
            started, cpu_before = time.perf_counter(), time.process_time()
            der = sign_crl(signer, fields, store.revoked_entries(query))
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        if len(x509.load_der_x509_crl(der)) != n:
            raise SystemExit(f"the store streamed a CRL without {n} entries")
        runs.append(Run(seconds, cpu, len(der), background.cores))
    store.close()
    shutil.rmtree(directory, ignore_errors=True)
    return best(runs)


def check(ours: x509.CertificateRevocationList, theirs: x509.CertificateRevocationList,
          signer: Signer, entries: Sequence[RevokedEntry], compare_up_to: int) -> str:
    """Both verify under the CA key and hold len(entries) entries; up to `compare_up_to`
    entries, the same serials with the same extensions (openssl sorts by serial)."""
    key = signer.certificate.public_key()
    for name, crl in (("fleetpki", ours), ("openssl", theirs)):
        if not crl.is_signature_valid(key):  # type: ignore[arg-type]
            return f"{name}: signature does not verify"
        if len(crl) != len(entries):
            return f"{name}: {len(crl):,} entries, expected {len(entries):,}"
    if len(entries) > compare_up_to:
        return "count, signature"

    def summary(crl: x509.CertificateRevocationList) -> dict[int, tuple[object, ...]]:
        return {r.serial_number: (r.revocation_date_utc, *(e.value for e in r.extensions))
                for r in crl}

    if summary(ours) != summary(theirs):
        return "MISMATCH: the entries differ"
    return "same entries"


# -- reporting -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    return {**issuance_machine(), "issuer_key": "ec-p256 (sha256)",
            "date": dt.datetime.now(dt.UTC).isoformat("T", "seconds")}


def load(run: Run) -> str:
    """Other load, where the run lasted long enough for /proc/stat's 10 ms ticks to say."""
    return f"{run.background_cores:.2f}" if run.seconds >= MIN_LOAD_SECONDS else "-"


def report(info: dict[str, str], results: list[Result], repeats: int) -> dict[str, object]:
    console.rule("CRL generation: fleetpki sign_crl vs openssl ca -gencrl")
    console.print("  ".join(f"{key}: {value}" for key, value in info.items()))
    table = Table(title=f"Best of {repeats} run(s) each; sizes in DER bytes", title_justify="left",
                  caption="seconds: wall clock (CPU seconds). source: entries_source, not timed "
                          "in the others. ratio: openssl / fleetpki, wall (CPU); above 1: "
                          "fleetpki faster. other load: cores kept busy by other processes, "
                          "fleetpki / openssl (-: under 0.5 s, too short to tell).",
                  caption_justify="left")
    for column in ("entries", "source s", "fleetpki s", "from store s", "fleetpki bytes",
                   "openssl s", "openssl bytes", "ratio", "store ratio", "other load",
                   "checked"):
        table.add_column(column, justify="left" if column == "checked" else "right")
    for r in results:
        table.add_row(f"{r.entries:,}", f"{r.source_seconds:,.2f}",
                      f"{r.fleetpki.seconds:,.3f} ({r.fleetpki.cpu_seconds:,.2f})",
                      f"{r.from_store.seconds:,.3f} ({r.from_store.cpu_seconds:,.2f})",
                      f"{r.fleetpki.size:,}",
                      f"{r.openssl.seconds:,.3f} ({r.openssl.cpu_seconds:,.2f})",
                      f"{r.openssl.size:,}", f"{r.ratio:,.2f} ({r.cpu_ratio:,.2f})",
                      f"{r.store_ratio:,.2f}",
                      f"{load(r.fleetpki)} / {load(r.openssl)}", r.checked)
    console.print(table)
    loads = [run.background_cores for r in results for run in (r.fleetpki, r.openssl)
             if run.seconds >= MIN_LOAD_SECONDS]
    if loads and max(loads) > 0.25:
        console.print(f"[yellow]Other processes kept up to {max(loads):.2f} cores busy during "
                      "the measurements.[/yellow]")
    console.print("No targets; this script always exits 0.")
    return {"machine": info, "repeats": repeats, "results": [
        {"entries": r.entries, "source_seconds": r.source_seconds,
         "fleetpki": dataclasses.asdict(r.fleetpki),
         "fleetpki_from_store": dataclasses.asdict(r.from_store),
         "openssl": dataclasses.asdict(r.openssl),
         "ratio_openssl_over_fleetpki": r.ratio,
         "ratio_openssl_over_fleetpki_from_store": r.store_ratio,
         "cpu_ratio_openssl_over_fleetpki": r.cpu_ratio, "checked": r.checked}
        for r in results]}


# -- main ------------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive entry counts")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=sizes, default=list(DEFAULT_SIZES),
                        help="entry counts, comma-separated [10000,100000,1000000]")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each tool per size; the best is reported [2]")
    parser.add_argument("--compare-up-to", type=int, default=100_000,
                        help="compare the two CRLs entry by entry up to this size [100000]")
    parser.add_argument("--tmp", type=Path, default=None,
                        help="where openssl's index and CRLs go [system temp dir]")
    parser.add_argument("--keep", action="store_true", help="keep the openssl directories")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="also write every figure as JSON to PATH (stdout without PATH)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be positive")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("openssl is not on PATH: install the Debian package 'openssl'")

    info = machine()
    with console.status("creating a P-256 root and issuing CA"):
        now = dt.datetime.now(dt.UTC)
        root = create_root("bench-root", ca_name("Bench Root", "fleetpki"),
                           KeySpec.parse("ec-p256"), now=now - dt.timedelta(days=1))
        signer = create_issuing("bench-issuing", ca_name("Bench Issuing CA", "fleetpki"),
                                KeySpec.parse("ec-p256"), root, now=now - dt.timedelta(days=1))
    workdir = Path(tempfile.mkdtemp(prefix="fleetpki-crl-bench-", dir=args.tmp))
    try:
        results = [measure(n, signer, openssl, workdir, args.repeats, args.compare_up_to)
                   for n in args.sizes]
        figures = report(info, results, args.repeats)
    finally:
        if args.keep:
            console.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json == "-":
        print(json.dumps(figures, indent=2))
    elif args.json is not None:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        console.print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
