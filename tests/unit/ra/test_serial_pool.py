"""Serials reserved ahead: each is in the ledger before it is handed out, none is handed out
twice, blocks grow from one to the cap, and the unused ones go back to the ledger."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from importlib import resources
from pathlib import Path

import pytest

from fleetpki.core.clock import FakeClock
from fleetpki.core.issuance_plan import Request
from fleetpki.core.serials import RandomSerials, serial_hex
from fleetpki.profiles_loader import load_profiles
from fleetpki.ra.api import Authorization
from fleetpki.ra.serial_pool import SerialPool
from fleetpki.ra.service import IssuanceService
from fleetpki.store.sql.store import SqlStore
from support.ca_store import OneSigner, store_with_cas
from support.csrs import make_csr

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    store, _ = store_with_cas(tmp_path, START)
    return store


def ledger(tmp_path: Path) -> dict[str, tuple[str, str, str]]:
    """serial -> (state, device_id, profile), read with sqlite3 itself."""
    with sqlite3.connect(tmp_path / "store.db") as db:
        return {serial: (state, device, profile) for serial, state, device, profile in
                db.execute("select serial, state, device_id, profile from serials")}


def test_blocks_double_up_to_the_cap_and_each_serial_is_reserved_before_it_is_given(
        store: SqlStore, tmp_path: Path) -> None:
    pool = SerialPool(store, RandomSerials(), largest=4)
    reserved_before: list[int] = []
    taken = []
    for index in range(11):
        reserved_before.append(len(ledger(tmp_path)))
        serial = pool.take("issuing", f"dev-{index}", "sensor", START)
        assert ledger(tmp_path)[serial_hex(serial)][0] == "reserved"
        taken.append(serial)
    # blocks of 1, 2, 4, 4: a refill only when the previous block is used up
    assert reserved_before == [0, 1, 3, 3, 7, 7, 7, 7, 11, 11, 11]
    assert len(ledger(tmp_path)) == 11 and len(set(taken)) == 11


def test_the_serial_reserved_at_a_refill_names_the_device_that_asked(
        store: SqlStore, tmp_path: Path) -> None:
    pool = SerialPool(store, RandomSerials(), largest=4)
    first = pool.take("issuing", "dev-1", "sensor", START)
    second = pool.take("issuing", "dev-2", "sensor", START)  # refill: a block of two
    rows = ledger(tmp_path)
    assert rows[serial_hex(first)] == ("reserved", "dev-1", "sensor")
    assert rows[serial_hex(second)] == ("reserved", "dev-2", "sensor")
    assert sorted(rows.values()) == [("reserved", "", ""), ("reserved", "dev-1", "sensor"),
                                     ("reserved", "dev-2", "sensor")]


def test_release_gives_back_only_what_was_never_handed_out(store: SqlStore,
                                                           tmp_path: Path) -> None:
    pool = SerialPool(store, RandomSerials(), largest=8)
    taken = {pool.take("issuing", f"dev-{i}", "sensor", START) for i in range(5)}  # 1+2+4
    assert len(ledger(tmp_path)) == 7
    pool.release(START)
    assert set(ledger(tmp_path)) == {serial_hex(s) for s in taken}
    again = pool.take("issuing", "dev-9", "sensor", START)  # the pool still works after
    assert again not in taken


def test_threads_never_share_a_serial(store: SqlStore, tmp_path: Path) -> None:
    pool = SerialPool(store, RandomSerials(), largest=16)
    taken: list[int] = []
    lock = threading.Lock()

    def take_many(worker: int) -> None:
        for index in range(60):
            serial = pool.take("issuing", f"dev-{worker}-{index}", "sensor", START)
            with lock:
                taken.append(serial)

    threads = [threading.Thread(target=take_many, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(taken) == 360 and len(set(taken)) == 360
    assert {serial_hex(s) for s in taken} <= set(ledger(tmp_path))


class Repeating:
    """A serial source that first repeats one serial (a collision), then behaves."""

    def __init__(self, repeated: int) -> None:
        self._repeated, self._left = repeated, 2
        self._random = RandomSerials()

    def next_serial(self) -> int:
        if self._left:
            self._left -= 1
            return self._repeated
        return self._random.next_serial()


def test_a_block_with_a_serial_already_in_the_ledger_is_drawn_again(
        store: SqlStore, tmp_path: Path) -> None:
    first = SerialPool(store, RandomSerials()).take("issuing", "dev-1", "sensor", START)
    pool = SerialPool(store, Repeating(first))
    serial = pool.take("issuing", "dev-2", "sensor", START)
    assert serial != first
    assert ledger(tmp_path)[serial_hex(first)] == ("reserved", "dev-1", "sensor")


def test_issued_certificates_name_their_device_in_the_ledger(tmp_path: Path) -> None:
    store, issuing = store_with_cas(tmp_path, START)
    profiles = load_profiles(Path(str(resources.files("fleetpki.defaults")
                                      .joinpath("profiles.toml"))), known_issuers={"issuing"})
    service = IssuanceService(store, profiles, OneSigner(issuing), FakeClock(START),
                              RandomSerials())
    records = [service.issue(Request.from_csr(make_csr(f"sensor-{i:04d}")[0]), "sensor",
                             Authorization(actor="operator:test")) for i in range(4)]
    rows = ledger(tmp_path)
    for record in records:
        assert rows[serial_hex(record.serial)] == ("issued", record.device_id, "sensor")
    assert sorted(rows.values())[-3:] == [("reserved", "", "")] * 3  # blocks of 1, 2 and 4
    service.release_serials()
    assert sorted(ledger(tmp_path).values()) == [
        ("issued", f"sensor-{i:04d}", "sensor") for i in range(4)]
