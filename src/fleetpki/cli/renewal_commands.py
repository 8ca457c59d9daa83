"""`fleetpki renewal advise|list|withdraw`: pull a profile's renewals forward, e.g. after an
incident (docs/operations.md, "Pulling renewals forward")."""

from __future__ import annotations

import datetime as dt
import json

import click
from rich.table import Table
from rich.text import Text

from fleetpki.cli.context import WHEN, CliState, handle_errors, parse_when, pass_state
from fleetpki.cli.output import console
from fleetpki.core.renewal_window import RenewalAdvisory
from fleetpki.ra.authorizers import local_operator


def register(cli: click.Group) -> None:
    cli.add_command(renewal)


@click.group()
def renewal() -> None:
    """Renewal advisories: ask a profile's devices to renew earlier than usual."""


@renewal.command("advise")
@click.option("--profile", required=True, help="The profile whose certificates should renew.")
@click.option("--end", required=True, metavar="WHEN",
              help=f"Renew before this: {WHEN}.")
@click.option("--start", default=None, metavar="WHEN",
              help="Renewals accepted and suggested from this; default now.")
@click.option("--issued-before", default=None, metavar="WHEN",
              help="Only certificates issued before this; default now.")
@click.option("--explanation", required=True,
              help="Why (one line, at most 500 characters); shown to operators and devices.")
@click.option("--json", "as_json", is_flag=True, help="Print the advisory as JSON.")
@pass_state
@handle_errors
def advise(state: CliState, profile: str, end: str, start: str | None,
           issued_before: str | None, explanation: str, as_json: bool) -> None:
    """Pull renewals forward for a profile's certificates."""
    fleet = state.fleet()
    # One "now" for the whole command: `--end 7d` is then exactly seven days after the
    # default start, which the RA would otherwise take from a later reading of the clock.
    now = fleet.clock.now()
    advisory = fleet.renewal_advisories(local_operator()).advise(
        profile, end=parse_when(end, now, "--end"),
        start=parse_when(start, now, "--start") if start is not None else now,
        issued_before=(parse_when(issued_before, now, "--issued-before")
                       if issued_before is not None else now),
        explanation=explanation)
    if as_json:
        click.echo(json.dumps(_as_dict(advisory)))
        return
    _print([advisory], now)


@renewal.command("list")
@click.option("--profile", default=None, help="Only this profile's advisories.")
@click.option("--all", "include_withdrawn", is_flag=True, help="Include withdrawn advisories.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
@handle_errors
def list_advisories(state: CliState, profile: str | None, include_withdrawn: bool,
                    as_json: bool) -> None:
    """List renewal advisories, oldest first."""
    fleet = state.fleet()
    rows = fleet.renewal_advisories(local_operator()).list(
        profile=profile, include_withdrawn=include_withdrawn)
    if as_json:
        for advisory in rows:
            click.echo(json.dumps(_as_dict(advisory)))
        return
    _print(rows, fleet.clock.now())


@renewal.command("withdraw")
@click.argument("advisory_id")
@pass_state
@handle_errors
def withdraw(state: CliState, advisory_id: str) -> None:
    """Withdraw an advisory: devices go back to their profile's normal renewal window."""
    state.fleet().renewal_advisories(local_operator()).withdraw(advisory_id)
    click.echo(f"withdrew {advisory_id}")


def _state(advisory: RenewalAdvisory, now: dt.datetime) -> str:
    if advisory.withdrawn_at is not None:
        return "withdrawn"
    if advisory.end <= now:
        return "ended"
    return "active" if advisory.start <= now else "scheduled"


def _print(rows: list[RenewalAdvisory], now: dt.datetime) -> None:
    """A table of the fixed-width fields, then each explanation on its own line: free text in
    a seventh column would be squeezed to a few letters in an 80-column terminal. The
    explanation is operator input, so it is shown as plain Text, never as rich markup."""
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("profile")
    for column in ("issued before", "start", "end"):
        table.add_column(column, min_width=10)  # wraps between date and time if it must
    table.add_column("state", no_wrap=True)
    for a in rows:
        table.add_row(a.id, Text(a.profile), f"{a.issued_before:%Y-%m-%d %H:%M}",
                      f"{a.start:%Y-%m-%d %H:%M}", f"{a.end:%Y-%m-%d %H:%M}", _state(a, now))
    console.print(table)
    for a in rows:
        console.print(Text(f"{a.id}: {a.explanation}"))


def _as_dict(advisory: RenewalAdvisory) -> dict[str, str | None]:
    return {
        "id": advisory.id, "profile": advisory.profile,
        "issued_before": advisory.issued_before.isoformat(),
        "start": advisory.start.isoformat(), "end": advisory.end.isoformat(),
        "explanation": advisory.explanation, "created_at": advisory.created_at.isoformat(),
        "created_by": advisory.created_by,
        "withdrawn_at": advisory.withdrawn_at.isoformat() if advisory.withdrawn_at else None,
    }
