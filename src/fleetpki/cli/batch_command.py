"""`fleetpki batch`: certificates for a manufacturing run."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fleetpki.cli.context import FILE_ERROR_EXIT, CliState, fail, handle_errors, pass_state
from fleetpki.cli.setup_commands import KEY_TYPES
from fleetpki.core.errors import PolicyViolation
from fleetpki.core.keys import KeySpec
from fleetpki.core.serials import RandomSerials
from fleetpki.ra.authorizers import local_operator
from fleetpki.ra.batch.bundles import BundleFormat, BundleWriter
from fleetpki.ra.batch.certificate_log import CertificateLog
from fleetpki.ra.batch.manifest import check_manifest, read_manifest
from fleetpki.ra.batch.runner import BatchOptions, BatchRunner, write_rejects

BUNDLE_PASSPHRASE_ENV = "FLEETPKI_BUNDLE_PASSPHRASE"


def register(cli: click.Group) -> None:
    cli.add_command(batch)


@click.command()
@click.option("--profile", required=True)
@click.option("--devices", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV: device_id, csr (or subject columns and san with --keygen); UTF-8, "
              "with ',' or, as spreadsheets export it, ';' or tabs between fields.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for certificates and bundles.")
@click.option("--keygen", type=click.Choice(KEY_TYPES), default=None,
              help="Generate each device key here (factory provisioning) instead of reading "
                   "CSRs.")
@click.option("--format", "bundle_format", type=click.Choice(["pem", "p12"]), default="pem",
              show_default=True, help="Bundle format with --keygen.")
@click.option("--chain/--no-chain", default=True, show_default=True,
              help="Put the issuing CA chain in each device file.")
@click.option("--layout", type=click.Choice(["files", "jsonl"]), default="files",
              show_default=True, help="files: <device>.pem each; jsonl: one certificates.jsonl "
              "line per device plus chain.pem (CSR runs; far faster for large runs).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes [default: one per core].")
@click.option("--chunk-size", type=click.IntRange(1, 10000), default=1000, show_default=True)
@pass_state
@handle_errors
def batch(state: CliState, profile: str, devices: Path, out: Path, keygen: str | None,
          bundle_format: str, chain: bool, layout: str, workers: int | None,
          chunk_size: int) -> None:
    """Issue certificates for every device in a CSV, using all cores.

    Safe to re-run: devices that already hold a valid certificate in the profile are skipped
    (their missing files are written again). Refused devices go to <out>/rejects.csv. With
    --keygen, keys are encrypted under $FLEETPKI_BUNDLE_PASSPHRASE when it is set (required for
    --format p12).
    """
    fleet = state.fleet()
    template = fleet.issuance.template(profile)
    spec = KeySpec.parse(keygen) if keygen else None
    if spec is not None:
        try:
            template.profile.keys.check(spec.generate().public_key())
        except PolicyViolation as exc:
            raise click.BadParameter(f"profile {profile}: {exc}", param_hint="--keygen") from None
    passphrase = os.environ.get(BUNDLE_PASSPHRASE_ENV, "").encode("utf-8") or None
    if bundle_format == "p12" and passphrase is None:
        raise click.UsageError(f"--format p12 needs a passphrase in ${BUNDLE_PASSPHRASE_ENV}")
    if layout == "jsonl" and spec is not None:
        raise click.UsageError("--layout jsonl is for CSR runs; generated keys need their own "
                               "protected files")
    total = check_manifest(devices, need_csr=spec is None)
    try:
        out.mkdir(parents=True, exist_ok=True)
        chain_certs = tuple(fleet.chain(template.profile.issuer)[:-1])
        bundles: BundleWriter | CertificateLog = (
            CertificateLog(out, chain_certs) if layout == "jsonl" else
            BundleWriter(directory=out, chain=chain_certs, format=BundleFormat(bundle_format),
                         passphrase=passphrase, include_chain=chain))
        options = BatchOptions(workers=workers or os.cpu_count() or 1, chunk_size=chunk_size,
                               keygen=spec, actor=local_operator().actor)
        runner = BatchRunner(fleet.store, template, bundles, options, fleet.clock,
                             RandomSerials())
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns) as progress:
            task = progress.add_task(f"batch {profile}", total=total)
            report = runner.run(read_manifest(devices, need_csr=spec is None),
                                lambda n: progress.advance(task, n))
        if report.rejects:
            write_rejects(out / "rejects.csv", report.rejects)
    except BrokenPipeError:
        raise  # standard output went away, not a file: handle_errors says nothing
    except OSError as exc:  # an output file: a full disk, most likely
        fail(f"{exc.filename or out}: {exc.strerror or exc}; the certificates issued so far are "
             "stored: fix this, then run the same command again to write their files",
             FILE_ERROR_EXIT)
    click.echo(f"issued {report.issued}, already issued {report.already_issued} "
               f"({report.rewritten} files rewritten), refused {report.refused}"
               + (f", keys lost {report.lost_keys}" if report.lost_keys else ""))
    if report.rejects:
        click.echo(f"see {out / 'rejects.csv'} for the devices not issued and why", err=True)
        raise SystemExit(PolicyViolation.exit_code)
