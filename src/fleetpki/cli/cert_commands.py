"""`fleetpki certs ...`: search, show, revoke and export issued certificates."""

from __future__ import annotations

import datetime as dt
import json

import click
from cryptography.hazmat.primitives import serialization

from fleetpki.cli.context import WHEN, CliState, handle_errors, parse_when, pass_state
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
@click.option("--expiring-before", default=None, metavar="WHEN",
              help=f"Only certificates whose notAfter is before this: {WHEN} (30d: expiring "
              "within 30 days).")
@click.option("--subject", default=None, help="Substring of the subject.")
@click.option("--san", default=None, help="Substring of a subjectAltName.")
@click.option("--key", "key_spec", default=None, help="Key type, e.g. ec-p256.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0, 2**63 - 1), default=0)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
@handle_errors
def list_certs(state: CliState, device: str | None, profile: str | None, issuer: str | None,
               status: str | None, expiring_before: str | None, subject: str | None,
               san: str | None, key_spec: str | None, limit: int, offset: int,
               as_json: bool) -> None:
    """List certificates, soonest expiry first."""
    fleet = state.fleet()
    now = fleet.clock.now()
    query = CertificateQuery(
        device_id=device, profile=profile, issuer=issuer,
        status=CertificateStatus(status) if status else None,
        expiring_before=(parse_when(expiring_before, now, "--expiring-before")
                         if expiring_before is not None else None),
        subject_contains=subject, san_contains=san, key_spec=key_spec, limit=limit,
        offset=offset)
    rows = fleet.store.find_certificates(query, now=now)
    if not rows and profile is not None:
        _check_profile_known(state, profile, now)
    if as_json:
        for row in rows:
            click.echo(json.dumps(certificate_details(row, now)))
    else:
        console.print(certificate_table(rows, now))
        click.echo(f"{len(rows)} certificate(s)" + (" (more: raise --limit or use --offset)"
                                                    if len(rows) == limit else ""))


def _check_profile_known(state: CliState, profile: str, now: dt.datetime) -> None:
    """An empty list for a mistyped profile reads as "no certificates", which is wrong: refuse
    a name that neither profiles.toml nor any stored certificate knows. A profile removed
    from profiles.toml keeps its certificates, and they stay listable."""
    fleet = state.fleet()
    if profile in fleet.profiles or fleet.store.find_certificates(
            CertificateQuery(profile=profile, limit=1), now=now):
        return
    raise NotFound(f"no profile named '{profile}' in {fleet.settings.profiles_file.name} or on "
                   f"any stored certificate (profiles: {', '.join(sorted(fleet.profiles))})")


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
@click.argument("serial", required=False)
@click.option("--device", default=None, help="Revoke every valid certificate of this device "
              "instead of one serial.")
@click.option("--reason", required=True, help="RFC 5280 reason, e.g. keyCompromise, superseded, "
              "cessationOfOperation, certificateHold (can be lifted with release-hold).")
@click.option("--invalidity-date", default=None, metavar="ISO-8601",
              help="When the key was known or suspected to be compromised, e.g. "
                   "2026-11-20T08:00:00Z (RFC 5280 §5.3.2).")
@click.option("--issuer", default=None)
@pass_state
@handle_errors
def revoke(state: CliState, serial: str | None, device: str | None, reason: str,
           invalidity_date: str | None, issuer: str | None) -> None:
    """Revoke a certificate (or all of a device's): CRLs list it and OCSP reports it at once;
    CRL files show it at their next publication (at once if the profile says publish_on_revoke).
    """
    if serial is not None and device is not None:
        raise click.UsageError("give either a SERIAL or --device, not both")
    if serial is None and device is None:
        raise click.UsageError("give the SERIAL of the certificate to revoke, or --device to "
                               "revoke all of a device's certificates")
    try:
        parsed = RevocationReason.parse(reason)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--reason") from None
    invalid = _timestamp(invalidity_date, "--invalidity-date") if invalidity_date else None
    desk = state.fleet().revocations(local_operator())
    if device is not None:
        records = desk.revoke_device(device, parsed, invalidity_date=invalid)
    else:
        records = [desk.revoke(_serial(serial or ""), parsed, issuer=issuer,
                               invalidity_date=invalid)]
    for record in records:
        click.echo(f"revoked {record.serial:x} ({record.device_id}) for {parsed.value}")
    for failure in desk.publish_failures:
        click.echo(f"warning: {failure}", err=True)


@certs.command("release-hold")
@click.argument("serial")
@click.option("--issuer", default=None)
@pass_state
@handle_errors
def release_hold(state: CliState, serial: str, issuer: str | None) -> None:
    """Lift a certificateHold: the certificate is valid again, and the next delta CRL says
    removeFromCRL."""
    desk = state.fleet().revocations(local_operator())
    record = desk.release_hold(_serial(serial), issuer=issuer)
    click.echo(f"hold lifted on {record.serial:x} ({record.device_id})")
    for failure in desk.publish_failures:
        click.echo(f"warning: {failure}", err=True)


def _timestamp(text: str, option: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use ISO 8601, e.g. 2026-11-20T08:00:00Z",
                                 param_hint=option) from None
    if value.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. a trailing Z for UTC", param_hint=option)
    return value.astimezone(dt.UTC)


@certs.command("export")
@click.argument("serial")
@click.option("--issuer", default=None)
@click.option("--chain/--no-chain", default=True, show_default=True,
              help="Include the issuing CAs up to (not including) the root.")
@click.option("--root/--no-root", default=False,
              help="Include the root as well, after the chain (not with --no-chain).")
@pass_state
@handle_errors
def export(state: CliState, serial: str, issuer: str | None, chain: bool, root: bool) -> None:
    """Print a certificate with its chain, PEM."""
    if root and not chain:
        # The leaf and the root without the CAs between them is no chain anything can verify,
        # and dropping --root silently would hide that the request made no sense.
        raise click.UsageError("--root adds the root to the end of the chain; it cannot be "
                               "combined with --no-chain")
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


