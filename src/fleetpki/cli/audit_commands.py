"""`fleetpki audit ...`: read and verify the hash-chained audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator

import click
from rich.progress import Progress

from fleetpki.cli.context import CliState, handle_errors, pass_state
from fleetpki.core.audit_chain import verify_chain
from fleetpki.core.errors import AuditChainBroken
from fleetpki.core.records import AuditEntry


def register(cli: click.Group) -> None:
    cli.add_command(audit)


@click.group()
def audit() -> None:
    """The audit log: every issuance, refusal, revocation and CA operation."""


@audit.command("verify")
@click.option("--expect-head", default=None, metavar="SEQ:HASH",
              help="A head recorded earlier (`fleetpki audit head`): also detects entries "
                   "removed from the end.")
@pass_state
@handle_errors
def verify(state: CliState, expect_head: str | None) -> None:
    """Recompute the hash chain; exit 10 at the first modified, missing or moved entry."""
    expected = None
    if expect_head is not None:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise click.BadParameter("expected SEQ:HASH as printed by `fleetpki audit head`",
                                     param_hint="--expect-head")
        expected = (int(seq), digest)
    store = state.fleet().store
    total, _ = store.audit_head()
    with Progress(transient=True) as progress:
        task = progress.add_task("verifying the audit chain", total=total)

        def entries() -> Iterator[AuditEntry]:
            for entry in store.audit_entries():
                progress.advance(task)
                yield entry

        report = verify_chain(entries(), expected_head=expected)
    if report.head_seq != total:
        raise AuditChainBroken(f"the chain ends at entry {report.head_seq} but the recorded head "
                               f"is {total}: entries were removed")
    click.echo(f"audit log OK: {report.entries} entries, head {report.head_seq}:"
               f"{report.head_hash}")


@audit.command("head")
@pass_state
@handle_errors
def head(state: CliState) -> None:
    """Print SEQ:HASH of the newest entry, to record outside this system."""
    seq, digest = state.fleet().store.audit_head()
    click.echo(f"{seq}:{digest}")


@audit.command("list")
@click.option("--since", type=click.IntRange(1, 2**63 - 1), default=1,
              help="First sequence number.")
@click.option("--limit", type=click.IntRange(1, 2**31), default=50, show_default=True)
@pass_state
@handle_errors
def list_entries(state: CliState, since: int, limit: int) -> None:
    """Print entries as JSON lines."""
    for count, entry in enumerate(state.fleet().store.audit_entries(since_seq=since)):
        if count >= limit:
            break
        click.echo(json.dumps({"seq": entry.seq, "at": entry.at.isoformat(),
                               "actor": entry.actor, "action": entry.action,
                               "subject": entry.subject, "details": entry.details,
                               "hash": entry.hash}))
