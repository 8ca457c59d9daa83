"""The inventory (admin REST API and dashboard) with a million certificates in the store.

Run from the repository root:

    .venv/bin/python benchmarks/inventory.py [--certificates 1000000] [--home DIR]

Setup, cached in --home (default .benchcache/inventory-N) and reused when it already holds N
certificates made by the same migrations:

- `fleetpki init` makes the home (SQLite store, P-256 root and issuing CA, default profiles);
- a pool of --pool (2,000) real certificates is issued through the RA (`fleet.issuance`),
  profile "sensor" (EC P-256 or P-384) and "gateway" (EC P-256, P-384 or RSA-2048);
- the other N - pool certificates are inserted as rows, with what `fleetpki batch` writes: a
  serial reservation marked issued, the certificate row, and its hash-chained audit entry
  (appended by the store itself, dated when loaded), plus one for each revocation. Devices
  `dev-0000001`... hold 1 to 3 certificates each (a renewal history), issued over the last
  two years with 90 to 365 days of validity, so some expired and some devices went dark;
  1 % are revoked. Serials, key fingerprints and times are random per row; the DER column
  reuses a pool certificate of the same profile and key.
  Pages and queries never parse the DER except the certificate page, and the summary pass
  parses the DER of every valid certificate for its extension check, so the reuse does not
  flatter it.

Measured, in one process, through the real app (`serve_wiring.admin_app(fleet)` under FastAPI's
TestClient, logged in with an admin API token):

- the fleet summary (`fleet.refresh_summary()`): the background pass over every certificate;
- dashboard pages, --requests (200) each after a few warm-ups, median and p99: the overview;
  searches by profile + status + expiry (A), by key + status (B) and by device id; the 50th
  page of A and B reached by following next_cursor, and their last page (the cursor the
  page before hands out, built from the store); device pages and certificate pages of random
  devices; the device list; the audit log and its searches by subject, actor and action;
  subject and SAN substring searches, rare and common text (the rare ones through the
  trigram index that the background round fills, timed here first);
- REST API: certificates per second listed by `GET /api/v1/certificates?limit=500` following
  cursors from the first page; requests per second of `?limit=50&profile=sensor`; a page
  filtered by issuer; the last page of `status=valid`.

References measured in the same run: `GET /login` through the same client (the same FastAPI,
middleware and template work with no store read: the floor of any page), a `SELECT 1` round
trip through an engine made by the store's own `create_engines`, a store point read by serial,
and the raw driver streaming the same rows in the API's order (the floor of the list API).
Always exits 0; the 500 ms target is reported, not enforced.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
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

from fleetpki.core.api_tokens import Role
from fleetpki.core.issuance_plan import Request
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.serials import SERIAL_BITS, serial_hex
from fleetpki.inventory import cursors
from fleetpki.ra.api import Authorization
from fleetpki.serve_wiring import admin_app
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.engine import create_engines
from fleetpki.wiring import Fleet, open_fleet

REPO = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO / "src" / "fleetpki" / "store" / "migrations" / "versions"
MARKER = "inventory-benchmark.json"
ISSUER = "issuing"
TARGET_MS = 500.0
DAY = 86_400.0
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
CHUNK = 20_000

# The fleet's shape. Weights, not exact shares.
PROFILES = (("sensor", 0.8), ("gateway", 0.2))
KEYS = {"sensor": (("ec-p256", 0.85), ("ec-p384", 0.15)),
        "gateway": (("ec-p256", 0.45), ("ec-p384", 0.15), ("rsa-2048", 0.40))}
VALIDITY_DAYS = {"sensor": ((90, 0.3), (180, 0.3), (365, 0.4)),
                 "gateway": ((180, 0.3), (365, 0.7))}
HISTORY = ((1, 0.45), (2, 0.35), (3, 0.20))  # certificates per device
LAPSED = 0.12  # devices whose newest certificate has expired
REVOKED = 0.01
REASONS = (RevocationReason.superseded, RevocationReason.key_compromise,
           RevocationReason.cessation_of_operation, RevocationReason.unspecified)
OPERATOR = Authorization(actor="operator:bench")

console = Console(highlight=False, stderr=True, width=None if sys.stderr.isatty() else 120)


def pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def stamp(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(SQLITE_TIME)


# -- other load on the machine ---------------------------------------------------------------


def _busy_seconds() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        fields = handle.readline().split()
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7)) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Background:
    """Cores kept busy by other processes while a phase ran (a shared machine is not idle)."""

    cores: float = 0.0

    def __enter__(self) -> Background:
        self._start = (time.perf_counter(), _busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, own = time.perf_counter(), _busy_seconds(), _own_seconds()
        foreign = (busy - self._start[1]) - (own - self._start[2])
        self.cores = max(foreign, 0.0) / max(wall - self._start[0], 1e-9)


# -- setup: a home with N certificates -------------------------------------------------------


def migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def database_path(fleet: Fleet) -> Path:
    database = sa.engine.make_url(fleet.settings.store_url).database
    if not database:
        raise SystemExit("the benchmark needs a SQLite store")
    return Path(database)


def cached(home: Path, certificates: int) -> dict[str, Any] | None:
    marker = home / MARKER
    if not marker.exists():
        return None
    facts: dict[str, Any] = json.loads(marker.read_text())
    if facts.get("certificates") != certificates or facts.get("migrations") != \
            migrations_digest():
        return None
    return facts


@dataclasses.dataclass(frozen=True)
class PoolKey:
    profile: str
    key_spec: str


def make_key(key_spec: str, rsa_keys: list[rsa.RSAPrivateKey], rng: random.Random
             ) -> CertificateIssuerPrivateKeyTypes:
    if key_spec == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_spec == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    # RSA key generation takes ~100 ms: a few keys serve the pool's RSA requests.
    if len(rsa_keys) < 16:
        rsa_keys.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return rsa_keys[-1]
    return rng.choice(rsa_keys)


def issue_pool(fleet: Fleet, size: int, rng: random.Random) -> dict[PoolKey, list[bytes]]:
    """Real certificates through the RA, in the fleet's proportions of profile and key."""
    pool: dict[PoolKey, list[bytes]] = {}
    rsa_keys: list[rsa.RSAPrivateKey] = []
    with progress_bar() as progress:
        task = progress.add_task("issuing the pool through the RA", total=size)
        for index in range(size):
            profile = pick(rng, PROFILES)
            key_spec = pick(rng, KEYS[profile])
            device = f"pool-{index:04d}"
            san: x509.GeneralName = (
                x509.UniformResourceIdentifier(f"urn:dev:mac:{0xA0000000000 + index:012x}")
                if profile == "sensor" else x509.DNSName(f"{device}.gateways.fleet.internal"))
            csr = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
                   .add_extension(x509.SubjectAlternativeName([san]), critical=False)
                   .sign(make_key(key_spec, rsa_keys, rng), hashes.SHA256()))
            validity = dt.timedelta(days=pick(rng, VALIDITY_DAYS[profile]))
            record = fleet.issuance.issue(Request.from_csr(csr, validity), profile, OPERATOR)
            pool.setdefault(PoolKey(profile, record.key_spec), []).append(record.der)
            progress.advance(task)
    return pool


@dataclasses.dataclass
class Rows:
    """One chunk of rows for the serials and certificates tables, and its audit events."""

    devices: int = 0  # devices made so far, this chunk's included
    serials: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    certificates: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    events: list[AuditEvent] = dataclasses.field(default_factory=list)


def fleet_rows(count: int, pool: dict[PoolKey, list[bytes]], now: float, rng: random.Random,
               first_seq: int) -> Iterator[Rows]:
    """`count` certificate rows device by device, in chunks."""
    chunk, made, device, seq = Rows(), 0, 0, first_seq
    horizon = now - 730 * DAY
    while made < count:
        device += 1
        device_id = f"dev-{device:07d}"
        profile = pick(rng, PROFILES)
        key_spec = pick(rng, KEYS[profile])
        validity = pick(rng, VALIDITY_DAYS[profile]) * DAY
        history = min(pick(rng, HISTORY), count - made)
        # The newest certificate first, then its predecessors, each renewed at 60-80 % of
        # its lifetime (the default renewal window opens at two thirds).
        if rng.random() < LAPSED:
            issued = now - validity - rng.uniform(0, max(730 * DAY - validity, DAY))
        else:
            issued = now - rng.uniform(0, 0.9 * validity)
        times = [issued]
        for _ in range(history - 1):
            previous = times[-1] - validity * rng.uniform(0.6, 0.8)
            if previous < horizon:
                break
            times.append(previous)
        ders = pool[PoolKey(profile, key_spec)]
        sans = (f"uri:urn:dev:mac:{device:012x}" if profile == "sensor"
                else f"dns:{device_id}.gateways.fleet.internal")
        for position, issued_at in enumerate(reversed(times)):
            serial = serial_hex(rng.getrandbits(SERIAL_BITS) | 1 << (SERIAL_BITS - 1))
            fingerprint = f"{rng.getrandbits(256):064x}"
            not_after = issued_at + validity
            revoked_at = reason = revocation_seq = None
            if rng.random() < REVOKED:
                revoked_at = stamp(issued_at + rng.uniform(0, min(validity, now - issued_at)))
                reason = rng.choice(REASONS).value
                seq += 1
                revocation_seq = seq
            issued_text = stamp(issued_at)
            chunk.serials.append((ISSUER, serial, device_id, profile, issued_text))
            chunk.certificates.append((
                ISSUER, serial, device_id, profile, f"CN={device_id}", sans, key_spec,
                fingerprint, stamp(issued_at - 300), stamp(not_after), issued_text,
                rng.choice(ders), revoked_at, reason, revocation_seq))
            actor = "bootstrap:factory-line" if position == 0 else f"device:{device_id}"
            chunk.events.append(AuditEvent(
                actor=actor, action="certificate.issued", subject=serial,
                details={"issuer": ISSUER, "profile": profile, "device_id": device_id,
                         "subject": f"CN={device_id}",
                         "not_after": dt.datetime.fromtimestamp(not_after, dt.UTC).isoformat(),
                         "key_fingerprint": fingerprint}))
            if reason is not None:
                chunk.events.append(AuditEvent(
                    actor="operator:ops", action="certificate.revoked", subject=serial,
                    details={"issuer": ISSUER, "reason": reason, "device_id": device_id}))
            made += 1
        if len(chunk.certificates) >= CHUNK or made >= count:
            chunk.devices = device
            yield chunk
            chunk = Rows()


def load_rows(fleet: Fleet, count: int, pool: dict[PoolKey, list[bytes]], rng: random.Random
              ) -> tuple[int, float]:
    """Insert `count` rows straight into the tables; returns (devices, seconds)."""
    db = sqlite3.connect(database_path(fleet), isolation_level=None)
    db.execute("PRAGMA cache_size=-1000000")  # 1 GB: the random-key indexes stay in memory
    db.execute("PRAGMA foreign_keys=ON")
    (first_seq,) = db.execute("SELECT revocation_seq FROM cas WHERE name = ?",
                              (ISSUER,)).fetchone()
    now = time.time()
    devices, started = 0, time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task(f"loading {count:,} certificates", total=count)
        for chunk in fleet_rows(count, pool, now, rng, first_seq):
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO serials (issuer, serial, device_id, profile, "
                           "reserved_at, state) VALUES (?, ?, ?, ?, ?, 'issued')",
                           chunk.serials)
            db.executemany(
                "INSERT INTO certificates (issuer, serial, device_id, profile, subject, sans, "
                "key_spec, key_fingerprint, not_before, not_after, issued_at, der, revoked_at, "
                "revocation_reason, revocation_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk.certificates)
            revoked = sum(1 for row in chunk.certificates if row[-1] is not None)
            db.execute("UPDATE cas SET revocation_seq = revocation_seq + ? WHERE name = ?",
                       (revoked, ISSUER))
            db.execute("COMMIT")
            # The audit entries through the store, which chains them (one commit per chunk).
            fleet.store.audit(chunk.events, at=fleet.clock.now())
            progress.advance(task, len(chunk.certificates))
            devices = chunk.devices
    seconds = time.perf_counter() - started
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return devices, seconds


def prepare(home: Path, certificates: int, pool_size: int) -> dict[str, Any]:
    facts = cached(home, certificates)
    if facts is not None:
        console.print(f"reusing {home}: {certificates:,} certificates, "
                      f"{facts['devices']:,} devices")
        return facts
    if (home / MARKER).exists():  # made by this script, for another size or schema
        console.print(f"{home} holds another fleet or an older schema: making it afresh")
        shutil.rmtree(home)
    elif home.exists():
        raise SystemExit(f"{home} exists and was not made by this benchmark: pass another "
                         "--home")
    fleetpki = Path(sys.executable).with_name("fleetpki")
    subprocess.run([str(fleetpki), "--home", str(home), "init", "--org", "Bench"], check=True,
                   stdout=subprocess.DEVNULL)
    rng = random.Random(20261121)
    fleet = open_fleet(home)
    try:
        started = time.perf_counter()
        pool = issue_pool(fleet, min(pool_size, certificates), rng)
        pool_seconds = time.perf_counter() - started
        devices, load_seconds = load_rows(fleet, certificates - min(pool_size, certificates),
                                          pool, rng)
        size = database_path(fleet).stat().st_size
    finally:
        fleet.close()
    facts = {"certificates": certificates, "pool": min(pool_size, certificates),
             "devices": devices, "migrations": migrations_digest(),
             "pool_seconds": round(pool_seconds, 1), "load_seconds": round(load_seconds, 1),
             "database_bytes": size}
    (home / MARKER).write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


# -- measuring -------------------------------------------------------------------------------


@dataclasses.dataclass
class Latency:
    name: str
    request: str
    samples: list[float]  # milliseconds
    other_load: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        if len(self.samples) < 2:
            return self.samples[0]
        return statistics.quantiles(self.samples, n=100, method="inclusive")[98]


_CURSOR = re.compile(r'cursor=([A-Za-z0-9_-]+)"')


class Bench:
    def __init__(self, client: TestClient, api_headers: dict[str, str], requests: int,
                 warmup: int) -> None:
        self.client = client
        self.api = api_headers
        self.requests = requests
        self.warmup = warmup

    def get(self, path: str, *, api: bool = False) -> str:
        response = self.client.get(path, headers=self.api if api else None)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
        return response.text

    def latency(self, name: str, shown: str, path: Callable[[int], str], *,
                requests: int | None = None, api: bool = False) -> Latency:
        for index in range(self.warmup):
            self.get(path(-1 - index), api=api)
        samples = []
        with Background() as background:
            for index in range(requests or self.requests):
                started = time.perf_counter()
                self.get(path(index), api=api)
                samples.append((time.perf_counter() - started) * 1000)
        result = Latency(name, shown, samples, background.cores)
        console.print(f"  {name:<44} median {result.median:8.1f} ms   p99 {result.p99:8.1f} ms")
        return result

    def follow(self, path: str, pages: int) -> tuple[str, int]:
        """The URL of page `pages` of a dashboard search, reached through next_cursor (or of
        its last page, if it has fewer), and that page's number."""
        url, page = path, 1
        while page < pages and (found := _CURSOR.search(self.get(url))) is not None:
            url, page = f"{path}&cursor={found.group(1)}", page + 1
        return url, page


def sample_serials(db: Path, count: int, rng: random.Random) -> list[str]:
    with sqlite3.connect(db) as c:
        (top,) = c.execute("SELECT max(rowid) FROM certificates").fetchone()
        found: list[str] = []
        while len(found) < count:
            row = c.execute("SELECT serial FROM certificates WHERE rowid = ?",
                            (rng.randint(1, top),)).fetchone()
            if row is not None:
                found.append(row[0])
    return found


def api_walk(bench: Bench, pages: int) -> tuple[int, float]:
    """Certificates listed by following the API's cursors from the first page."""
    listed, cursor, started = 0, "", time.perf_counter()
    for _ in range(pages):
        body = json.loads(bench.get(f"/api/v1/certificates?limit=500{cursor}", api=True))
        listed += len(body["items"])
        if not body["next_cursor"]:
            break
        cursor = f"&cursor={body['next_cursor']}"
    return listed, time.perf_counter() - started


def raw_stream(db: Path, rows: int) -> float:
    """Rows per second the driver alone streams in the API's order (every column)."""
    with sqlite3.connect(db) as c:
        started = time.perf_counter()
        cursor = c.execute("SELECT * FROM certificates ORDER BY not_after, serial")
        read = 0
        while read < rows and (batch := cursor.fetchmany(500)):
            read += len(batch)
        return read / (time.perf_counter() - started)


def references(fleet: Fleet, serials: list[str], rounds: int) -> dict[str, float]:
    _, reader = create_engines(fleet.settings.store_url)
    timings = []
    with reader.connect() as c:
        for _ in range(rounds):
            started = time.perf_counter()
            c.execute(sa.text("SELECT 1")).scalar_one()
            timings.append(time.perf_counter() - started)
    reader.dispose()
    started = time.perf_counter()
    for serial in serials:
        if fleet.store.get_certificate(int(serial, 16), ISSUER) is None:
            raise RuntimeError(f"serial {serial} not found")
    point = (time.perf_counter() - started) / len(serials)
    return {"select_1_us": statistics.median(timings) * 1e6, "point_read_us": point * 1e6}


def last_page_cursor(db: Path, where: str, parameters: tuple[Any, ...]) -> tuple[str, int]:
    """The cursor a client holds before the last page of a search (its rows in the store's
    list order: not_after, serial), as following every next_cursor would hand it out; and
    how many rows come before it. `where` is the search's filter in plain SQL."""
    order = f"FROM certificates WHERE {where}"
    with sqlite3.connect(db) as c:
        (total,) = c.execute(f"SELECT count(*) {order}", parameters).fetchone()
        depth = max(total - 51, 1)
        not_after, serial = c.execute(
            f"SELECT not_after, serial {order} ORDER BY not_after, serial LIMIT 1 OFFSET ?",
            (*parameters, depth - 1)).fetchone()
    moment = dt.datetime.fromisoformat(not_after).replace(tzinfo=dt.UTC)
    return cursors.certificate_cursor(moment, serial), depth


def measure(fleet: Fleet, facts: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(7)
    db = database_path(fleet)
    devices = int(facts["devices"])
    serials = sample_serials(db, args.requests + 20, rng)
    token = fleet.token_admin(OPERATOR).create("bench", Role.admin,
                                               lifetime=dt.timedelta(hours=2)).text
    now = fleet.clock.now()
    soon = (now + dt.timedelta(days=60)).date().isoformat()
    search_a = f"/certificates?profile=sensor&status=valid&expires_before={soon}"
    search_b = "/certificates?key_spec=rsa-2048&status=valid"
    valid = "revoked_at IS NULL AND not_after > ?"
    now_text = now.strftime(SQLITE_TIME)
    end_a = dt.datetime.fromisoformat(soon).strftime(SQLITE_TIME)
    last_a, depth_a = last_page_cursor(db, f"profile = 'sensor' AND not_after < ? AND {valid}",
                                       (end_a, now_text))
    last_b, depth_b = last_page_cursor(db, f"key_spec = 'rsa-2048' AND {valid}", (now_text,))
    last_v, depth_v = last_page_cursor(db, valid, (now_text,))

    def device(_: int) -> str:
        return f"dev-{rng.randint(1, devices):07d}"

    with TestClient(admin_app(fleet), base_url="https://testserver",
                    follow_redirects=False) as client:
        login = client.post("/login", data={"token": token})  # the dashboard's own cookie
        if login.status_code != 303:
            raise RuntimeError(f"dashboard login refused: {login.status_code}")
        bench = Bench(client, {"Authorization": f"Bearer {token}"}, args.requests, args.warmup)
        deep_a, page_a = bench.follow(search_a, args.deep_page)
        deep_b, page_b = bench.follow(search_b, args.deep_page)
        scans = args.scan_requests
        console.print("dashboard and API, in process:")
        pages = [bench.latency(*page) for page in [
            ("reference: login form (no store read)", "GET /login", lambda _: "/login"),
            ("overview", "GET /", lambda _: "/"),
            ("search A: profile, status, expiry", f"GET {search_a}", lambda _: search_a),
            (f"search A, page {page_a}", f"{page_a - 1} next_cursor links on",
             lambda _: deep_a),
            (f"search A, last page ({depth_a:,} rows in)", "cursor of the page before",
             lambda _: f"{search_a}&cursor={last_a}"),
            ("search B: key and status", f"GET {search_b}", lambda _: search_b),
            (f"search B, page {page_b}", f"{page_b - 1} next_cursor links on",
             lambda _: deep_b),
            (f"search B, last page ({depth_b:,} rows in)", "cursor of the page before",
             lambda _: f"{search_b}&cursor={last_b}"),
            ("search: device id (random devices)", "GET /certificates?device_id=dev-…",
             lambda i: f"/certificates?device_id={device(i)}"),
            ("device page (random devices)", "GET /devices/dev-…",
             lambda i: f"/devices/{device(i)}"),
            ("certificate page (random certificates)", "GET /certificates/{serial}?issuer=…",
             lambda i: f"/certificates/{serials[i]}?issuer={ISSUER}"),
            ("device list", "GET /devices", lambda _: "/devices"),
            ("audit log", "GET /audit", lambda _: "/audit"),
            ("audit search by subject (a serial)", "GET /audit?subject=…",
             lambda i: f"/audit?subject={serials[i]}"),
            ("audit search by actor (a device)", "GET /audit?actor=device:dev-…",
             lambda i: f"/audit?actor=device:{device(i)}"),
            ("audit search by a rare action", "GET /audit?action=api_token.created",
             lambda _: "/audit?action=api_token.created"),
        ]]
        pages += [
            bench.latency("search: subject contains, rare text", "GET /certificates?subject=…",
                          lambda i: f"/certificates?subject={device(i)[4:]}"),
            bench.latency("search: SAN contains, rare text", "GET /certificates?san=…",
                          lambda i: f"/certificates?san={device(i)[4:]}.gateways"),
            bench.latency("search: subject contains, common text",
                          "GET /certificates?subject=dev-0…",
                          lambda i: f"/certificates?subject=dev-0{i % 10}"),
            bench.latency("API: 50, profile=sensor",
                          "GET /api/v1/certificates?limit=50&profile=sensor",
                          lambda _: "/api/v1/certificates?limit=50&profile=sensor", api=True),
            bench.latency("API: 50, issuer=issuing",
                          "GET /api/v1/certificates?limit=50&issuer=issuing",
                          lambda _: f"/api/v1/certificates?limit=50&issuer={ISSUER}", api=True,
                          requests=scans),
            bench.latency(f"API: 500, status=valid, last page ({depth_v:,} rows in)",
                          "GET /api/v1/certificates?limit=500&status=valid&cursor=…",
                          lambda _: f"/api/v1/certificates?limit=500&status=valid&cursor="
                                    f"{last_v}", api=True, requests=scans),
        ]
        console.print(f"API: walking {args.api_pages} pages of 500 by cursor")
        with Background() as walk_load:
            listed, walk_seconds = api_walk(bench, args.api_pages)
    raw_rate = raw_stream(db, listed)
    refs = references(fleet, serials, 2000)
    small = next(p for p in pages if p.name == "API: 50, profile=sensor")
    return {
        "pages": pages,
        "api": {"listed": listed, "seconds": walk_seconds, "rate": listed / walk_seconds,
                "raw_rate": raw_rate, "page50_rate": 1000 / statistics.mean(small.samples),
                "other_load": walk_load.cores},
        "references": refs,
    }


# -- report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    git = ["git", "--no-optional-locks", "-C", str(REPO)]  # read-only: others share the tree
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True, check=False).stdout.split("\n")
    changed = [line[3:] for line in dirty if line.strip()]
    return {"cpus": str(os.cpu_count()), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "fleetpki_source": (head or "unknown") + (
                f" + uncommitted changes to {len(changed)} files under src" if changed else "")}


def report(facts: dict[str, Any], summary: tuple[float, float], figures: dict[str, Any]
           ) -> None:
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    pages: list[Latency] = figures["pages"]
    login = pages[0].median
    table = Table(title=f"inventory with {facts['certificates']:,} certificates, "
                        f"{facts['devices'] + facts['pool']:,} devices")
    for column in ("page", "n", "median ms", "p99 ms", "median / login",
                   f"p99 < {TARGET_MS:.0f} ms", "other load"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for page in pages:
        ok = "[green]yes[/]" if page.p99 < TARGET_MS else "[bold red]NO[/]"
        table.add_row(page.name, str(len(page.samples)), f"{page.median:,.1f}",
                      f"{page.p99:,.1f}", f"{page.median / login:,.1f}x", ok,
                      f"{page.other_load:.2f}")
    out.print(table)
    api, refs = figures["api"], figures["references"]
    out.print(f"API list, limit=500 by cursor: {api['listed']:,} certificates in "
              f"{api['seconds']:.1f} s = [bold]{api['rate']:,.0f} certificates/s[/] "
              f"(other load {api['other_load']:.2f}); the driver alone streams the same rows "
              f"in the same order at {api['raw_rate']:,.0f} rows/s: ratio "
              f"{api['rate'] / api['raw_rate']:.3f}")
    out.print(f"API list, limit=50&profile=sensor: [bold]{api['page50_rate']:,.0f} requests/s"
              f"[/] ({api['page50_rate'] * 50:,.0f} certificates/s)")
    out.print(f"references: SELECT 1 through a store engine {refs['select_1_us']:.0f} µs; "
              f"store point read by serial {refs['point_read_us']:.0f} µs")
    seconds, other = summary
    out.print(f"summary pass (background): {seconds:.1f} s for {facts['certificates']:,} "
              f"certificates = {facts['certificates'] / seconds:,.0f} /s (other load "
              f"{other:.2f})")
    out.print(f"setup: pool of {facts['pool']:,} issued in {facts['pool_seconds']} s; "
              f"{facts['certificates'] - facts['pool']:,} rows loaded in "
              f"{facts['load_seconds']} s = "
              f"{(facts['certificates'] - facts['pool']) / max(facts['load_seconds'], 1e-9):,.0f}"
              f" /s; database {facts['database_bytes'] / 2**30:.2f} GiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certificates", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=None,
                        help="cached fleet home (default .benchcache/inventory-N)")
    parser.add_argument("--pool", type=int, default=2000,
                        help="certificates issued through the RA, whose DER the rows reuse")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--scan-requests", type=int, default=20,
                        help="requests for the searches that scan")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--deep-page", type=int, default=50)
    parser.add_argument("--api-pages", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    home = (args.home or REPO / ".benchcache" / f"inventory-{args.certificates}").resolve()
    info = machine()
    console.print(" ".join(f"{k}={v}" for k, v in info.items()))
    facts = prepare(home, args.certificates, args.pool)
    fleet = open_fleet(home)
    try:
        with console.status("computing the fleet summary (the background pass)"), \
                Background() as load:
            stored = fleet.refresh_summary()
        console.print(f"summary pass: {stored.seconds:.1f} s")
        with console.status("indexing subjects and SANs (the background round)"):
            started = time.perf_counter()
            indexed = fleet.index_certificate_names()
            index_seconds = time.perf_counter() - started
        console.print(f"name index round: {indexed:,} certificates added in "
                      f"{index_seconds:.1f} s (none when the cached home has them)")
        figures = measure(fleet, facts, args)
    finally:
        fleet.close()
    report(facts, (stored.seconds, load.cores), figures)
    if args.json:
        pages: list[Latency] = figures["pages"]
        args.json.write_text(json.dumps({
            "machine": info, "setup": facts,
            "summary_seconds": stored.seconds, "summary_other_load": round(load.cores, 2),
            "name_index": {"added": indexed, "seconds": round(index_seconds, 2)},
            "pages": [{"name": p.name, "request": p.request, "n": len(p.samples),
                       "median_ms": round(p.median, 2), "p99_ms": round(p.p99, 2),
                       "other_load": round(p.other_load, 2)} for p in pages],
            "api": figures["api"], "references": figures["references"]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
