"""`fleetpki scep ...`: the SCEP RA certificates and the profiles' static challenge passwords."""

from __future__ import annotations

import hashlib
import json

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.table import Table

from fleetpki.cli.context import CliState, handle_errors, pass_state
from fleetpki.cli.output import console
from fleetpki.ra.authorizers import local_operator


def register(cli: click.Group) -> None:
    cli.add_command(scep)


@click.group()
def scep() -> None:
    """SCEP (RFC 8894): RA certificates and static challenge passwords."""


@scep.command("ra")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_state
@handle_errors
def show_ra(state: CliState, as_json: bool) -> None:
    """Issue (or roll over) the RA certificate of each SCEP issuing CA and show it, with the
    SHA-256 fingerprint that clients such as scepclient pin (-ca-fingerprint)."""
    fleet = state.fleet()
    rows = []
    for files in fleet.ensure_scep_identities():
        certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
        fingerprint = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER))
        rows.append({"certificate": str(files.certificate),
                     "subject": certificate.subject.rfc4514_string(),
                     "not_after": certificate.not_valid_after_utc.isoformat(),
                     "sha256": fingerprint.hexdigest()})
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("No profile enrolls over SCEP: set enrollment.scep = true in profiles.toml.")
        return
    for row in rows:
        click.echo(f"{row['subject']}  until {row['not_after'][:10]}")
        click.echo(f"  file:    {row['certificate']}")
        click.echo(f"  sha256:  {row['sha256']}")


@scep.group("challenge")
def challenge() -> None:
    """A profile's static challenge password (one secret for every device of the profile)."""


@challenge.command("set")
@click.argument("profile")
@pass_state
@handle_errors
def set_challenge(state: CliState, profile: str) -> None:
    """Make a new random challenge for PROFILE (replacing any); it is printed once."""
    made = state.fleet().challenge_admin(local_operator()).set(profile)
    click.echo(made.secret)
    click.echo(f"Static SCEP challenge of profile '{profile}' set. It is shown only now: "
               "fleetpki keeps a hash of it.", err=True)


@challenge.command("list")
@pass_state
@handle_errors
def list_challenges(state: CliState) -> None:
    """Profiles with a static challenge (never the secret)."""
    table = Table("profile", "set at", "set by")
    for item in state.fleet().challenge_admin(local_operator()).list():
        table.add_row(item.profile, f"{item.created_at:%Y-%m-%d %H:%M}Z", item.created_by)
    console.print(table)


@challenge.command("clear")
@click.argument("profile")
@pass_state
@handle_errors
def clear_challenge(state: CliState, profile: str) -> None:
    """Remove PROFILE's static challenge: devices need a bootstrap credential or the callback."""
    state.fleet().challenge_admin(local_operator()).clear(profile)
    click.echo(f"Static SCEP challenge of profile '{profile}' removed.")
