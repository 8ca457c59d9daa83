"""`fleetpki ca ...`: list, add and import issuing CAs; keep the root offline; root CRL."""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from fleetpki.ca.ceremony import ca_name
from fleetpki.ca.keyfiles import write_atomically
from fleetpki.cli.context import CliState, handle_errors, pass_state, read_input_file
from fleetpki.cli.output import ca_table, console
from fleetpki.cli.setup_commands import KEY_TYPES
from fleetpki.core.errors import KeyAccessError
from fleetpki.core.keys import KeySpec
from fleetpki.core.reasons import RevocationReason
from fleetpki.ra.authorizers import local_operator

EXPORT_PASSPHRASE_ENV = "FLEETPKI_EXPORT_PASSPHRASE"


def register(cli: click.Group) -> None:
    cli.add_command(ca)


@click.group()
def ca() -> None:
    """Certificate authorities: list, create, import, take offline, revoke."""


@ca.command("list")
@pass_state
@handle_errors
def list_cas(state: CliState) -> None:
    """Show every CA with its role, parent and whether its key is online."""
    console.print(ca_table(state.fleet().store.list_cas()))


@ca.command("create-issuing")
@click.argument("name")
@click.option("--parent", default="root", show_default=True, help="CA that signs the new CA.")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ec-p256", show_default=True)
@click.option("--org", default="fleetpki", show_default=True)
@click.option("--common-name", default=None, help="Subject CN [default: '<org> <NAME>'].")
@pass_state
@handle_errors
def create_issuing(state: CliState, name: str, parent: str, key_type: str, org: str,
                   common_name: str | None) -> None:
    """Create another issuing CA (the parent's key must be online)."""
    admin = state.fleet().ca_admin(local_operator())
    signer = admin.create_issuing(name, ca_name(common_name or f"{org} {name}", org),
                                  KeySpec.parse(key_type), parent=parent)
    click.echo(f"created issuing CA '{name}': {signer.certificate.subject.rfc4514_string()}")


@ca.command("import")
@click.argument("name")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path), required=True)
@click.option("--key", "key_file", type=click.Path(path_type=Path), required=True)
@click.option("--key-passphrase-env", default=None,
              help="Environment variable holding the passphrase of the key being imported.")
@pass_state
@handle_errors
def import_ca(state: CliState, name: str, cert_file: Path, key_file: Path,
              key_passphrase_env: str | None) -> None:
    """Import an existing CA certificate and key as an issuing CA."""
    passphrase = _env_passphrase(key_passphrase_env) if key_passphrase_env else None
    admin = state.fleet().ca_admin(local_operator())
    signer = admin.import_issuing(
        name, read_input_file(cert_file, what="certificate", allow_empty=False),
        read_input_file(key_file, what="key", allow_empty=False), passphrase)
    click.echo(f"imported issuing CA '{name}': {signer.certificate.subject.rfc4514_string()}")


@ca.command("take-offline")
@click.argument("name")
@click.option("--export", "export_to", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Where to write the encrypted key (removable media).")
@pass_state
@handle_errors
def take_offline(state: CliState, name: str, export_to: Path) -> None:
    """Export a CA key encrypted under $FLEETPKI_EXPORT_PASSPHRASE, then delete it here."""
    if export_to.exists():
        raise click.UsageError(f"{export_to} exists; refusing to overwrite an exported key")
    state.fleet().ca_admin(local_operator()).take_offline(
        name, export_to, _env_passphrase(EXPORT_PASSPHRASE_ENV))
    click.echo(f"the key of '{name}' is now only in {export_to}; keep it and its passphrase "
               "apart, offline")


@ca.command("restore-key")
@click.argument("name")
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path), required=True)
@pass_state
@handle_errors
def restore_key(state: CliState, name: str, source: Path) -> None:
    """Bring an offline key back (its passphrase in $FLEETPKI_EXPORT_PASSPHRASE)."""
    state.fleet().ca_admin(local_operator()).restore_key(
        name, source, _env_passphrase(EXPORT_PASSPHRASE_ENV))
    click.echo(f"the key of '{name}' is online again; take it offline when done")


@ca.command("revoke")
@click.argument("name")
@click.option("--reason", default="cessationOfOperation", show_default=True)
@pass_state
@handle_errors
def revoke_ca(state: CliState, name: str, reason: str) -> None:
    """Revoke an issuing CA; it appears on its root's next CRL (`fleetpki ca root-crl`)."""
    try:
        parsed = RevocationReason.parse(reason)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--reason") from None
    state.fleet().ca_admin(local_operator()).revoke_issuing(name, parsed)
    click.echo(f"revoked CA '{name}' ({parsed.value})")


@ca.command("root-crl")
@click.argument("root", default="root")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@pass_state
@handle_errors
def root_crl(state: CliState, root: str, out: Path) -> None:
    """Sign the root's CRL over its issuing CAs (the offline step: restore the key first)."""
    crl = state.fleet().ca_admin(local_operator()).sign_root_crl(root)
    # Whole or not at all, and a failure names `out`: relying parties fetch this file.
    write_atomically(out, crl.public_bytes(serialization.Encoding.DER), mode=0o644,
                     make_parents=False)
    click.echo(f"wrote {out} ({len(list(crl))} revoked, "
               f"next update {crl.next_update_utc:%Y-%m-%d})")


@ca.command("export-chain")
@click.argument("name")
@pass_state
@handle_errors
def export_chain(state: CliState, name: str) -> None:
    """Print the CA's certificate and its parents up to the root (PEM)."""
    for cert in state.fleet().chain(name):
        click.echo(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), nl=False)


def _env_passphrase(variable: str) -> bytes:
    value = os.environ.get(variable)
    if not value:
        raise KeyAccessError(f"set the passphrase in the environment variable {variable} "
                             "(never on the command line, where `ps` shows it)")
    return value.encode("utf-8")
