"""Entry point of the `fleetpki` command."""

from __future__ import annotations

from pathlib import Path

import click

from fleetpki import __version__
from fleetpki.cli import (
    acme_commands,
    admin_commands,
    audit_commands,
    backup_commands,
    batch_command,
    ca_commands,
    cert_commands,
    cmp_commands,
    discover_command,
    enrollment_commands,
    issue_commands,
    renewal_commands,
    revocation_commands,
    scep_commands,
    serve_command,
    setup_commands,
    simulate_command,
)
from fleetpki.cli.context import CliState


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              envvar="FLEETPKI_HOME", default="fleetpki-data", show_default=True,
              help="Data directory: settings, profiles, database, encrypted CA keys.")
@click.version_option(__version__, prog_name="fleetpki")
@click.pass_context
def cli(ctx: click.Context, home: Path) -> None:
    """fleetpki: certificates for device fleets, from the factory line to end of life."""
    state = CliState(home=home.absolute())
    ctx.obj = state
    ctx.call_on_close(state.close)


for module in (setup_commands, admin_commands, ca_commands, issue_commands, cert_commands,
               audit_commands, batch_command, backup_commands, enrollment_commands,
               revocation_commands, renewal_commands, serve_command, simulate_command,
               discover_command, scep_commands, cmp_commands, acme_commands):
    module.register(cli)


def main() -> None:
    cli(auto_envvar_prefix="FLEETPKI")
