"""`fleetpki issue` and `fleetpki profiles ...`."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.ca.keyfiles import write_atomically
from fleetpki.cli.context import (
    FILE_ERROR_EXIT,
    CliState,
    handle_errors,
    pass_state,
    read_input_file,
)
from fleetpki.cli.output import console
from fleetpki.core.csr import MAX_CSR_BYTES
from fleetpki.core.durations import format_duration, parse_duration
from fleetpki.core.errors import BadInput
from fleetpki.ra.authorizers import local_operator

_READ_LIMIT = 16 * MAX_CSR_BYTES


def register(cli: click.Group) -> None:
    cli.add_command(issue)
    cli.add_command(profiles)


@click.command()
@click.option("--profile", required=True, help="Profile the certificate is built from.")
@click.option("--csr", "csr_file", type=click.Path(path_type=Path), required=True,
              help="PKCS#10 request, PEM or DER.")
@click.option("--validity", default=None, help="Shorter validity than the profile default, "
              "e.g. 90d (never longer than the profile maximum).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the certificate here instead of standard output.")
@click.option("--chain/--no-chain", default=False, help="Append the issuing CA chain.")
@pass_state
@handle_errors
def issue(state: CliState, profile: str, csr_file: Path, validity: str | None, out: Path | None,
          chain: bool) -> None:
    """Issue a certificate for a CSR; everything but the key and names comes from the profile."""
    # Read a little more than a CSR may be, so that the RA refuses (and audits) an oversized one;
    # a file too big even for that is refused here, against the same limit.
    with contextlib.suppress(OSError):  # read_input_file names a missing or unreadable file
        if (size := csr_file.stat().st_size) > _READ_LIMIT:
            raise BadInput(f"CSR {csr_file} is {size} bytes; the limit is {MAX_CSR_BYTES} bytes "
                           "(64 KiB)")
    data = read_input_file(csr_file, what="CSR", limit=_READ_LIMIT)
    requested = None
    if validity is not None:
        try:
            requested = parse_duration(validity)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--validity") from None
    if out is not None:
        _check_writable(out)  # before issuing: a certificate nobody receives helps nobody
    fleet = state.fleet()
    record = fleet.issuance.issue_csr(data, profile, local_operator(), requested)
    pem = serialization.Encoding.PEM
    output = x509.load_der_x509_certificate(record.der).public_bytes(pem)
    if chain:
        output += b"".join(c.public_bytes(pem) for c in fleet.chain(record.issuer)[:-1])
    if out is None:
        click.echo(output.decode("ascii"), nl=False)
        return
    try:
        write_atomically(out, output, mode=0o644, make_parents=False)
    except OSError as exc:  # e.g. the disk filled up meanwhile: the certificate is stored
        click.echo(f"error: certificate {record.serial:x} for {record.device_id} was issued "
                   f"and stored, but writing {out} failed ({exc.strerror or exc}); get it "
                   f"with `fleetpki certs export {record.serial:x}`", err=True)
        raise SystemExit(FILE_ERROR_EXIT) from None
    click.echo(f"issued serial {record.serial:x} for {record.device_id} -> {out}", err=True)


def _check_writable(out: Path) -> None:
    directory = out.parent
    if not directory.is_dir():
        raise click.BadParameter(f"directory {directory} does not exist (nothing was issued)",
                                 param_hint="--out")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise click.BadParameter(f"directory {directory} is not writable (nothing was issued)",
                                 param_hint="--out")


@click.group()
def profiles() -> None:
    """Profiles: the policy every certificate is built from."""


@profiles.command("check")
@pass_state
@handle_errors
def check_profiles(state: CliState) -> None:
    """Load and validate the profile file; exit non-zero with the first problem."""
    loaded = state.fleet().profiles
    click.echo(f"{state.fleet().settings.profiles_file}: {len(loaded)} profile(s) OK: "
               f"{', '.join(sorted(loaded))}")


@profiles.command("list")
@pass_state
@handle_errors
def list_profiles(state: CliState) -> None:
    """Show each profile's issuer, keys and validity."""
    from rich.table import Table

    table = Table()
    for column in ("profile", "issuer", "keys", "validity (default/max)", "description"):
        table.add_column(column)
    for name, p in sorted(state.fleet().profiles.items()):
        table.add_row(name, p.issuer, p.keys.allowed_text(),
                      f"{format_duration(p.validity.default)} / "
                      f"{format_duration(p.validity.maximum)}", p.description)
    console.print(table)
