"""`fleetpki acme ...`: external account binding keys for ACME clients (RFC 8555 §7.3.4)."""

from __future__ import annotations

import json

import click
from rich.table import Table

from fleetpki.cli.context import CliState, handle_errors, pass_state
from fleetpki.cli.output import console
from fleetpki.core.durations import parse_duration
from fleetpki.ra.authorizers import local_operator


def register(cli: click.Group) -> None:
    cli.add_command(acme)


@click.group()
def acme() -> None:
    """ACME (RFC 8555): external account binding keys."""


@acme.group("eab")
def eab() -> None:
    """External account binding keys: one per ACME account to be created."""


@eab.command("create")
@click.option("--profile", default=None,
              help="The only profile the bound account may order in (default: any profile "
                   "with enrollment.acme = true).")
@click.option("--expires", "lifetime", default="7d", show_default=True,
              help="How long the key can be used to create an account.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_state
@handle_errors
def create(state: CliState, profile: str | None, lifetime: str, as_json: bool) -> None:
    """Make a key. Its MAC key is printed once: fleetpki stores no copy (it derives it again
    from its secret derivation key when the account is created)."""
    fleet = state.fleet()
    key, mac = fleet.eab_admin(local_operator()).create(
        profile=profile, lifetime=parse_duration(lifetime),
        known_profiles=fleet.acme_profiles())
    if as_json:
        click.echo(json.dumps({"key_id": key.key_id, "hmac_key": mac,
                               "profile": key.profile, "expires_at": key.expires_at.isoformat()}))
        return
    click.echo(f"key id:   {key.key_id}")
    click.echo(f"MAC key:  {mac}")
    click.echo(f"certbot --eab-kid {key.key_id} --eab-hmac-key {mac} ...   "
               f"lego --eab --kid {key.key_id} --hmac {mac} ...", err=True)
    click.echo(f"Usable until {key.expires_at:%Y-%m-%d %H:%M}Z, once. The MAC key is shown only "
               "now.", err=True)


@eab.command("list")
@click.option("--all", "include_disabled", is_flag=True, help="Include disabled keys.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON lines.")
@pass_state
@handle_errors
def list_keys(state: CliState, include_disabled: bool, as_json: bool) -> None:
    """EAB keys and the accounts they are bound to (never the MAC key)."""
    keys = state.fleet().eab_admin(local_operator()).list(include_disabled=include_disabled)
    if as_json:
        for key in keys:
            click.echo(json.dumps({
                "key_id": key.key_id, "profile": key.profile, "account": key.account_id,
                "created_at": key.created_at.isoformat(), "created_by": key.created_by,
                "expires_at": key.expires_at.isoformat(),
                "disabled_at": key.disabled_at.isoformat() if key.disabled_at else None}))
        return
    table = Table("key id", "profile", "account", "expires", "state")
    table.columns[0].no_wrap = table.columns[2].no_wrap = True  # ids are copied from here
    for key in keys:
        state_text = ("disabled" if key.disabled_at else "bound" if key.account_id
                      else "unused")
        table.add_row(key.key_id, key.profile or "*", key.account_id or "-",
                      f"{key.expires_at:%Y-%m-%d %H:%M}Z", state_text)
    console.print(table)


@eab.command("disable")
@click.argument("key_id")
@pass_state
@handle_errors
def disable(state: CliState, key_id: str) -> None:
    """Stop KEY_ID from creating an account (an account it created already stays)."""
    key = state.fleet().eab_admin(local_operator()).disable(key_id)
    click.echo(f"EAB key {key.key_id} disabled.")
