"""`fleetpki up`, the main job on the embedded default: from nothing to a verified certificate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509


def test_up_creates_everything_then_issues_and_verifies_a_demo_certificate(tmp_path: Path
                                                                           ) -> None:
    home = tmp_path / "data"
    command = [sys.executable, "-m", "fleetpki.cli", "--home", str(home), "up"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "openssl verify OK" in first.stdout
    assert (home / "fleetpki.db").exists()
    assert oct((home / "keys" / "root.key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((home / "secrets" / "key-passphrase").stat().st_mode & 0o777) == "0o600"
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "created" not in second.stdout  # the second run reuses the hierarchy
    demo = sorted((home / "demo").glob("demo-*.pem"))
    assert len(demo) == 2
    issuers = {x509.load_pem_x509_certificate(p.read_bytes()).issuer for p in demo}
    assert len(issuers) == 1
