"""`fleetpki init` and `fleetpki up`: from an empty directory to a working CA."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from fleetpki.ca.ceremony import ca_name
from fleetpki.ca.keyfiles import MIN_PASSPHRASE_BYTES, write_private_file
from fleetpki.cli.context import CliState, handle_errors, pass_state
from fleetpki.cli.output import ca_table, console
from fleetpki.cli.serve_command import (
    admin_listen_option,
    parse_address,
    revocation_listen_option,
    run_server,
)
from fleetpki.core.api_tokens import Role
from fleetpki.core.errors import BadInput, Conflict, KeyAccessError
from fleetpki.core.issuance_plan import Request
from fleetpki.core.keys import KeySpec
from fleetpki.core.records import CARole
from fleetpki.ra.authorizers import local_operator
from fleetpki.ra.ca_admin import check_ca_name
from fleetpki.wiring import Fleet, prepare_home

KEY_TYPES = ["ec-p256", "ec-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096"]


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(up)


@click.command()
@click.option("--org", default="fleetpki", show_default=True,
              help="Organisation name in the CA subjects.")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ec-p256", show_default=True,
              help="Key type of the issuing CA.")
@click.option("--root-key-type", type=click.Choice(KEY_TYPES), default=None,
              help="Key type of the root CA [default: same as --key-type].")
@click.option("--root-name", default="root", show_default=True)
@click.option("--issuing-name", default="issuing", show_default=True)
@pass_state
@handle_errors
def init(state: CliState, org: str, key_type: str, root_key_type: str | None, root_name: str,
         issuing_name: str) -> None:
    """Create the data directory, a root CA and an issuing CA under it.

    Everything that can be checked is checked before anything is written; an init that
    stopped after the root CA (a full disk, an interrupt) is finished by running it again."""
    root_subject, issuing_subject = _init_subjects(org, root_name, issuing_name)
    created = prepare_home(state.home)
    fleet = state.fleet()
    existing = fleet.store.list_cas()
    resuming = [ca.name for ca in existing] == [root_name] and existing[0].role is CARole.root
    if existing and not resuming:
        raise Conflict(f"{state.home} already holds a CA hierarchy; use `fleetpki ca` to add "
                       "issuing CAs")
    passphrase = fleet.settings.passphrase.read()
    if len(passphrase) < MIN_PASSPHRASE_BYTES:
        raise KeyAccessError(f"the key passphrase must be at least {MIN_PASSPHRASE_BYTES} "
                             f"bytes (nothing was created)")
    admin = fleet.ca_admin(local_operator())
    if not resuming:
        with console.status("creating the root CA"):
            admin.create_root(root_name, root_subject, KeySpec.parse(root_key_type or key_type))
    with console.status("creating the issuing CA"):
        admin.create_issuing(issuing_name, issuing_subject, KeySpec.parse(key_type),
                             parent=root_name)
    for path in created:
        click.echo(f"created {path}")
    console.print(ca_table(fleet.store.list_cas()))
    click.echo(f"profiles: {', '.join(sorted(fleet.profiles))} "
               f"(edit {fleet.settings.profiles_file})")


def _init_subjects(org: str, root_name: str, issuing_name: str) -> tuple[x509.Name, x509.Name]:
    if root_name == issuing_name:
        raise BadInput("--root-name and --issuing-name must differ")
    check_ca_name(root_name, option="--root-name")
    check_ca_name(issuing_name, option="--issuing-name")
    if not org.strip():
        raise BadInput("--org must not be empty: it names the organisation in the CA subjects")
    try:
        return (ca_name(f"{org} Root CA", org), ca_name(f"{org} Issuing CA 1", org))
    except ValueError as exc:  # RFC 5280 upper bounds: O and CN at most 64 characters
        raise BadInput(f"--org {org[:20]!r}...: the CA subjects cannot hold it ({exc})") from None


@click.command()
@click.option("--check-only", is_flag=True,
              help="Issue and verify the demo certificate, then exit instead of serving.")
@click.option("--listen", default=None, help="HOST:PORT for HTTPS (default: server.listen).")
@revocation_listen_option
@admin_listen_option
@pass_state
@handle_errors
def up(state: CliState, check_only: bool, listen: str | None,
       revocation_listen: str | None, admin_listen: str | None) -> None:
    """Run fleetpki on the embedded default: create everything on first run, prove it works
    by issuing a demo device certificate and verifying it independently, then serve EST."""
    ctx = click.get_current_context()
    if not (state.home / "fleetpki.db").exists() or not state.fleet().store.list_cas():
        ctx.invoke(init)
    fleet = state.fleet()
    profile = "sensor" if "sensor" in fleet.profiles else sorted(fleet.profiles)[0]
    key = ec.generate_private_key(ec.SECP256R1())
    device = f"demo-{x509.random_serial_number() % 10**8:08d}"
    mac = os.urandom(6).hex()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(f"urn:dev:mac:{mac}")]), critical=False)
           .sign(key, hashes.SHA256()))
    record = fleet.issuance.issue(Request.from_csr(csr), profile, local_operator())
    out = state.home / "demo"
    cert = x509.load_der_x509_certificate(record.der)
    chain = fleet.chain(record.issuer)
    pem = serialization.Encoding.PEM
    write_private_file(out / f"{device}.key", key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (out / f"{device}.pem").write_bytes(cert.public_bytes(pem))
    (out / "chain.pem").write_bytes(b"".join(c.public_bytes(pem) for c in chain))
    _verify_with_cryptography(cert, chain, fleet.clock.now())
    openssl = _verify_with_openssl(out / f"{device}.pem", chain)
    click.echo(f"issued {device} (profile {profile}, serial {record.serial:x}) -> "
               f"{out / (device + '.pem')}")
    click.echo("verified: cryptography path validation OK; " + openssl)
    if check_only:
        return
    _first_admin_token(fleet)
    click.echo("Devices enroll over EST, SCEP or CMP; create a credential for them with `fleetpki "
               "bootstrap create --profile PROFILE`. Servers enroll over ACME with an EAB key "
               "from `fleetpki acme eab create` (docs/protocols.md). Ctrl-C stops the server.")
    sys.exit(run_server(state, parse_address(listen), None,
                        parse_address(revocation_listen, "--revocation-listen"),
                        parse_address(admin_listen, "--admin-listen")))


def _first_admin_token(fleet: Fleet) -> None:
    """On a fleet nobody can log in to yet, make the first admin token and show it, once.
    There is no default password; this token is as secret as the CA host's shell."""
    admin = fleet.token_admin(local_operator())
    if admin.list(include_revoked=True):
        return
    made = admin.create("first-admin", Role.admin, lifetime=dt.timedelta(days=30))
    click.echo(f"first admin token (shown only now, valid 30 days; log in to the dashboard "
               f"with it, then make personal ones with `fleetpki admin token create`):\n"
               f"  {made.text}")


def _verify_with_cryptography(cert: x509.Certificate, chain: list[x509.Certificate],
                              now: dt.datetime) -> None:
    store = verification.Store([chain[-1]])
    verifier = verification.PolicyBuilder().store(store).time(now).build_client_verifier()
    verifier.verify(cert, chain[:-1])


def _verify_with_openssl(leaf: Path, chain: list[x509.Certificate]) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        return "openssl not installed, independent check skipped"
    pem = serialization.Encoding.PEM
    with tempfile.TemporaryDirectory() as tmp:
        root, untrusted = Path(tmp) / "root.pem", Path(tmp) / "untrusted.pem"
        root.write_bytes(chain[-1].public_bytes(pem))
        untrusted.write_bytes(b"".join(c.public_bytes(pem) for c in chain[:-1]))
        result = subprocess.run(
            [openssl, "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", str(root),
             "-untrusted", str(untrusted), str(leaf)],
            capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise click.ClickException(f"openssl verify failed: {result.stdout}{result.stderr}")
    return "openssl verify OK"
