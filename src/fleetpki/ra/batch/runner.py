"""The manufacturing run: stream the device list, keep every core signing, commit in chunks.

Per chunk (docs/issuance-cycle.md, batch form):
  1. drop devices that already hold a valid certificate in the profile (re-runs issue nothing
     twice; their missing output files are written again from the store);
  2. reserve one random serial per remaining device, in one transaction;
  3. a worker process plans, signs (and, for factory keys, writes the key first);
  4. the parent commits certificates, releases refused reservations and chains audit entries in
     one transaction, and only then writes the output files.
At most a few chunks are in flight, so memory stays flat however long the list is.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import io
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Protocol

from cryptography import x509

from fleetpki.ca.certificate_template import CertificateTemplate
from fleetpki.ca.keyfiles import write_atomically
from fleetpki.core.clock import Clock
from fleetpki.core.keys import KeySpec
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.serials import SerialSource
from fleetpki.ra.batch import worker
from fleetpki.ra.batch.bundles import BundleWriter
from fleetpki.ra.batch.certificate_log import CertificateLog, jsonl_line
from fleetpki.ra.batch.manifest import DeviceRow
from fleetpki.ra.service import refusal_event
from fleetpki.store.api import AuditEvent, IssuanceLedger, SerialCollision, SerialReservation


class BatchLedger(IssuanceLedger, Protocol):
    def issued_device_ids(self, profile: str, device_ids: Sequence[str], *, now: dt.datetime
                          ) -> set[str]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class BatchOptions:
    workers: int
    chunk_size: int = 1000
    keygen: KeySpec | None = None
    actor: str = "operator"


@dataclasses.dataclass
class BatchReport:
    issued: int = 0
    already_issued: int = 0
    rewritten: int = 0
    refused: int = 0
    lost_keys: int = 0
    rejects: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)


log = logging.getLogger(__name__)
_Pending = tuple["Future[list[worker.Outcome]]", list[worker.Task], dt.datetime]


class BatchRunner:
    def __init__(self, ledger: BatchLedger, template: CertificateTemplate,
                 outputs: BundleWriter | CertificateLog, options: BatchOptions, clock: Clock,
                 serials: SerialSource) -> None:
        """`outputs` is per-device files (BundleWriter) or one JSON-lines file (CSR runs)."""
        self._ledger = ledger
        self._template = template
        self._outputs = outputs
        self._options = options
        self._clock = clock
        self._serials = serials
        self._profile = template.profile.name
        self._issuer = template.profile.issuer

    def run(self, rows: Iterable[DeviceRow], progress: Callable[[int], None] = lambda n: None
            ) -> BatchReport:
        report = BatchReport()
        # Devices reserved but not yet committed, with their line. A device listed twice while
        # its first listing is in flight is refused here; once committed, the store's
        # "already issued" check catches any later listing. Only in-flight ids are held, so
        # memory does not grow with the length of the list.
        in_flight_ids: dict[str, int] = {}
        setup = worker.WorkerSetup(self._template, self._options.keygen,
                                   self._outputs if isinstance(self._outputs, BundleWriter)
                                   else None, self._options.actor)
        in_flight: collections.deque[_Pending] = collections.deque()
        finishing: collections.deque[Future[int]] = collections.deque()
        window = self._options.workers * 2
        with ProcessPoolExecutor(max_workers=self._options.workers,
                                 mp_context=multiprocessing.get_context("fork"),
                                 initializer=worker.initialize,
                                 initargs=(setup, os.getpid())) as pool:
            for chunk in _chunks(rows, self._options.chunk_size):
                tasks = self._prepare(chunk, in_flight_ids, report, progress)
                if tasks:
                    now = self._clock.now()
                    in_flight.append((pool.submit(worker.run_chunk, tasks, now), tasks, now))
                while len(in_flight) >= window:
                    self._collect(in_flight.popleft(), pool, finishing, report, progress,
                                  in_flight_ids)
                while len(finishing) > window:
                    finishing.popleft().result()
            while in_flight:
                self._collect(in_flight.popleft(), pool, finishing, report, progress,
                              in_flight_ids)
            for future in finishing:
                future.result()
        log.info("batch finished", extra={
            "profile": self._profile, "issued": report.issued, "refused": report.refused,
            "already_issued": report.already_issued, "lost_keys": report.lost_keys})
        return report

    def _prepare(self, chunk: list[DeviceRow], in_flight_ids: dict[str, int],
                 report: BatchReport, progress: Callable[[int], None]) -> list[worker.Task]:
        fresh: list[DeviceRow] = []
        chunk_ids: dict[str, int] = {}
        for row in chunk:
            first = in_flight_ids.get(row.device_id) or chunk_ids.setdefault(row.device_id,
                                                                             row.line)
            if first != row.line:
                report.refused += 1
                report.rejects.append((row.line, row.device_id,
                                       f"device listed twice (first on line {first})"))
                progress(1)
            else:
                fresh.append(row)
        now = self._clock.now()
        done = self._ledger.issued_device_ids(self._profile, [r.device_id for r in fresh],
                                              now=now)
        todo = []
        for row in fresh:
            if row.device_id in done:
                self._complete_earlier(row, report, now)
                progress(1)
            else:
                todo.append(row)
                in_flight_ids[row.device_id] = row.line
        return self._reserve(todo, now)

    def _reserve(self, rows: list[DeviceRow], now: dt.datetime) -> list[worker.Task]:
        if not rows:
            return []
        for _ in range(5):
            tasks = [worker.Task(row, self._serials.next_serial()) for row in rows]
            try:
                self._ledger.reserve_serials([self._reservation(t) for t in tasks], at=now)
                return tasks
            except SerialCollision:
                continue
        raise RuntimeError("could not draw unused serials: the serial source is broken")

    def _collect(self, pending: _Pending, pool: ProcessPoolExecutor,
                 finishing: collections.deque[Future[int]], report: BatchReport,
                 progress: Callable[[int], None], in_flight_ids: dict[str, int]) -> None:
        future, tasks, now = pending
        outcomes = future.result()
        issued: list[IssuedCertificate] = []
        released: list[SerialReservation] = []
        events: list[AuditEvent] = []
        actor = self._options.actor
        lines: list[tuple[str, str]] = []
        by_serial = {t.serial: t for t in tasks}
        for outcome in outcomes:
            if outcome.certificate is not None and outcome.event is not None:
                issued.append(outcome.certificate)
                events.append(outcome.event)
                if outcome.line is not None:
                    lines.append((outcome.device_id, outcome.line))
            else:
                task = by_serial[outcome.serial]
                released.append(self._reservation(task))
                reason = outcome.refusal or "refused"
                events.append(refusal_event(actor, self._profile, reason, outcome.device_id))
                report.refused += 1
                report.rejects.append((task.row.line, outcome.device_id, reason))
        # The commit: after this line the certificates exist for the store, and only now are
        # they written out.
        self._ledger.record_issued(issued, released, events, at=now)
        for task in tasks:
            in_flight_ids.pop(task.row.device_id, None)
        self._write_outputs(issued, lines, pool, finishing)
        report.issued += len(issued)
        progress(len(outcomes))

    def _write_outputs(self, issued: list[IssuedCertificate], lines: list[tuple[str, str]],
                       pool: ProcessPoolExecutor, finishing: collections.deque[Future[int]]
                       ) -> None:
        if isinstance(self._outputs, CertificateLog):
            self._outputs.append(lines)  # one write per chunk, right after the commit
            return
        # The certificates are committed: the workers write the files (file I/O and PKCS#12
        # key derivation would otherwise make this process the bottleneck of the run).
        if issued:
            finishing.append(pool.submit(worker.write_outputs,
                                         [(c.device_id, c.der) for c in issued]))

    def _complete_earlier(self, row: DeviceRow, report: BatchReport, now: dt.datetime) -> None:
        """A device issued by an earlier (perhaps interrupted) run: make sure its files exist."""
        report.already_issued += 1
        if isinstance(self._outputs, CertificateLog):
            if row.device_id not in self._outputs.present:
                cert = self._ledger.current_certificate(row.device_id, self._profile, now=now)
                if cert is not None:
                    self._outputs.append([(cert.device_id, jsonl_line(cert))])
                    report.rewritten += 1
            return
        target = self._outputs.certificate_path(row.device_id)
        if target.exists() and (self._options.keygen is None
                                or not self._outputs.has_pending_key(row.device_id)):
            return
        cert = self._ledger.current_certificate(row.device_id, self._profile, now=now)
        if cert is None:
            return
        if self._options.keygen is None:
            self._outputs.write_certificate(row.device_id, cert.der)
            report.rewritten += 1
        elif self._outputs.has_pending_key(row.device_id):
            self._outputs.finish(row.device_id, x509.load_der_x509_certificate(cert.der))
            report.rewritten += 1
        else:
            report.already_issued -= 1
            report.lost_keys += 1
            report.rejects.append((row.line, row.device_id, "issued earlier, but its key file "
                                   "is gone: revoke the certificate and issue again"))

    def _reservation(self, task: worker.Task) -> SerialReservation:
        return SerialReservation(self._issuer, task.serial, task.row.device_id, self._profile)


def _chunks(rows: Iterable[DeviceRow], size: int) -> Iterator[list[DeviceRow]]:
    chunk: list[DeviceRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_rejects(path: Path, rejects: list[tuple[int, str, str]]) -> None:
    """Written whole or not at all: a half list of refusals would read as the whole one."""
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["line", "device_id", "reason"])
    writer.writerows(rejects)
    write_atomically(path, table.getvalue().encode("utf-8"), mode=0o644)
