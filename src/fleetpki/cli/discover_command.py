"""`fleetpki discover`: scan TLS endpoints, record what they serve, report what to act on
(docs/operations.md, "Discovery scans")."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from fleetpki.cli.context import CliState, handle_errors, pass_state, read_text_file
from fleetpki.cli.output import console
from fleetpki.core.serials import serial_hex
from fleetpki.discovery.chain import describe_chain
from fleetpki.discovery.ownership import OurCAs
from fleetpki.discovery.report import (
    CertificateReport,
    Classifier,
    EndpointReport,
    FindingKind,
    Summary,
    summarize,
)
from fleetpki.discovery.scanner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    ScanOptions,
    ScanResult,
    scan_endpoints,
)
from fleetpki.discovery.targets import (
    DEFAULT_PORT,
    Endpoint,
    TargetError,
    parse_targets,
    targets_from_lines,
)
from fleetpki.ra.authorizers import local_operator
from fleetpki.store.api import AuditEvent

_TARGETS_FILE_LIMIT = 16 * 1024 * 1024
_SUBJECT_LIMIT = 200  # characters of the target list kept as the audit entry's subject


def register(cli: click.Group) -> None:
    cli.add_command(discover)


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--targets-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Targets, one per line; blank lines and # comments are skipped.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port for targets that name none (hosts, addresses, CIDR ranges).")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=DEFAULT_CONCURRENCY,
              show_default=True, help="Endpoints scanned at the same time.")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=DEFAULT_TIMEOUT,
              show_default=True, help="Seconds per endpoint to connect and complete the TLS "
              "handshake.")
@click.option("--warn-days", type=click.IntRange(0, 3650), default=30, show_default=True,
              help="Report certificates that expire within this many days.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@pass_state
@handle_errors
def discover(state: CliState, targets: tuple[str, ...], targets_file: Path | None, port: int,
             concurrency: int, timeout: float, warn_days: int, as_json: bool) -> None:
    """Scan TLS endpoints and record the certificates they serve.

    TARGETS are host:port, [IPv6]:port, a host or address (--port), or a CIDR range of at
    most 65,536 addresses (192.0.2.0/24, or 192.0.2.0/24:8443). Certificates are fetched
    without being verified, recorded in the inventory and checked: expired, expiring, weak
    keys and signatures, and, for certificates fleetpki issued, their profile. Findings are
    a report, not an error: the exit code is 0.
    """
    specs = list(targets)
    if targets_file is not None:
        specs += _read_targets_file(targets_file)
    if not specs:
        raise click.UsageError("no targets: give host:port arguments or --targets-file")
    try:
        endpoints = parse_targets(specs, default_port=port)
    except TargetError as exc:
        raise click.BadParameter(str(exc), param_hint="TARGETS") from None

    fleet = state.fleet()
    # What the report compares with is read first: a broken profiles file stops the command
    # before a long scan, not after it.
    ours = OurCAs.of(fleet.store.list_cas())
    key_policies = {name: profile.keys for name, profile in fleet.profiles.items()}
    results = _scan_with_progress(endpoints, ScanOptions(concurrency, timeout))
    # The certificates were seen now: the report counts days from here, the store records it.
    now = fleet.clock.now()
    classifier = Classifier(fleet.store, key_policies, now=now,
                            warn_within=dt.timedelta(days=warn_days), ours=ours)
    reports = [classifier.endpoint(describe_chain(r, ours)) for r in results]
    summary = summarize(reports)
    records = [c.served.record for r in reports for c in r.certificates]
    fleet.store.record_discovered(records, AuditEvent(
        actor=local_operator().actor, action="discovery.scanned", subject=_subject(specs),
        details={"targets": str(len(specs)), "endpoints": str(summary.endpoints),
                 "answered": str(summary.answered), "recorded": str(summary.recorded)}),
        at=now)
    if as_json:
        click.echo(json.dumps(_as_dict(reports, summary, now, warn_days)))
        return
    _print(reports, summary, now, warn_days)


def _read_targets_file(path: Path) -> list[str]:
    text = read_text_file(path, what="targets file", limit=_TARGETS_FILE_LIMIT)
    try:
        return targets_from_lines(text.splitlines(), source=str(path))
    except TargetError as exc:
        raise click.BadParameter(str(exc), param_hint="--targets-file") from None


def _scan_with_progress(endpoints: list[Endpoint], options: ScanOptions) -> list[ScanResult]:
    """The bar goes to stderr, so that stdout is the report alone, and only to a terminal:
    piped or captured, the scan is silent until the report."""
    errors = Console(stderr=True)
    columns = (TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True,
                  disable=not errors.is_terminal) as progress:
        task = progress.add_task("scan", total=len(endpoints))
        return scan_endpoints(endpoints, options, lambda _: progress.advance(task))


def _subject(specs: list[str]) -> str:
    text = " ".join(specs)
    if len(text) <= _SUBJECT_LIMIT:
        return text
    kept: list[str] = []
    for spec in specs:
        if len(" ".join([*kept, spec])) > _SUBJECT_LIMIT - 16:
            break
        kept.append(spec)
    return f"{' '.join(kept)} (+{len(specs) - len(kept)} more)"


def _days_left(report: CertificateReport, now: dt.datetime) -> int:
    """Whole days to notAfter, negative for whole days since: the numbers the findings say
    ("in 9 days", "10 days ago")."""
    return int((report.served.record.not_after - now) / dt.timedelta(days=1))


def _print(reports: list[EndpointReport], summary: Summary, now: dt.datetime,
           warn_days: int) -> None:
    """The leaf of each endpoint in a table, then each finding on its own line: the
    messages would be squeezed to a few letters in a column. Everything shown came from the
    network, so it is printed as plain Text with control characters escaped."""
    table = Table()
    table.add_column("endpoint", no_wrap=True)
    for column in ("subject", "issuer"):
        table.add_column(column, overflow="fold")  # names are folded, never cut short
    table.add_column("days left", justify="right", no_wrap=True)
    for column in ("key", "ours", "findings"):
        table.add_column(column, no_wrap=True)
    for report in reports:
        leaf = next((c for c in report.certificates if c.served.record.position == 0), None)
        if leaf is None:
            continue
        record = leaf.served.record
        kinds = sorted({f.kind.value for c in report.certificates for f in c.findings
                        if f.kind is not FindingKind.info})
        table.add_row(_text(str(report.chain.endpoint)), _text(record.subject),
                      _text(record.issuer_name), str(_days_left(leaf, now)),
                      _text(record.key_spec), _text(record.issued_by_us or "external"),
                      ", ".join(kinds) or "-")
    if table.row_count:
        console.print(table)
    # One unwrapped line each, whatever the terminal's width: these are what gets grepped.
    for report in reports:
        for line in _finding_lines(report):
            click.echo(_printable(line))
    unreachable = [r for r in reports if r.chain.error is not None]
    if unreachable:
        click.echo("unreachable:")
        for report in unreachable:
            click.echo(_printable(f"  {report.chain.endpoint}  {report.chain.error}"))
    click.echo(
        f"{summary.endpoints} endpoints scanned, {summary.answered} answered TLS, "
        f"{summary.recorded} certificates recorded, {summary.expired} expired, "
        f"{summary.expiring} expiring within {warn_days} days, {summary.policy} break policy")


def _finding_lines(report: EndpointReport) -> list[str]:
    endpoint = report.chain.endpoint
    lines = [f"{endpoint}  policy  {why}" for why in report.chain.unparsable]
    for c in report.certificates:
        where = "" if c.served.record.position == 0 else f"chain {c.served.record.position}: "
        lines += [f"{endpoint}  {f.kind.value}  {where}{f.message}" for f in c.findings]
    return lines


def _text(value: str) -> Text:
    return Text(_printable(value))


def _printable(value: str) -> str:
    """Control characters (a terminal escape in a certificate subject) shown as \\xNN."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in value)


def _as_dict(reports: list[EndpointReport], summary: Summary, now: dt.datetime,
             warn_days: int) -> dict[str, Any]:
    return {
        "summary": {
            "endpoints": summary.endpoints, "answered": summary.answered,
            "recorded": summary.recorded, "expired": summary.expired,
            "expiring": summary.expiring, "policy": summary.policy, "warn_days": warn_days,
            "scanned_at": now.isoformat(),
        },
        "endpoints": [{
            "endpoint": str(r.chain.endpoint), "host": r.chain.endpoint.host,
            "port": r.chain.endpoint.port, "error": r.chain.error,
            "unparsable": list(r.chain.unparsable),
            "certificates": [_certificate(c, now) for c in r.certificates],
        } for r in reports],
    }


def _certificate(report: CertificateReport, now: dt.datetime) -> dict[str, Any]:
    record = report.served.record
    return {
        "position": record.position, "subject": record.subject, "issuer": record.issuer_name,
        "serial": serial_hex(record.serial), "fingerprint_sha256": record.fingerprint,
        "not_before": record.not_before.isoformat(), "not_after": record.not_after.isoformat(),
        "days_left": _days_left(report, now), "key": record.key_spec,
        "signature_algorithm": record.signature_algorithm, "ours": record.issued_by_us,
        "findings": [{"kind": f.kind.value, "message": f.message} for f in report.findings],
    }
