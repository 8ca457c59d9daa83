"""Keys and passphrases never appear in logs, the audit log, the database or command output."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from fleetpki.ca.keyfiles import load_key_file
from support.csrs import make_csr


def test_no_key_material_or_passphrase_anywhere_after_a_working_session(
        fleetpki, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outputs = []
    csr, _ = make_csr("sensor-0001")
    (tmp_path / "d.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    export = {"FLEETPKI_EXPORT_PASSPHRASE": "offline-export-passphrase-123"}
    for args, env in [
        (("issue", "--profile", "sensor", "--csr", str(tmp_path / "d.csr")), None),
        (("certs", "list"), None),
        (("issue", "--profile", "sensor", "--csr", str(tmp_path / "nope")), None),
        (("ca", "take-offline", "root", "--export", str(tmp_path / "root.enc")), export),
        (("ca", "restore-key", "root", "--from", str(tmp_path / "root.enc")), export),
        (("issue", "--profile", "sensor", "--csr", str(tmp_path / "d.csr")),
         {"FLEETPKI_KEY_PASSPHRASE": "a-wrong-passphrase-given"}),
        (("audit", "list", "--limit", "1000"), None),
    ]:
        result = fleetpki(*args, env=env)
        outputs.append(result.output)
    passphrase = (home / "secrets" / "key-passphrase").read_text().strip()
    secrets = [passphrase, "offline-export-passphrase-123", "a-wrong-passphrase-given"]
    for name in ("issuing", "root"):
        key = load_key_file(home / "keys" / f"{name}.key.pem", passphrase.encode())
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        # Any 24-byte window of the private key, raw or base64, would be a leak.
        secrets += [der[-24:].hex(), base64.b64encode(der[-24:]).decode()]
    haystacks = {"command output": "\n".join(outputs).encode()}
    for path in [*home.rglob("*.log"), home / "fleetpki.db", *home.glob("fleetpki.db-*")]:
        haystacks[str(path)] = path.read_bytes()
    for where, data in haystacks.items():
        for secret in secrets:
            assert secret.encode() not in data, f"secret material found in {where}"
            assert secret.encode() not in data.replace(b"\n", b"")
