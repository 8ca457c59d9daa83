"""`fleetpki crl ...` and `fleetpki ocsp ...`: publish CRLs, show their state, export OCSP
responses for stapling."""

from __future__ import annotations

import json
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from rich.table import Table

from fleetpki.ca.keyfiles import write_atomically
from fleetpki.cli.context import CliState, handle_errors, pass_state
from fleetpki.cli.output import console
from fleetpki.core.errors import BadInput, NotFound


def register(cli: click.Group) -> None:
    cli.add_command(crl)
    cli.add_command(ocsp_group)


@click.group()
def crl() -> None:
    """Certificate revocation lists: publish, show state."""


@crl.command("publish")
@click.option("--force", is_flag=True, help="Re-sign every CRL, due or not.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@pass_state
@handle_errors
def publish(state: CliState, force: bool, as_json: bool) -> None:
    """Sign the CRLs that are due (missing, past half their validity, or changed where the
    profile asks for publish_on_revoke) into <home>/crl/. `fleetpki serve` does the same on a
    timer; running both is safe."""
    fleet = state.fleet()
    written = fleet.publish_crls(force=force)
    if as_json:
        click.echo(json.dumps([{
            "file": str(w.path), "issuer": w.scope.issuer, "scope": w.scope.key or "complete",
            "kind": w.kind, "number": w.number, "entries": w.entries, "bytes": w.size,
            "next_update": w.next_update.isoformat()} for w in written], indent=2))
        return
    for w in written:
        click.echo(f"{w.kind:5} CRL #{w.number} {w.path.relative_to(fleet.crl_directory)}: "
                   f"{w.entries} revoked, {w.size} bytes, next update "
                   f"{w.next_update:%Y-%m-%d %H:%M} UTC")
    if not written:
        click.echo("nothing due: every CRL is within the first half of its validity. Revocations "
                   "since then reach the full CRLs at their next scheduled signing (deltas "
                   "follow them sooner), unless the profile says publish_on_revoke; --force "
                   "re-signs everything now")


@crl.command("status")
@pass_state
@handle_errors
def status(state: CliState) -> None:
    """The last CRL of every series: number, entries, size, next update."""
    fleet = state.fleet()
    table = Table()
    for column in ("issuer", "series", "kind", "number", "entries", "bytes", "this update",
                   "next update"):
        table.add_column(column)
    for issuer in fleet.crl_publisher.issuers():
        for p in sorted(fleet.store.crl_publications(issuer), key=lambda p: (p.scope, p.kind)):
            table.add_row(issuer, p.scope or "complete", p.kind, str(p.number), str(p.entries),
                          str(p.size), f"{p.this_update:%Y-%m-%d %H:%M}",
                          f"{p.next_update:%Y-%m-%d %H:%M}")
    console.print(table)


@click.group("ocsp")
def ocsp_group() -> None:
    """OCSP: export signed responses for stapling."""


@ocsp_group.command("export")
@click.option("--cert", "cert_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The certificate (PEM or DER; the first of a PEM chain) to staple for.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the DER response, e.g. for nginx's ssl_stapling_file.")
@pass_state
@handle_errors
def export(state: CliState, cert_file: Path, out: Path) -> None:
    """Write a freshly signed OCSP response for a certificate fleetpki issued. Run it again
    before the response's next update (a timer at half the OCSP validity is a good rhythm)."""
    fleet = state.fleet()
    leaf = _load_certificate(cert_file)
    issuer_name = next((ca.name for ca in fleet.store.list_cas()
                        if x509.load_der_x509_certificate(ca.certificate_der).subject
                        == leaf.issuer), None)
    if issuer_name is None or fleet.store.get_certificate(leaf.serial_number,
                                                          issuer_name) is None:
        raise NotFound(f"{cert_file} was not issued by this fleetpki "
                       f"(its issuer: {leaf.issuer.rfc4514_string()})")
    fleet.ensure_ocsp_responders()
    responder, _ = fleet.ocsp_responder()
    # SHA-1 CertID: RFC 5019 §2.1.1, and what OpenSSL-based TLS clients look up in a staple.
    request = (ocsp.OCSPRequestBuilder()
               .add_certificate(leaf, fleet.chain(issuer_name)[0],
                                hashes.SHA1()).build())  # noqa: S303 - an identifier
    answer = responder.respond(request.public_bytes(Encoding.DER))
    parsed = ocsp.load_der_ocsp_response(answer.der)
    if parsed.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise BadInput(f"the responder answered {parsed.response_status.name}; nothing written")
    write_atomically(out, answer.der, mode=0o644)
    click.echo(f"wrote {out}: {parsed.certificate_status.name.lower()}, next update "
               f"{parsed.next_update_utc:%Y-%m-%d %H:%M} UTC")


def _load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise BadInput(f"{path} holds no certificate (PEM or DER)") from None

