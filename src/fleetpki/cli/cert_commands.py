"""`fleetpki certs ...`: search, show, revoke and export issued certificates."""

from __future__ import annotations

import datetime as dt
import json

import click
from cryptography.hazmat.primitives import serialization

from fleetpki.cli.context import CliState, handle_errors, pass_state
from fleetpki.cli.output import certificate_details, certificate_table, console, pem
from fleetpki.core.errors import NotFound
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CertificateStatus, IssuedCertificate
from fleetpki.core.serials import parse_serial
from fleetpki.ra.authorizers import local_operator
from fleetpki.store.api import CertificateQuery


def register(cli: click.Group) -> None:
    cli.add_command(certs)


def _serial(value: str) -> int:
    try:
        return parse_serial(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SERIAL") from None


@click.group()
def certs() -> None:
    """Issued certificates: list and search, show, revoke, export."""


@certs.command("list")
@click.option("--device", default=None, help="Device id.")
@click.option("--profile", default=None)
@click.option("--issuer", default=None)
@click.option("--status", type=click.Choice([s.value for s in CertificateStatus]), default=None)
@click.option("--expiring-before", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              default=None, help="Only certificates whose notAfter is before this date (UTC).")
@click.option("--subject", default=None, help="Substring of the subject.")
@click.option("--san", default=None, help="Substring of a subjectAltName.")
@click.option("--key", "key_spec", default=None, help="Key type, e.g. ec-p256.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
@handle_errors
def list_certs(state: CliState, device: str | None, profile: str | None, issuer: str | None,
               status: str | None, expiring_before: dt.datetime | None, subject: str | None,
               san: str | None, key_spec: str | None, limit: int, offset: int,
               as_json: bool) -> None:
    """List certificates, soonest expiry first."""
    fleet = state.fleet()
    now = fleet.clock.now()
    query = CertificateQuery(
        device_id=device, profile=profile, issuer=issuer,
        status=CertificateStatus(status) if status else None,
        expiring_before=expiring_before.replace(tzinfo=dt.UTC) if expiring_before else None,
        subject_contains=subject, san_contains=san, key_spec=key_spec, limit=limit,
        offset=offset)
    rows = fleet.store.find_certificates(query, now=now)
    if as_json:
        for row in rows:
            click.echo(json.dumps(certificate_details(row, now)))
    else:
        console.print(certificate_table(rows, now))
        click.echo(f"{len(rows)} certificate(s)" + (" (more: raise --limit or use --offset)"
                                                    if len(rows) == limit else ""))


@certs.command("show")
@click.argument("serial")
@click.option("--issuer", default=None)
@click.option("--pem", "as_pem", is_flag=True, help="Also print the certificate in PEM.")
@pass_state
@handle_errors
def show(state: CliState, serial: str, issuer: str | None, as_pem: bool) -> None:
    """Show one certificate (serial in hex, colons allowed)."""
    fleet = state.fleet()
    cert = _find(state, serial, issuer)
    click.echo(json.dumps(certificate_details(cert, fleet.clock.now()), indent=2))
    if as_pem:
        click.echo(pem(cert.der), nl=False)


@certs.command("revoke")
@click.argument("serial")
@click.option("--reason", required=True, help="RFC 5280 reason, e.g. keyCompromise, superseded, "
              "cessationOfOperation.")
@click.option("--issuer", default=None)
@pass_state
@handle_errors
def revoke(state: CliState, serial: str, reason: str, issuer: str | None) -> None:
    """Revoke a certificate; the store records it (CRLs and OCSP serve it)."""
    try:
        parsed = RevocationReason.parse(reason)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--reason") from None
    record = state.fleet().issuance.revoke(_serial(serial), parsed, local_operator(),
                                           issuer=issuer)
    click.echo(f"revoked {record.serial:x} ({record.device_id}) for {parsed.value}")


@certs.command("export")
@click.argument("serial")
@click.option("--issuer", default=None)
@click.option("--chain/--no-chain", default=True, show_default=True,
              help="Include the issuing CAs up to (not including) the root.")
@click.option("--root/--no-root", default=False, help="Include the root as well.")
@pass_state
@handle_errors
def export(state: CliState, serial: str, issuer: str | None, chain: bool, root: bool) -> None:
    """Print a certificate with its chain, PEM."""
    cert = _find(state, serial, issuer)
    click.echo(pem(cert.der), nl=False)
    if chain:
        parents = state.fleet().chain(cert.issuer)
        for parent in parents if root else parents[:-1]:
            click.echo(parent.public_bytes(serialization.Encoding.PEM).decode("ascii"), nl=False)


def _find(state: CliState, serial: str, issuer: str | None) -> IssuedCertificate:
    cert = state.fleet().store.get_certificate(_serial(serial), issuer)
    if cert is None:
        raise NotFound(f"no certificate with serial {serial}")
    return cert


