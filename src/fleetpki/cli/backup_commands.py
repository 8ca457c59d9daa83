"""`fleetpki backup` and `fleetpki restore`."""

from __future__ import annotations

from pathlib import Path

import click

from fleetpki.backup import create_backup, restore_backup
from fleetpki.cli.context import FILE_ERROR_EXIT, CliState, fail, handle_errors, pass_state
from fleetpki.core.audit_chain import verify_chain
from fleetpki.wiring import open_fleet


def register(cli: click.Group) -> None:
    cli.add_command(backup)
    cli.add_command(restore)


@click.command()
@click.option("--to", "archive", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Archive to create (.tar.gz).")
@pass_state
@handle_errors
def backup(state: CliState, archive: Path) -> None:
    """Copy the store, CA key files (encrypted), settings and profiles, consistently, while
    fleetpki keeps running. The key passphrase is NOT included: keep it separately."""
    fleet = state.fleet()
    try:
        report = create_backup(fleet.settings, archive, fleet.store.audit_head(),
                               fleet.clock.now())
    except OSError as exc:  # a full disk, most likely: say which file, and what is left
        fail(f"{exc.filename or archive}: {exc.strerror or exc}; no backup was written",
             FILE_ERROR_EXIT)
    seq, digest = report.audit_head
    click.echo(f"wrote {report.archive} ({report.files} files; audit head {seq}:{digest})")
    click.echo("the key passphrase is not in the archive: store it separately", err=True)


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--into", "target", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="New, empty data directory.")
@handle_errors
def restore(archive: Path, target: Path) -> None:
    """Restore a backup into a new data directory and verify it (checksums, audit chain)."""
    manifest = restore_backup(archive, target)
    if manifest.get("store") != "sqlite":
        click.echo(f"restored files into {target}; load fleetpki.pgdump with pg_restore "
                   "(docs/operations.md), then run `fleetpki audit verify`")
        return
    fleet = open_fleet(target)
    try:
        head = manifest.get("audit_head")
        expected = (int(head["seq"]), str(head["hash"])) if isinstance(head, dict) else None
        report = verify_chain(fleet.store.audit_entries(), expected_head=expected)
    finally:
        fleet.close()
    click.echo(f"restored into {target}: audit chain OK ({report.entries} entries). Provide the "
               "key passphrase (FLEETPKI_KEY_PASSPHRASE or secrets/key-passphrase) to sign.")
