"""What runs inside each worker process: plan, generate keys, sign. No database access here.

Workers are forked after the parent has loaded the signer, so the CA key is decrypted once and
never crosses a pipe. Each task is a chunk whose serials the parent has already reserved
(DESIGN.md §2: the intent is persisted before anything is signed). A worker returns signed
certificates to the parent, which commits them before anything is written out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import datetime as dt
import os
import signal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from fleetpki.ca.certificate_template import CertificateTemplate
from fleetpki.core.csr import MAX_CSR_BYTES, check_proof_of_possession, load_csr
from fleetpki.core.errors import BadInput, PolicyViolation
from fleetpki.core.issuance_plan import Request, plan_issuance
from fleetpki.core.keys import KeySpec
from fleetpki.core.names import SUBJECT_ATTRIBUTES, san_from_text
from fleetpki.core.records import IssuedCertificate
from fleetpki.ra.batch.bundles import BundleWriter
from fleetpki.ra.batch.certificate_log import jsonl_line
from fleetpki.ra.batch.manifest import DeviceRow
from fleetpki.ra.service import issued_event, issued_record
from fleetpki.store.api import AuditEvent


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSetup:
    template: CertificateTemplate
    keygen: KeySpec | None
    bundles: BundleWriter | None  # None when the parent writes one file for the whole run
    actor: str


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    row: DeviceRow
    serial: int


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """A signed certificate with its audit event (and its certificates.jsonl line, in that
    layout), all prepared here in parallel; or the reason for a refusal."""

    device_id: str
    serial: int
    certificate: IssuedCertificate | None
    refusal: str | None
    event: AuditEvent | None = None
    line: str | None = None


_setup: WorkerSetup | None = None
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def initialize(setup: WorkerSetup, parent: int) -> None:
    global _setup
    _die_with(parent)
    _setup = setup


def _die_with(parent: int) -> None:
    """A worker holds the decrypted CA key: when the batch process dies (kill -9, OOM), its
    workers must not linger as orphans with that key in memory and the database open. Linux
    delivers SIGKILL to a process whose parent dies once it asked with PR_SET_PDEATHSIG."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the pool's own end-of-run shutdown is all there is
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def run_chunk(tasks: list[Task], now: dt.datetime) -> list[Outcome]:
    assert _setup is not None, "worker not initialised"
    return [_one(_setup, task, now) for task in tasks]


def _one(setup: WorkerSetup, task: Task, now: dt.datetime) -> Outcome:
    row = task.row
    try:
        key: CertificateIssuerPrivateKeyTypes | None = None
        if setup.keygen is not None:
            key = setup.keygen.generate()
            request = _request_from_row(row, key, setup.template.profile.device_id_from)
        else:
            request = _request_from_csr(row)
        template = setup.template
        plan = plan_issuance(template.profile, request, now=now,
                             issuer_not_after=template.signer.certificate.not_valid_after_utc)
        if plan.device_id != row.device_id:
            raise PolicyViolation(f"the request names device '{plan.device_id}', the device "
                                  f"list says '{row.device_id}'", field="device_id")
        if key is not None and setup.bundles is not None:
            # The key reaches disk before the certificate exists, so a crash can never leave a
            # committed certificate whose key is lost (the rerun finishes the bundle).
            setup.bundles.write_pending_key(row.device_id, key)
        record = issued_record(plan, task.serial, template.sign(plan, task.serial), now)
        return Outcome(row.device_id, task.serial, record, None, issued_event(setup.actor, record),
                       None if setup.bundles is not None else jsonl_line(record))
    except (PolicyViolation, BadInput) as refusal:
        return Outcome(row.device_id, task.serial, None, str(refusal))


def write_outputs(items: list[tuple[str, bytes]]) -> int:
    """Called only after the parent committed these certificates: write each device's file
    (CSR runs) or turn its pending key and certificate into the final bundle (factory keys)."""
    assert _setup is not None and _setup.bundles is not None, "worker not initialised"
    for device_id, der in items:
        if _setup.keygen is None:
            _setup.bundles.write_certificate(device_id, der)
        else:
            _setup.bundles.finish(device_id, x509.load_der_x509_certificate(der))
    return len(items)


def _request_from_csr(row: DeviceRow) -> Request:
    assert row.csr_path is not None
    try:
        with open(row.csr_path, "rb") as handle:  # noqa: PTH123 - hot path, plain open
            data = handle.read(MAX_CSR_BYTES + 1)  # one byte more tells an oversized file
            if len(data) > MAX_CSR_BYTES:
                raise BadInput(f"CSR {row.csr_path} is {_size(handle.fileno())}; the limit is "
                               f"{MAX_CSR_BYTES} bytes (64 KiB)")
    except OSError as exc:
        raise BadInput(f"cannot read CSR {row.csr_path}: {exc.strerror}") from None
    csr = load_csr(data)
    request = Request.from_csr(csr)
    check_proof_of_possession(csr, request.public_key)
    return request


def _size(fd: int) -> str:
    """The file's own size, not how much of it was read; a pipe or device has none to tell."""
    size = os.fstat(fd).st_size
    return f"{size} bytes" if size > MAX_CSR_BYTES else f"more than {MAX_CSR_BYTES} bytes"


def _request_from_row(row: DeviceRow, key: CertificateIssuerPrivateKeyTypes,
                      device_id_from: str) -> Request:
    attributes = dict(row.attributes)
    if device_id_from in SUBJECT_ATTRIBUTES:
        # The attribute that names the device defaults to the device id column.
        attributes.setdefault(device_id_from, row.device_id)
    try:
        sans = tuple(san_from_text(text) for text in row.sans)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    try:
        subject = x509.Name([x509.NameAttribute(SUBJECT_ATTRIBUTES[name], value)
                             for name, value in attributes.items()])
    except ValueError as exc:  # e.g. a country that is not two letters, an empty value
        raise BadInput(f"the subject attributes cannot form a name: {exc}") from None
    return Request(subject=subject, sans=sans, public_key=key.public_key())


