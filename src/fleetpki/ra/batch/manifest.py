"""The device list of a manufacturing run: a CSV read as a stream, checked row by row.

Columns: `device_id` (required); `csr` (path of a PKCS#10 file, relative to the CSV) unless keys
are generated at the factory; optional subject attributes by short name (CN, serialNumber, O,
OU, C, ST, L) and `san` (space-separated, e.g. "uri:urn:dev:mac:0a1b2c3d4e5f").
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path

from fleetpki.core.errors import BadInput
from fleetpki.core.names import SUBJECT_ATTRIBUTES

# Device ids name output files: no path separators, no leading dot, nothing a shell mangles.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_KNOWN = {"device_id", "csr", "san", *SUBJECT_ATTRIBUTES}


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceRow:
    line: int
    device_id: str
    csr_path: str | None
    attributes: tuple[tuple[str, str], ...]
    sans: tuple[str, ...]


def read_manifest(path: Path, *, need_csr: bool) -> Iterator[DeviceRow]:
    """Yield rows; raise BadInput naming the line for the first malformed one."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"device list {path} does not exist") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        if "device_id" not in columns:
            raise BadInput(f"{path}: the first line must name the columns, including device_id")
        unknown = columns - _KNOWN
        if unknown:
            raise BadInput(f"{path}: unknown column(s) {', '.join(sorted(unknown))}; allowed: "
                           f"{', '.join(sorted(_KNOWN))}")
        if need_csr and "csr" not in columns:
            raise BadInput(f"{path}: a csr column is needed (or use --keygen)")
        base = path.parent
        try:
            for record in reader:
                line = reader.line_num
                if None in record:
                    raise BadInput(f"{path}:{line}: more fields than columns")
                device_id = (record.get("device_id") or "").strip()
                if not _DEVICE_ID.fullmatch(device_id):
                    raise BadInput(f"{path}:{line}: device_id {device_id!r} must be 1-128 "
                                   "letters, digits or ._:@- and start with a letter or digit")
                csr = (record.get("csr") or "").strip() or None
                if need_csr and csr is None:
                    raise BadInput(f"{path}:{line}: device {device_id} has no csr")
                yield DeviceRow(
                    line=line, device_id=device_id,
                    csr_path=os.path.join(base, csr) if csr else None,  # noqa: PTH118 - hot loop
                    attributes=tuple((k, v.strip()) for k, v in record.items()
                                     if k in SUBJECT_ATTRIBUTES and v and v.strip()),
                    sans=tuple((record.get("san") or "").split()),
                )
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: not a readable CSV file: {exc}") from None


def count_rows(path: Path) -> int:
    """For the progress bar: lines minus the header (a cheap upper bound)."""
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)
