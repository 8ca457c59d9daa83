"""How long a `fleetpki` command takes before it does anything, against the floor of any
Python CLI built on the same libraries.

    .venv/bin/python benchmarks/cli_startup.py [--runs 9]

Operators run the CLI by hand and from scripts (a batch per production lot, a revocation
per returned device), and `fleetpki batch` pays its start-up before the first certificate.
Measured in the same run, as the median wall time of --runs fresh processes each:

  reference   the interpreter importing what every command needs whatever it does:
              cryptography's X.509 module, SQLAlchemy, click and rich.
  commands    `fleetpki --help`; `certs list` and `ca list` on a fresh data directory; a
              `batch` of an empty device list (the fixed start-up of every batch: store,
              CA key unlock, worker pool).

Reports each command's seconds and its ratio to the reference. Always exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

FLEETPKI = str(Path(sys.executable).with_name("fleetpki"))
REFERENCE = "import cryptography.x509, sqlalchemy, click, rich.table"


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True, timeout=120)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="processes per command [9]")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="fleetpki-cli-bench-") as scratch:
        home = Path(scratch) / "home"
        subprocess.run([FLEETPKI, "--home", str(home), "init"], check=True,
                       capture_output=True, timeout=120)
        devices = Path(scratch) / "devices.csv"
        devices.write_text("device_id,csr\n", encoding="ascii")
        commands = {
            "fleetpki --help": [FLEETPKI, "--help"],
            "fleetpki certs list": [FLEETPKI, "--home", str(home), "certs", "list"],
            "fleetpki ca list": [FLEETPKI, "--home", str(home), "ca", "list"],
            "fleetpki batch, empty device list": [
                FLEETPKI, "--home", str(home), "batch", "--profile", "sensor", "--devices",
                str(devices), "--out", str(Path(scratch) / "out"), "--layout", "jsonl"],
        }
        with console.status("reference: the libraries every command imports"):
            reference = median_seconds([sys.executable, "-c", REFERENCE], args.runs)
        table = Table(title=f"CLI start-up, median of {args.runs} processes")
        table.add_column("command")
        table.add_column("seconds", justify="right")
        table.add_column("/ reference", justify="right")
        table.add_row(f"reference: python -c '{REFERENCE}'", f"{reference:.2f}", "1.00")
        for name, command in commands.items():
            with console.status(name):
                seconds = median_seconds(command, args.runs)
            table.add_row(name, f"{seconds:.2f}", f"{seconds / reference:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
