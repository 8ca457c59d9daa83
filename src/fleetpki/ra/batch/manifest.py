"""The device list of a manufacturing run: a CSV read as a stream, checked row by row.

Columns: `device_id` (required); `csr` (path of a PKCS#10 file, relative to the CSV) unless keys
are generated at the factory; optional subject attributes by short name (CN, serialNumber, O,
OU, C, ST, L) and `san` (space-separated, e.g. "uri:urn:dev:mac:0a1b2c3d4e5f"). Each column
appears once.
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
    """Yield rows; raise BadInput naming the line for the first malformed one.

    Accepts what spreadsheets export: a UTF-8 byte-order mark (Excel's "CSV UTF-8"), CRLF
    line ends, and ';' or tab between fields (Excel in locales whose decimal mark is a comma)
    when the header line has no comma."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(f"device list {path} does not exist") from None
    with handle:
        try:
            header_line = handle.readline()
            handle.seek(0)
            reader = csv.reader(handle, delimiter=_delimiter(header_line))
            header = [name.strip() for name in next(reader, [])]
            numbered = ((reader.line_num, fields) for fields in reader)
            yield from _rows(path, numbered, header, need_csr=need_csr)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: not a readable CSV file ({exc}); save the device list "
                           "as UTF-8 text, one device per line") from None


def _delimiter(header_line: str) -> str:
    if "," not in header_line:
        for candidate in (";", "\t"):
            if candidate in header_line:
                return candidate
    return ","


def _rows(path: Path, numbered: Iterator[tuple[int, list[str]]], header: list[str], *,
          need_csr: bool) -> Iterator[DeviceRow]:
    """`numbered`: each record with the line it ends on."""
    if not any(header):
        raise BadInput(f"{path} is empty: its first line must name the columns, e.g. "
                       "device_id,csr")
    if "device_id" not in header:
        raise BadInput(f"{path}: the first line must name the columns, including device_id "
                       f"(found: {', '.join(header)})")
    unknown = set(header) - _KNOWN
    if unknown:
        raise BadInput(f"{path}: unknown column(s) {', '.join(sorted(unknown))}; allowed: "
                       f"{', '.join(sorted(_KNOWN))}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # Which copy would win is an accident of the code: refuse rather than guess.
        raise BadInput(f"{path}: column {', '.join(repeated)} appears more than once in the "
                       "first line; keep one column of each name")
    if need_csr and "csr" not in header:
        raise BadInput(f"{path}: a csr column is needed (or use --keygen)")
    width = len(header)
    at = {name: index for index, name in enumerate(header)}
    id_at, csr_at, san_at = at["device_id"], at.get("csr"), at.get("san")
    attributes_at = [(name, index) for name, index in at.items() if name in SUBJECT_ATTRIBUTES]
    base = path.parent
    for line, fields in numbered:
        if not fields:
            continue  # a blank line
        if len(fields) > width:
            raise BadInput(f"{path}:{line}: more fields than columns")
        fields += [""] * (width - len(fields))
        device_id = fields[id_at].strip()
        if not _DEVICE_ID.fullmatch(device_id):
            raise BadInput(f"{path}:{line}: device_id {device_id!r} must be 1-128 "
                           "letters, digits or ._:@- and start with a letter or digit")
        csr = fields[csr_at].strip() if csr_at is not None else ""
        if need_csr and not csr:
            raise BadInput(f"{path}:{line}: device {device_id} has no csr")
        yield DeviceRow(
            line=line, device_id=device_id,
            csr_path=os.path.join(base, csr) if csr else None,  # noqa: PTH118 - hot loop
            attributes=tuple((name, value) for name, index in attributes_at
                             if (value := fields[index].strip())),
            sans=tuple(fields[san_at].split()) if san_at is not None else (),
        )


def check_manifest(path: Path, *, need_csr: bool) -> int:
    """Read the whole list once before anything is issued, so that a bad line near the end
    refuses the run instead of stopping it half-way; return the number of devices (for the
    progress bar). Rows hold file names, not CSRs: this pass is cheap beside the issuance."""
    return sum(1 for _ in read_manifest(path, need_csr=need_csr))
