"""Endpoints on 127.0.0.1 for discovery scans: a TLS server serving a given chain, a listener
that never answers, one that answers in plain HTTP; and certificates to serve, made directly
with `cryptography` (weak, expired and legacy ones included, which fleetpki never issues).

Each server runs in a daemon thread of the test process, binds port 0 (the kernel picks a free
port, so there is no race), polls its stop flag every 0.1 s, and is stopped and joined, with a
bounded wait, when its `with` block ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

PrivateKey = CertificateIssuerPrivateKeyTypes
PEM = serialization.Encoding.PEM
_POLL = 0.1


@dataclasses.dataclass(frozen=True)
class Made:
    cert: x509.Certificate
    key: PrivateKey


def make_certificate(cn: str, *, issuer: Made | None = None, key: PrivateKey | None = None,
                     ca: bool = False, not_before: dt.datetime | None = None,
                     days: float = 90, serial: int | None = None) -> Made:
    """Self-signed without an issuer; SHA-256. Valid from `not_before` (default an hour ago)
    for `days`."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return Made(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def legacy_certificate(cn: str, key: PrivateKey, *, digest: str = "sha1",
                       issuer: Made | None = None, serial: str | None = None) -> Made:
    """What cryptography refuses to make, made with the openssl command line: signatures
    with SHA-1 or MD5, serials RFC 5280 forbids (negative, longer than 20 octets).
    Self-signed without an issuer."""
    with tempfile.TemporaryDirectory() as directory:
        files = Path(directory)
        (files / "key.pem").write_bytes(key_pem(key))
        extra = ["-set_serial", serial] if serial else []
        if issuer is None:
            command = ["openssl", "req", "-x509", "-new", "-key", str(files / "key.pem"),
                       f"-{digest}", "-subj", f"/CN={cn}", "-days", "90", *extra]
            stdin = None
        else:
            (files / "ca.pem").write_bytes(issuer.cert.public_bytes(PEM))
            (files / "ca.key").write_bytes(key_pem(issuer.key))
            stdin = subprocess.run(
                ["openssl", "req", "-new", "-key", str(files / "key.pem"), "-subj", f"/CN={cn}"],
                capture_output=True, timeout=30, check=True).stdout
            command = ["openssl", "x509", "-req", "-CA", str(files / "ca.pem"), "-CAkey",
                       str(files / "ca.key"), f"-{digest}", "-days", "90",
                       *(extra or ["-set_serial", "0x1f2e3d4c5b6a7988"])]
        made = subprocess.run(command, input=stdin, capture_output=True, timeout=30, check=True)
    return Made(x509.load_pem_x509_certificate(made.stdout), key)


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def chain_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(PEM) for c in certs)


class _Listener:
    """Accepts on 127.0.0.1 in a thread and hands each connection to `handle`."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(_POLL)
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Listener:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for conn in self._open:
                conn.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except OSError:
            pass  # the scanner hangs up right after the handshake: expected
        finally:
            conn.close()


class TlsEndpoint(_Listener):
    """Serves `chain` (PEM, the leaf first) with `key`; completes the handshake, waits for
    the client to hang up. OpenSSL security level 0, so that weak certificates load."""

    def __init__(self, chain: bytes, key: bytes) -> None:
        super().__init__()
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "chain.pem").write_bytes(chain)
            (Path(directory) / "key.pem").write_bytes(key)
            self._context.load_cert_chain(Path(directory) / "chain.pem",
                                          Path(directory) / "key.pem")

    def __enter__(self) -> TlsEndpoint:
        super().__enter__()
        return self

    def handle(self, conn: socket.socket) -> None:
        with self._context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)


class SilentEndpoint(_Listener):
    """Accepts and says nothing until the client gives up (a handshake timeout)."""

    def __enter__(self) -> SilentEndpoint:
        super().__enter__()
        return self

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(_POLL)
        while not self._stop.is_set():
            try:
                if not conn.recv(4096):
                    return
            except TimeoutError:
                continue


class PlainEndpoint(_Listener):
    """Answers whatever it is sent with a plain HTTP error, as a web server on the wrong
    port would."""

    def __enter__(self) -> PlainEndpoint:
        super().__enter__()
        return self

    def handle(self, conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
