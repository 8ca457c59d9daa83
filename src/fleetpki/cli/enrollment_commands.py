"""`fleetpki bootstrap|manufacturers|approvals ...`: who may enroll, and enrollments on hold."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import click
from cryptography import x509
from rich.table import Table

from fleetpki.ca.keyfiles import write_private_file
from fleetpki.cli.context import (
    CliState,
    handle_errors,
    pass_state,
    read_input_file,
    read_text_file,
)
from fleetpki.cli.output import console
from fleetpki.core.durations import parse_duration
from fleetpki.core.enrollment_records import ApprovalState
from fleetpki.core.serials import serial_hex
from fleetpki.ra.authorizers import local_operator
from fleetpki.ra.credentials import CredentialAdmin, CredentialBatch


def register(cli: click.Group) -> None:
    cli.add_command(bootstrap)
    cli.add_command(manufacturers)
    cli.add_command(approvals)


# -- bootstrap credentials -------------------------------------------------------------------

@click.group()
def bootstrap() -> None:
    """Bootstrap credentials: HTTP Basic user and secret for a device's first enrollment."""


@bootstrap.command("create")
@click.option("--profile", required=True, help="Profile the credential enrolls into.")
@click.option("--device", "device_id", default=None,
              help="Bind the credential to one device id (per-device credential).")
@click.option("--uses", "max_uses", type=int, default=1, show_default=True,
              help="How many enrollments the credential allows (group credentials: more).")
@click.option("--expires", "lifetime", default="30d", show_default=True,
              help="Lifetime, e.g. 12h, 30d.")
@click.option("--id", "credential_id", default=None,
              help="The user name; default: a random bt-… id.")
@click.option("--json", "as_json", is_flag=True, help="Print the credential as JSON.")
@click.option("--devices", "devices_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="One per-device credential for each device id in this file "
              "(one id per line; # comments). Needs --out.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="With --devices: a new CSV file (mode 0600) for the secrets.")
@pass_state
@handle_errors
def create_credential(state: CliState, profile: str, device_id: str | None, max_uses: int,
                      lifetime: str, credential_id: str | None, as_json: bool,
                      devices_file: Path | None, out_file: Path | None) -> None:
    """Create a credential; its secret is printed once and stored only as a hash.

    With --devices and --out, create one single-use credential per listed device, in one
    transaction, and write device_id,id,secret,expires_at lines to the --out file: the only
    copy of the secrets, for the station that flashes them into the devices."""
    fleet = state.fleet()
    try:
        duration = parse_duration(lifetime)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    if devices_file is not None or out_file is not None:
        if devices_file is None or out_file is None:
            raise click.UsageError("--devices and --out go together")
        if device_id is not None or credential_id is not None or max_uses != 1 or as_json:
            raise click.UsageError("--devices makes single-use credentials with random ids: "
                                   "leave out --device, --id, --uses and --json")
        _create_for_devices(fleet.credential_admin(local_operator()), profile, duration,
                            devices_file, out_file)
        return
    made = fleet.credential_admin(local_operator()).create(
        profile, lifetime=duration, max_uses=max_uses, device_id=device_id,
        credential_id=credential_id)
    credential = made.credential
    if as_json:
        click.echo(json.dumps({"id": credential.id, "secret": made.secret,
                               "profile": credential.profile, "device_id": credential.device_id,
                               "max_uses": credential.max_uses,
                               "expires_at": credential.expires_at.isoformat()}))
        return
    click.echo(f"id:      {credential.id}")
    click.echo(f"secret:  {made.secret}")
    click.echo(f"profile: {credential.profile}; {credential.max_uses} use(s); expires "
               f"{credential.expires_at:%Y-%m-%d %H:%M}Z")
    click.echo(f"(as a SCEP challengePassword: {credential.id}:{made.secret})")
    click.echo("The secret is shown only now: fleetpki keeps a hash of it.", err=True)


def _create_for_devices(admin: CredentialAdmin, profile: str, lifetime: dt.timedelta,
                        devices_file: Path, out_file: Path) -> None:
    if out_file.exists():
        raise click.UsageError(f"{out_file} exists; fleetpki never overwrites a file of secrets")
    device_ids = _device_ids(devices_file)
    with console.status(f"creating {len(device_ids):,} credentials"):
        batch = admin.prepare_for_devices(profile, device_ids, lifetime=lifetime)
        _write_then_add(admin, batch, out_file)
    count = len(batch.credentials)
    click.echo(f"{count} per-device credential(s) for profile {profile}, single use, expiring "
               f"{batch.created_at + lifetime:%Y-%m-%d %H:%M}Z; secrets in {out_file}")
    click.echo(f"{out_file} is the only copy of the secrets (fleetpki keeps hashes): hand it to "
               "the provisioning station and delete it once the devices have them.", err=True)


def _write_then_add(admin: CredentialAdmin, batch: CredentialBatch, out_file: Path) -> None:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["device_id", "id", "secret", "expires_at"])
    writer.writerows([m.credential.device_id, m.credential.id, m.secret,
                      m.credential.expires_at.isoformat()] for m in batch.credentials)
    # The secrets reach disk (a hidden file, owner only) before the credentials exist, and the
    # file gets its name once they do: a failure stores nothing, and a stored credential's
    # secret is never lost, even to a crash (it is then in the hidden file).
    hidden = out_file.with_name(f".{out_file.name}.partial")
    write_private_file(hidden, table.getvalue().encode("utf-8"), make_parents=False)
    try:
        admin.add(batch)
    except BaseException:
        hidden.unlink(missing_ok=True)
        raise
    hidden.replace(out_file)


@bootstrap.command("list")
@click.option("--profile", default=None)
@click.option("--all", "include_disabled", is_flag=True, help="Include disabled credentials.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
@handle_errors
def list_credentials(state: CliState, profile: str | None, include_disabled: bool,
                     as_json: bool) -> None:
    """List credentials (never their secrets)."""
    fleet = state.fleet()
    now = fleet.clock.now()
    credentials = fleet.store.list_credentials(profile=profile, include_disabled=include_disabled)
    rows = []
    for c in credentials:
        reason = c.unusable_reason(now)
        status = ("disabled" if c.disabled_at else "expired" if reason
                  else "used up" if c.uses >= c.max_uses else "active")
        rows.append((c, status))
    if as_json:
        for c, status in rows:
            click.echo(json.dumps({"id": c.id, "profile": c.profile, "device_id": c.device_id,
                                   "uses": c.uses, "max_uses": c.max_uses,
                                   "expires_at": c.expires_at.isoformat(), "state": status}))
        return
    table = Table()
    # The id is what `bootstrap disable` takes: shown whole, whatever the terminal's width.
    table.add_column("id", no_wrap=True, min_width=max((len(c.id) for c in credentials),
                                                        default=2))
    for column in ("profile", "device", "uses", "expires", "state"):
        table.add_column(column)
    for c, status in rows:
        table.add_row(c.id, c.profile, c.device_id or "(group)", f"{c.uses}/{c.max_uses}",
                      f"{c.expires_at:%Y-%m-%d %H:%M}", status)
    console.print(table)


@bootstrap.command("disable")
@click.argument("credential_id")
@pass_state
@handle_errors
def disable_credential(state: CliState, credential_id: str) -> None:
    """Disable a credential at once (e.g. after a leak)."""
    state.fleet().credential_admin(local_operator()).disable(credential_id)
    click.echo(f"disabled {credential_id}")


# -- manufacturer CAs ------------------------------------------------------------------------

@click.group()
def manufacturers() -> None:
    """Manufacturer CAs whose factory certificates (IDevIDs) may enroll devices."""


@manufacturers.command("add")
@click.argument("name")
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The CA certificate (PEM or DER) that signs the devices' IDevIDs.")
@click.option("--profile", required=True, help="Profile its devices enroll into.")
@click.option("--device-id-from", default="serialNumber", show_default=True,
              help="Subject attribute of the IDevID that names the device.")
@click.option("--allow-list", "allow_list", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="File of device ids, one per line: only these may enroll.")
@pass_state
@handle_errors
def add_manufacturer(state: CliState, name: str, ca_file: Path, profile: str,
                     device_id_from: str, allow_list: Path | None) -> None:
    """Register a manufacturer CA (restart `fleetpki serve` so TLS accepts its devices)."""
    fleet = state.fleet()
    admin = fleet.manufacturer_admin(local_operator())
    ids = _device_ids(allow_list) if allow_list else None
    record = admin.add(name, read_input_file(ca_file, what="CA certificate", limit=65536,
                                             allow_empty=False),
                       profile, device_id_from=device_id_from, allow_list=ids is not None)
    if ids:
        admin.allow(name, ids)
    click.echo(f"manufacturer {record.name}: devices enroll into '{record.profile}'"
               + (f"; {len(ids)} device ids allowed" if ids is not None else ""))


@manufacturers.command("allow")
@click.argument("name")
@click.argument("ids_file", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
@handle_errors
def allow_devices(state: CliState, name: str, ids_file: Path) -> None:
    """Add device ids (one per line) to a manufacturer's allow list."""
    added = state.fleet().manufacturer_admin(local_operator()).allow(name, _device_ids(ids_file))
    click.echo(f"{added} new device id(s) allowed for {name}")


@manufacturers.command("list")
@pass_state
@handle_errors
def list_manufacturers(state: CliState) -> None:
    """List registered manufacturer CAs."""
    table = Table()
    for column in ("name", "profile", "device id from", "allow list", "CA subject"):
        table.add_column(column)
    for m in state.fleet().store.list_manufacturers():
        subject = x509.load_der_x509_certificate(m.certificate_der).subject.rfc4514_string()
        table.add_row(m.name, m.profile, m.device_id_from, "yes" if m.allow_list else "no",
                      subject)
    console.print(table)


def _device_ids(path: Path) -> list[str]:
    text = read_text_file(path, what="device id list", limit=512 * 1024 * 1024)
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


# -- enrollments on hold ---------------------------------------------------------------------

@click.group()
def approvals() -> None:
    """Enrollments held for approval (profiles with enrollment.approval = "manual")."""


@approvals.command("list")
@click.option("--all", "everything", is_flag=True, help="Include decided enrollments.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
@handle_errors
def list_pending(state: CliState, everything: bool, as_json: bool) -> None:
    """List enrollments waiting for a decision."""
    rows = state.fleet().store.list_pending(None if everything else ApprovalState.pending)
    if as_json:
        for p in rows:
            click.echo(json.dumps({
                "id": p.id, "profile": p.profile, "device_id": p.device_id, "actor": p.actor,
                "requested_at": p.requested_at.isoformat(), "state": p.state.value,
                "serial": serial_hex(p.serial) if p.serial is not None else None}))
        return
    table = Table()
    for column in ("id", "profile", "device", "requested by", "requested", "state", "serial"):
        table.add_column(column)
    for p in rows:
        table.add_row(p.id, p.profile, p.device_id, p.actor, f"{p.requested_at:%Y-%m-%d %H:%M}",
                      p.state.value, serial_hex(p.serial) if p.serial is not None else "")
    console.print(table)


@approvals.command("approve")
@click.argument("pending_id")
@pass_state
@handle_errors
def approve(state: CliState, pending_id: str) -> None:
    """Issue the certificate; the device receives it on its next retry."""
    record = state.fleet().approvals(local_operator()).approve(pending_id)
    click.echo(f"approved {pending_id}: certificate {serial_hex(record.serial)} for "
               f"{record.device_id}")


@approvals.command("reject")
@click.argument("pending_id")
@click.option("--reason", default="", help="Told to the device on its next retry.")
@pass_state
@handle_errors
def reject(state: CliState, pending_id: str, reason: str) -> None:
    """Refuse the enrollment; the device's next retry gets 403 with the reason."""
    state.fleet().approvals(local_operator()).reject(pending_id, reason)
    click.echo(f"rejected {pending_id}")
