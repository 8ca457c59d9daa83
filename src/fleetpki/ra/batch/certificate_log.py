"""The one-file layout of a CSR run: `<out>/certificates.jsonl`, a line per device, appended after
each commit, plus `<out>/chain.pem` once.

A million devices as a million files costs more kernel time than signing them (file creation
dominates on ext4), and a provisioning station usually imports one file anyway. Each line is
{"device_id", "serial", "certificate" (PEM)}. A crash can leave at most a partial last line; the
next run cuts it off, and re-appends any committed device whose line is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.ca.keyfiles import failures_naming, write_private_file
from fleetpki.core.errors import BadInput
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.serials import serial_hex

FILE_NAME = "certificates.jsonl"


class CertificateLog:
    def __init__(self, directory: Path, chain: tuple[x509.Certificate, ...]) -> None:
        self.path = directory / FILE_NAME
        self.present = self._recover()
        chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        write_private_file(directory / "chain.pem", chain_pem)
        (directory / "chain.pem").chmod(0o644)

    def append(self, lines: list[tuple[str, str]]) -> None:
        """(device_id, line) pairs, lines from `jsonl_line`, in one write. A write that fails
        (a full disk) is cut back off and names the file: no torn line waits for the next run."""
        if not lines:
            return
        data = "".join(line for _, line in lines).encode("utf-8")
        with failures_naming(self.path):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                start = os.fstat(fd).st_size
                try:
                    while data:
                        data = data[os.write(fd, data):]
                except OSError:
                    with contextlib.suppress(OSError):  # best effort: _recover cuts it too
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
        self.present.update(device for device, _ in lines)

    def _recover(self) -> set[str]:
        """Device ids already written; a torn last line (crash mid-write) is cut off."""
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
                os.fsync(handle.fileno())
        present = set()
        for number, line in enumerate(complete.splitlines(), start=1):
            if not line:
                continue
            try:
                present.add(str(json.loads(line)["device_id"]))
            except (ValueError, KeyError, TypeError):
                raise BadInput(f"{self.path}:{number} is not a line fleetpki wrote (edited or "
                               f"damaged); repair or remove it, or write this run to another "
                               f"--out directory") from None
        return present


def jsonl_line(cert: IssuedCertificate) -> str:
    return json.dumps({"device_id": cert.device_id, "serial": serial_hex(cert.serial),
                       "certificate": ssl.DER_cert_to_PEM_cert(cert.der)}) + "\n"
