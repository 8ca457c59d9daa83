"""The device list of a batch as spreadsheets and scripts write it, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetpki.core.errors import BadInput
from fleetpki.ra.batch.manifest import DeviceRow, read_manifest


def rows(tmp_path: Path, content: bytes, *, need_csr: bool = True) -> list[DeviceRow]:
    path = tmp_path / "devices.csv"
    path.write_bytes(content)
    return list(read_manifest(path, need_csr=need_csr))


@pytest.mark.parametrize("content", [
    b"device_id,csr,CN\ndev-1,a.csr,Sensor 1\ndev-2,b.csr,\n",
    # Excel's "CSV UTF-8": a byte-order mark and CRLF, a blank line left in
    b"\xef\xbb\xbfdevice_id,csr,CN\r\ndev-1,a.csr,Sensor 1\r\n\r\ndev-2,b.csr,\r\n",
    # Excel where the decimal mark is a comma: semicolons
    b"device_id;csr;CN\ndev-1;a.csr;Sensor 1\ndev-2;b.csr\n",
    b"device_id\tcsr\tCN\ndev-1\ta.csr\tSensor 1\ndev-2\tb.csr\t\n",
    b"device_id, csr, CN\ndev-1, a.csr, Sensor 1\ndev-2 , b.csr ,\n",
])
def test_spreadsheet_exports_read_alike(tmp_path: Path, content: bytes) -> None:
    read = rows(tmp_path, content)
    assert [(r.device_id, Path(r.csr_path or "").name, r.attributes) for r in read] == [
        ("dev-1", "a.csr", (("CN", "Sensor 1"),)), ("dev-2", "b.csr", ())]
    assert all(Path(r.csr_path or "").parent == tmp_path for r in read)


def test_line_numbers_count_the_header_and_blank_lines(tmp_path: Path) -> None:
    read = rows(tmp_path, b"device_id,san\ndev-1,uri:urn:dev:1 dns:a.example\n\ndev-2,\n",
                need_csr=False)
    assert [(r.line, r.sans) for r in read] == [
        (2, ("uri:urn:dev:1", "dns:a.example")), (4, ())]


@pytest.mark.parametrize(("content", "says"), [
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a readable CSV file"),
    (b"device_id,csr\ndev-\xff,a.csr\n", "save the device list as UTF-8"),
    (b"CN,csr\nx,y\n", "including device_id (found: CN, csr)"),
    (b"device_id,colour\nx,red\n", "unknown column(s) colour"),
    (b"device_id\ndev-1\n", "a csr column is needed"),
    (b"device_id,csr,device_id\ndev-1,a.csr,dev-2\n", "column device_id appears more than once"),
    (b"device_id;csr;CN; CN\ndev-1;a.csr;Sensor 1;Sensor 2\n", "column CN appears more than once"),
    (b"device_id,csr\ndev-1,a.csr,extra\n", "devices.csv:2: more fields than columns"),
    (b"device_id,csr\n../escape,a.csr\n", "devices.csv:2: device_id '../escape'"),
    (b"device_id,csr\ndev-1,\n", "devices.csv:2: device dev-1 has no csr"),
])
def test_malformed_lists_are_refused_with_the_place(tmp_path: Path, content: bytes,
                                                     says: str) -> None:
    with pytest.raises(BadInput) as refused:
        rows(tmp_path, content)
    assert says in str(refused.value)


def test_missing_list_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        list(read_manifest(tmp_path / "nope.csv", need_csr=False))
