"""`fleetpki cmp ...`: the CMP server certificates, and what a CMP client needs to reach them."""

from __future__ import annotations

import hashlib
import json

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.cli.context import CliState, handle_errors, pass_state


def register(cli: click.Group) -> None:
    cli.add_command(cmp)


@click.group()
def cmp() -> None:
    """CMP (RFC 9810, RFC 9483): server certificates and client settings."""


@cmp.command("server")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_state
@handle_errors
def show_server(state: CliState, as_json: bool) -> None:
    """Issue (or roll over) the CMP server certificate of each issuing CA and show it: the file
    a client may pin (openssl cmp -srvcert), its SHA-256, the CA name to address requests to
    (-recipient) and the profiles served under it (/.well-known/cmp/p/PROFILE)."""
    fleet = state.fleet()
    rows = []
    for files in fleet.ensure_cmp_identities():
        certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
        issuer = certificate.issuer
        profiles = sorted(name for name, p in fleet.profiles.items()
                          if fleet.chain(p.issuer)[0].subject == issuer)
        rows.append({
            "certificate": str(files.certificate),
            "subject": certificate.subject.rfc4514_string(),
            "recipient": openssl_name(issuer),
            "not_after": certificate.not_valid_after_utc.isoformat(),
            "sha256": hashlib.sha256(certificate.public_bytes(
                serialization.Encoding.DER)).hexdigest(),
            "profiles": profiles})
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['subject']}  until {row['not_after'][:10]}")
        click.echo(f"  file:       {row['certificate']}")
        click.echo(f"  sha256:     {row['sha256']}")
        click.echo(f"  -recipient: {row['recipient']}")
        click.echo(f"  profiles:   {', '.join(row['profiles'])}")


def openssl_name(name: x509.Name) -> str:
    """The name as OpenSSL's command line writes it ("/O=Acme/CN=Issuing CA"), '/' escaped."""
    parts = []
    for attribute in name:
        value = attribute.value if isinstance(attribute.value, str) \
            else attribute.value.decode("utf-8", "replace")
        parts.append(f"/{attribute.rfc4514_attribute_name}={value.replace('/', chr(92) + '/')}")
    return "".join(parts)
