"""`fleetpki admin token create|list|revoke` and `fleetpki admin summary`: access to the admin
API and dashboard, and the fleet summary they show (docs/inventory.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from fleetpki.cli.context import CliState, handle_errors, pass_state
from fleetpki.cli.output import console
from fleetpki.core.api_tokens import ApiToken, Role
from fleetpki.core.durations import parse_duration
from fleetpki.core.errors import BadInput
from fleetpki.ra.authorizers import local_operator


def register(cli: click.Group) -> None:
    cli.add_command(admin)


@click.group()
def admin() -> None:
    """The admin API and dashboard: tokens, the fleet summary."""


@admin.group()
def token() -> None:
    """API tokens: the only way into the admin API and the dashboard."""


@token.command("create")
@click.option("--name", required=True, help="Who or what holds it: a person, a system.")
@click.option("--role", type=click.Choice([r.value for r in Role]), default="admin",
              show_default=True,
              help="auditor: read and verify; operator: also enroll, approve, revoke, "
                   "credentials; admin: everything.")
@click.option("--expires", default="90d", show_default=True,
              help="Lifetime (e.g. 12h, 30d; at most 2 years).")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
@pass_state
@handle_errors
def create(state: CliState, name: str, role: str, expires: str, as_json: bool) -> None:
    """Create a token and print it once: only the hash of its secret is kept."""
    try:
        lifetime = parse_duration(expires)
    except ValueError as error:
        raise BadInput(f"--expires: {error}") from None
    made = state.fleet().token_admin(local_operator()).create(name, Role(role),
                                                              lifetime=lifetime)
    if as_json:
        click.echo(json.dumps({**_as_dict(made.token), "token": made.text}))
        return
    click.echo(made.text)
    click.echo(f"API token {made.token.id} for {name} ({role}), expires "
               f"{made.token.expires_at:%Y-%m-%d %H:%M} UTC. It is shown only this once: "
               "store it now (a password manager, a secret store).", err=True)


@token.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
@handle_errors
def list_tokens(state: CliState, include_revoked: bool, as_json: bool) -> None:
    """List tokens (never their secrets), oldest first."""
    rows = state.fleet().token_admin(local_operator()).list(include_revoked=include_revoked)
    if as_json:
        for row in rows:
            click.echo(json.dumps(_as_dict(row)))
        return
    table = Table("id", "name", "role", "created", "by", "expires", "revoked")
    for row in rows:
        table.add_row(row.id, row.name, row.role.value, f"{row.created_at:%Y-%m-%d %H:%M}",
                      row.created_by, f"{row.expires_at:%Y-%m-%d %H:%M}",
                      f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "")
    console.print(table)


@token.command("revoke")
@click.argument("token_id")
@pass_state
@handle_errors
def revoke(state: CliState, token_id: str) -> None:
    """Revoke a token: the next request with it is refused."""
    revoked = state.fleet().token_admin(local_operator()).revoke(token_id)
    click.echo(f"revoked API token {revoked.id} ({revoked.name})")


@admin.group()
def operator() -> None:
    """Operator client certificates: TLS client authentication to the admin API."""


@operator.command("add")
@click.option("--cert", "cert_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The operator's client certificate (PEM). It must chain to one of our CAs "
                   "(or a registered manufacturer CA) for the TLS handshake to accept it.")
@click.option("--name", required=True, help="Who holds it; the audit log names them so.")
@click.option("--role", type=click.Choice([r.value for r in Role]), default="operator",
              show_default=True)
@pass_state
@handle_errors
def add_operator(state: CliState, cert_file: Path, name: str, role: str) -> None:
    """Admit a client certificate to the admin API (not the dashboard, which logs in with a
    token) in a role."""
    record = state.fleet().operator_certificates(local_operator()).add(
        cert_file.read_bytes(), name, Role(role))
    click.echo(f"operator certificate {record.fingerprint} ({record.subject}) admitted as "
               f"{name} ({role}) until {record.not_after:%Y-%m-%d}")


@operator.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked ones.")
@pass_state
@handle_errors
def list_operators(state: CliState, include_revoked: bool) -> None:
    """List operator certificates."""
    table = Table("fingerprint", "name", "role", "subject", "expires", "revoked")
    for row in state.fleet().operator_certificates(local_operator()).list(
            include_revoked=include_revoked):
        table.add_row(row.fingerprint[:16], row.name, row.role.value, row.subject,
                      f"{row.not_after:%Y-%m-%d}",
                      f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "")
    console.print(table)


@operator.command("revoke")
@click.argument("fingerprint")
@pass_state
@handle_errors
def revoke_operator(state: CliState, fingerprint: str) -> None:
    """Withdraw an operator certificate (its SHA-256 fingerprint, as `add` printed it)."""
    revoked = state.fleet().operator_certificates(local_operator()).revoke(fingerprint)
    click.echo(f"operator certificate of {revoked.name} revoked")


@admin.command("summary")
@click.option("--refresh", is_flag=True, help="Compute it now instead of showing the last one.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole summary as JSON.")
@pass_state
@handle_errors
def summary(state: CliState, refresh: bool, as_json: bool) -> None:
    """The fleet summary the dashboard's overview shows: status, expiry, compliance."""
    fleet = state.fleet()
    stored = fleet.refresh_summary() if refresh else fleet.store.latest_summary()
    if stored is None:
        raise BadInput("no fleet summary yet: run `fleetpki admin summary --refresh`, or "
                       "start `fleetpki serve`, which computes one every "
                       "admin.summary_interval")
    if as_json:
        click.echo(stored.document)
        return
    document = json.loads(stored.document)
    certs, devices = document["certificates"], document["devices"]
    findings = document["compliance"]["findings"]
    labels = document["compliance"]["labels"]
    click.echo(f"fleet summary of {stored.computed_at:%Y-%m-%d %H:%M:%S} UTC "
               f"({stored.seconds:.1f} s)")
    click.echo(f"certificates: {certs['total']} ({certs['valid']} valid, {certs['expired']} "
               f"expired, {certs['revoked']} revoked); expiring within 7 days: "
               f"{certs['expiring_7d']}, 30 days: {certs['expiring_30d']}")
    click.echo(f"devices: {devices['total']}, dark: {devices['dark']}; renewal overdue: "
               f"{document['compliance']['overdue_renewal']}")
    click.echo("policy findings: " + (", ".join(f"{labels[k]} {v}" for k, v in findings.items()
                                               if v) or "none"))


def _as_dict(token: ApiToken) -> dict[str, object]:
    return {"id": token.id, "name": token.name, "role": token.role.value,
            "created_at": token.created_at.isoformat(), "created_by": token.created_by,
            "expires_at": token.expires_at.isoformat(),
            "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None}
