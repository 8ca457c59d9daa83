"""Every CLI command imports the CLI and opens a Fleet; only `serve` (and `simulate`) need the
protocol front ends, the web frameworks and pyasn1's modules, which took most of the start-up
time of every command before wiring.py imported them where servers are built."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = ("pyasn1", "pyasn1_alt_modules", "fastapi", "starlette", "uvicorn", "pydantic",
               "fleetpki.protocols.est.handler", "fleetpki.protocols.cmp.asn1",
               "fleetpki.protocols.scep.handler", "fleetpki.protocols.acme.server",
               "fleetpki.inventory.app", "fleetpki.simulator.engine", "fleetpki.serve_wiring")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True)
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_the_cli_loads_no_server_module() -> None:
    loaded = _loaded_after("import fleetpki.cli.main")
    assert "fleetpki.wiring" in loaded  # the probe imports what every command imports
    assert sorted(m for m in SERVER_ONLY if m in loaded) == []

