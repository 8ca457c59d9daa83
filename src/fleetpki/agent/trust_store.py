"""The device's trust anchors on disk: `trust/` in the identity directory.

    roots.pem           the roots the server's certificate must chain to (provisioned; grows
                        only by roots whose fingerprint was pinned, trust.offered_roots)
    pins                SHA-256 fingerprints of planned future roots, one a line, '#' comments
    intermediates.pem   CA certificates below the roots, from the last /cacerts: used to
                        complete chain files, never as anchors

The transport loads roots.pem alone (not the system store), so this directory is the whole of
what the device trusts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.agent import durable, trust


class TrustStoreError(Exception):
    """A provisioned trust file is unreadable; the message names it."""


class TrustStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.roots_file = directory / "roots.pem"
        self.pins_file = directory / "pins"
        self.intermediates_file = directory / "intermediates.pem"

    def roots(self) -> list[x509.Certificate]:
        try:
            data = durable.read_regular(self.roots_file)  # a FIFO must not hang the agent
        except FileNotFoundError:
            return []
        except OSError as error:
            raise TrustStoreError(f"cannot read {self.roots_file}: {error.strerror}") from None
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            raise TrustStoreError(f"{self.roots_file} is not a PEM bundle of CA certificates; "
                                  "provision the fleet's root certificate there") from None

    def pins(self) -> set[str]:
        """The fingerprints in `pins`, as trust.normalise_pin accepts them."""
        try:
            text = durable.read_regular(self.pins_file).decode("utf-8")
        except FileNotFoundError:
            return set()
        except (OSError, UnicodeDecodeError) as error:
            raise TrustStoreError(f"cannot read {self.pins_file}: {error}") from None
        pins = set()
        for number, line in enumerate(text.splitlines(), start=1):
            value = line.split("#", 1)[0].strip()
            if not value:
                continue
            try:
                pins.add(trust.normalise_pin(value))
            except ValueError as error:
                raise TrustStoreError(f"{self.pins_file}:{number}: {error}") from None
        return pins

    def intermediates(self) -> list[x509.Certificate]:
        try:
            return x509.load_pem_x509_certificates(
                durable.read_regular(self.intermediates_file))
        except (OSError, ValueError):
            return []  # a cache: without it chain files are only shorter

    def has_intermediates(self) -> bool:
        return self.intermediates_file.exists()

    def add_roots(self, roots: Sequence[x509.Certificate]) -> None:
        """Append anchors. The caller decides which: trust.offered_roots lets only pinned
        ones through."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        durable.write_atomic(self.roots_file, _pem([*self.roots(), *roots]), 0o644)

    def save_intermediates(self, certificates: Sequence[x509.Certificate]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        durable.write_atomic(self.intermediates_file, _pem(certificates), 0o644)


def _pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
