"""server_tls_context: what the handshake checks, proved with in-memory handshakes (no sockets)."""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fleetpki.serving.tls import X509_V_FLAG_NO_CHECK_TIME, server_tls_context
from support.tiny_pki import Issued, issue

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


@dataclass(frozen=True)
class Pki:
    directory: Path
    root: Issued
    issuing: Issued
    device: Issued
    expired: Issued
    intruder: Issued

    def pem(self, *cas: Issued) -> bytes:
        return b"".join(ca.cert.public_bytes(serialization.Encoding.PEM) for ca in cas)

    def context(self, trust: bytes | None, **kwargs: bool) -> ssl.SSLContext:
        return server_tls_context(self.directory / "server.pem", self.directory / "server.key",
                                  key_password=None, client_trust_pem=trust, **kwargs)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    root = issue("Root", ca=True)
    issuing = issue("Issuing", root, ca=True)
    other_root = issue("Other Root", ca=True)
    issue("server", root, ip="127.0.0.1").write(directory, "server")
    issue("server", root, ip="127.0.0.1").write(directory, "locked", password=b"s3cret")
    (directory / "root.pem").write_bytes(root.cert.public_bytes(serialization.Encoding.PEM))
    return Pki(directory, root, issuing, device=issue("device-1", issuing),
               expired=issue("device-old", issuing, days=(-60, -1)),
               intruder=issue("intruder", other_root))


def client_context(pki: Pki, client: Issued | None = None,
                   version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.directory / "root.pem")
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if client is not None:
        client.write(pki.directory, "client")
        context.load_cert_chain(pki.directory / "client.pem", pki.directory / "client.key")
    return context


def handshake(server_context: ssl.SSLContext, pki: Pki, client: Issued | None = None, *,
              version: ssl.TLSVersion | None = None, reuse: ssl.SSLObject | None = None,
              ) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a full client/server exchange over memory BIOs; raise ssl.SSLError on failure.

    The server sends one byte the client reads, so TLS 1.3 tickets and client-certificate
    alerts (sent after the client's Finished) reach the client too. ``reuse`` resumes that
    earlier client's session.
    """
    context = reuse.context if reuse else client_context(pki, client, version)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = context.wrap_bio(to_client, to_server, server_hostname="127.0.0.1",
                                  session=reuse.session if reuse else None)
    tls_server = server_context.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False, "read": False}
    for _ in range(20):
        for name, end in (("client", tls_client), ("server", tls_server)):
            if not done[name]:
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
                    done[name] = True
        if done["server"] and not server_out.pending and not done["read"]:
            tls_server.write(b"!")
        server_in.write(to_server.read())
        to_client.write(server_out.read())
        if done["client"] and done["server"]:
            with contextlib.suppress(ssl.SSLWantReadError):
                done["read"] = tls_client.read(1) == b"!"
            if done["read"]:
                return tls_server, tls_client
    raise AssertionError("handshake did not finish")


def test_context_is_server_side_with_tls12_minimum_and_no_compression_or_renegotiation(
        pki: Pki) -> None:
    context = pki.context(pki.pem(pki.root))
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER
    assert context.minimum_version == TLS12
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION


def test_tls12_suites_are_all_forward_secret_without_sha1(pki: Pki) -> None:
    suites = [s for s in pki.context(None).get_ciphers() if s["protocol"] == "TLSv1.2"]
    assert suites
    assert all(s["kea"] == "kx-ecdhe" and s["digest"] != "sha1" for s in suites), suites


@pytest.mark.parametrize("accept_expired", [True, False])
def test_verify_flags_keep_partial_chain_and_no_check_time_only_when_asked(
        pki: Pki, accept_expired: bool) -> None:
    flags = pki.context(pki.pem(pki.root), accept_expired_client_certs=accept_expired).verify_flags
    assert flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert bool(flags & X509_V_FLAG_NO_CHECK_TIME) is accept_expired


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_client_certificate_is_optional(pki: Pki, version: ssl.TLSVersion) -> None:
    server, client = handshake(pki.context(pki.pem(pki.root)), pki, version=version)
    assert server.getpeercert(binary_form=True) is None
    assert client.version() == server.version() == {TLS12: "TLSv1.2", TLS13: "TLSv1.3"}[version]


def test_without_trust_bundle_no_client_certificate_is_requested(pki: Pki) -> None:
    context = pki.context(None)
    assert context.verify_mode == ssl.CERT_NONE
    server, _ = handshake(context, pki, pki.device)
    assert server.getpeercert(binary_form=True) is None


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_issuing_ca_alone_is_enough_as_trust_anchor(pki: Pki, version: ssl.TLSVersion) -> None:
    server, _ = handshake(pki.context(pki.pem(pki.issuing)), pki, pki.device, version=version)
    assert server.getpeercert(binary_form=True) == pki.device.cert.public_bytes(
        serialization.Encoding.DER)


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_expired_client_certificate_passes_only_when_accepted(
        pki: Pki, version: ssl.TLSVersion) -> None:
    lenient = pki.context(pki.pem(pki.issuing), accept_expired_client_certs=True)
    server, _ = handshake(lenient, pki, pki.expired, version=version)
    assert server.getpeercert(binary_form=True) == pki.expired.cert.public_bytes(
        serialization.Encoding.DER)
    strict = pki.context(pki.pem(pki.issuing), accept_expired_client_certs=False)
    with pytest.raises(ssl.SSLError, match="expired"):
        handshake(strict, pki, pki.expired, version=version)


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_certificate_from_untrusted_ca_fails_handshake(pki: Pki, version: ssl.TLSVersion) -> None:
    with pytest.raises(ssl.SSLError, match=r"unknown ca|certificate verify failed"):
        handshake(pki.context(pki.pem(pki.root, pki.issuing)), pki, pki.intruder, version=version)


@pytest.mark.parametrize("version", [TLS12, TLS13])
def test_resumed_session_still_reports_the_leaf(pki: Pki, version: ssl.TLSVersion) -> None:
    context = pki.context(pki.pem(pki.issuing))
    _, first = handshake(context, pki, pki.device, version=version)
    server, client = handshake(context, pki, reuse=first)
    assert client.session_reused and server.session_reused
    assert server.getpeercert(binary_form=True) == pki.device.cert.public_bytes(
        serialization.Encoding.DER)


def test_encrypted_server_key_needs_its_password(pki: Pki) -> None:
    cert, key = pki.directory / "locked.pem", pki.directory / "locked.key"
    server_tls_context(cert, key, key_password=b"s3cret", client_trust_pem=None)
    for wrong in (b"wrong", None):  # None must fail, never prompt on a terminal
        with pytest.raises(ssl.SSLError):
            server_tls_context(cert, key, key_password=wrong, client_trust_pem=None)
