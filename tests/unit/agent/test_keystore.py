"""The identity directory: the life of a pair, file modes, and a crash at every step.

A crash is simulated by raising (a BaseException nothing in the key store catches) at the
k-th file-system step of an operation, for every k, a file write being cut in the middle;
then a fresh Keystore loads the directory and must hold a usable identity: the old one or the
new one, never neither. tests/integration/test_agent.py does the same with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.agent import durable
from fleetpki.agent.key_pairs import KeystoreError
from fleetpki.agent.keystore import Keystore, Loaded
from fleetpki.agent.messages import Credential, NewIdentity
from fleetpki.agent.state import AgentState
from fleetpki.agent.trust_store import TrustStore, TrustStoreError
from support.agent_fakes import NOW, FakeCa, make_unreadable


@pytest.fixture(scope="module")
def ca() -> FakeCa:
    return FakeCa()


def identity(ca: FakeCa) -> NewIdentity:
    key, certificate = ca.pair()
    return NewIdentity(key, certificate, (ca.issuing.certificate,))


def serial(loaded_pair: Any) -> int | None:
    return None if loaded_pair is None else int(loaded_pair.certificate.serial_number)


def usable(loaded: Loaded) -> bool:
    """Every pair loaded has a key that matches its certificate (load() checks it; this
    checks load())."""
    for pair in (loaded.current, loaded.candidate, loaded.previous):
        if pair is None:
            continue
        public = pair.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        on_disk = x509.load_pem_x509_certificate(pair.certificate_file.read_bytes())
        if on_disk != pair.certificate or public != on_disk.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            return False
    return True


def with_current(directory: Path, ca: FakeCa) -> tuple[Keystore, NewIdentity]:
    store = Keystore(directory)
    first = identity(ca)
    store.save_candidate(first)
    store.promote()
    return store, first


# -- the life of a pair --------------------------------------------------------------------

def test_candidate_promote_keeps_the_previous_pair(tmp_path: Path, ca: FakeCa) -> None:
    store, first = with_current(tmp_path / "id", ca)
    second = identity(ca)
    store.save_candidate(second)
    loaded = store.load()
    assert serial(loaded.current) == first.certificate.serial_number
    assert serial(loaded.candidate) == second.certificate.serial_number
    assert loaded.identities().candidate == second.certificate
    store.promote()
    loaded = store.load()
    assert serial(loaded.current) == second.certificate.serial_number
    assert serial(loaded.previous) == first.certificate.serial_number
    assert loaded.candidate is None and usable(loaded)
    assert loaded.current is not None and loaded.current.chain == (ca.issuing.certificate,)
    assert (tmp_path / "id" / "current").resolve() == loaded.current.key_file.parent
    third = identity(ca)
    store.save_candidate(third)
    store.promote()
    # Only current and previous are kept.
    assert len(list((tmp_path / "id" / "generations").iterdir())) == 2


def test_a_discarded_candidate_is_gone_and_the_current_pair_stays(tmp_path: Path,
                                                                  ca: FakeCa) -> None:
    store, first = with_current(tmp_path / "id", ca)
    store.save_candidate(identity(ca))
    store.discard()
    loaded = store.load()
    assert loaded.candidate is None
    assert serial(loaded.current) == first.certificate.serial_number
    assert len(list((tmp_path / "id" / "generations").iterdir())) == 1


def test_files_are_private(tmp_path: Path, ca: FakeCa) -> None:
    store, _ = with_current(tmp_path / "id", ca)
    store.save_pending_key(identity(ca).key)
    store.save_state(AgentState(failures=2))
    loaded = store.load()
    assert loaded.current is not None
    assert stat.S_IMODE((tmp_path / "id").stat().st_mode) == 0o700
    for key_file in (loaded.current.key_file, store.pending_file, store.state_file):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, key_file
    assert loaded.state.failures == 2 and loaded.pending_key is not None


def test_client_files_name_the_pair_for_each_credential(tmp_path: Path, ca: FakeCa) -> None:
    store, _ = with_current(tmp_path / "id", ca)
    loaded = store.load()
    assert loaded.current is not None
    assert loaded.client_files(Credential.current) == (loaded.current.fullchain_file,
                                                       loaded.current.key_file)
    assert loaded.client_files(Credential.none) is None
    assert loaded.client_files(Credential.factory) is None


def test_factory_identity_and_bootstrap_secret_are_read(tmp_path: Path, ca: FakeCa) -> None:
    store = Keystore(tmp_path / "id")
    store.prepare()
    factory = identity(ca)
    (tmp_path / "id" / "factory").mkdir()
    store.factory_key.write_bytes(factory.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    store.factory_certificate.write_bytes(factory.certificate.public_bytes(
        serialization.Encoding.PEM))
    store.bootstrap_file.write_text("boot-1:s3cret:with:colons\n")
    loaded = store.load()
    ids = loaded.identities()
    assert ids.factory and ids.bootstrap == ("boot-1", "s3cret:with:colons")
    assert loaded.client_files(Credential.factory) == (store.factory_certificate,
                                                       store.factory_key)
    # A factory key that does not match its certificate is not used.
    store.factory_key.write_bytes(identity(ca).key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    broken = store.load()
    assert broken.factory is None and any("factory" in note for note in broken.notes)


def open_briefly_for_writing(fifo: Path) -> None:
    with contextlib.suppress(OSError):  # ENXIO: nobody is reading, which is as it should be
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def spoil(path: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `path` unusable the way an operator or a bad disk might."""
    if how == "unreadable":
        path.write_text("{}\n")
        make_unreadable(path, monkeypatch)
    elif how == "fifo":
        os.mkfifo(path, 0o600)  # reading it the ordinary way would block the agent for ever
        # ...and this test with it: a writer comes by after a while, so that such a read
        # ends (with nothing) and the test fails instead of hanging.
        writer = threading.Timer(5, open_briefly_for_writing, (path,))
        writer.daemon = True
        writer.start()
    elif how == "not utf-8":
        path.write_bytes(b"\xff\xfe\x00")
        path.chmod(0o600)
    else:
        path.write_text(how)
        path.chmod(0o600)


@pytest.mark.parametrize(("how", "says"), [
    ("{not json", r"state\.json is not valid agent state \(Expecting property name.*, or "
                  "delete it to start afresh at once"),
    ('{"failures": "many"}', r"state\.json is not valid agent state \(failures must be a count"),
    ('{"renew_at": "tomorrow"}', r"state\.json is not valid agent state \(renew_at is not"),
    ("[1, 2]", r"state\.json is not valid agent state \(not a JSON object\)"),
    ("not utf-8", r"state\.json is not valid agent state \('utf-8' codec"),
    ("unreadable", r"cannot read .*state\.json: Permission denied; .* or fix its permissions "
                   "or delete it"),
    ("fifo", r"cannot read .*state\.json: a FIFO, not a regular file"),
])
def test_a_bad_state_file_is_named_and_the_schedule_starts_afresh(
        tmp_path: Path, ca: FakeCa, monkeypatch: pytest.MonkeyPatch, how: str,
        says: str) -> None:
    store, first = with_current(tmp_path / "id", ca)
    spoil(store.state_file, how, monkeypatch)
    for repair in (False, True):
        loaded = store.load(repair=repair)
        assert loaded.state == AgentState()
        assert serial(loaded.current) == first.certificate.serial_number  # the identity stands
        [note] = [note for note in loaded.notes if "state.json" in note]
        assert str(store.state_file) in note and re.search(says, note)
        assert "the renewal schedule and backoff start afresh" in note
        assert "the next session rewrites it" in note
    assert store.state_file.exists()  # the session's save_state replaces it, nothing else
    monkeypatch.undo()
    store.state_file.unlink()
    store.save_state(AgentState(failures=2))
    loaded = store.load()
    assert loaded.state.failures == 2 and not loaded.notes


@pytest.mark.parametrize(("how", "says"), [
    ("just-the-secret\n", "is not one line '<id>:<secret>'"),
    ("boot-1:\n", "is not one line '<id>:<secret>'"),
    (":s3cret\n", "is not one line '<id>:<secret>'"),
    ("", "is not one line '<id>:<secret>'"),
    ("boot-1:s3cret\nboot-2:s3cret\n", "is not one line '<id>:<secret>'"),
    ("dev-7,boot-1,s3cret,2027-03-01T12:00:00+00:00\n", "is not one line '<id>:<secret>'"),
    ("not utf-8", "is not one line '<id>:<secret>'"),
    ("unreadable", "cannot read .*bootstrap.secret: Permission denied; the bootstrap secret is "
                   "not used: fix its permissions"),
    ("fifo", "cannot read .*bootstrap.secret: a FIFO, not a regular file"),
])
def test_an_unusable_bootstrap_secret_is_named_not_quoted_and_kept(
        tmp_path: Path, ca: FakeCa, monkeypatch: pytest.MonkeyPatch, how: str,
        says: str) -> None:
    store, _ = with_current(tmp_path / "id", ca)
    spoil(store.bootstrap_file, how, monkeypatch)
    loaded = store.load()
    assert loaded.bootstrap is None
    [note] = [note for note in loaded.notes if "bootstrap.secret" in note]
    assert str(store.bootstrap_file) in note and re.search(says, note)
    assert "s3cret" not in note and "provision it again" in note
    assert store.bootstrap_file.exists() or store.bootstrap_file.is_fifo()  # never deleted


def test_a_bootstrap_secret_readable_by_others_is_used_with_a_note(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "id")
    store.prepare()
    store.bootstrap_file.write_text("boot-1:s3cret\n")
    store.bootstrap_file.chmod(0o644)
    loaded = store.load()
    assert loaded.bootstrap == ("boot-1", "s3cret")
    assert loaded.notes == (f"{store.bootstrap_file} is readable by other users; chmod 600 it",)


def test_pins_file_lines_are_checked(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust")
    store.directory.mkdir()
    store.pins_file.write_text(f"# planned 2028 rollover\nsha256:{'ab' * 32}\n\n{'CD' * 32}\n")
    assert store.pins() == {"ab" * 32, "cd" * 32}
    store.pins_file.write_text("ab" * 32 + "\nnot-a-pin\n")
    with pytest.raises(TrustStoreError, match=r"pins:2: 'not-a-pin' is not a SHA-256"):
        store.pins()


def test_status_view_writes_nothing(tmp_path: Path, ca: FakeCa) -> None:
    store, _ = with_current(tmp_path / "id", ca)
    (store.generations / ".tmp-g000099").mkdir()
    before = sorted(p.name for p in (tmp_path / "id").rglob("*"))
    store.load(repair=False)
    assert sorted(p.name for p in (tmp_path / "id").rglob("*")) == before
    store.load()
    assert not (store.generations / ".tmp-g000099").exists()


# -- recovery --------------------------------------------------------------------------------

def test_a_certificate_saved_just_before_a_crash_becomes_the_candidate(tmp_path: Path,
                                                                        ca: FakeCa) -> None:
    store, first = with_current(tmp_path / "id", ca)
    pointers = store.pointer_file.read_text()
    store.save_candidate(identity(ca))
    store.pointer_file.write_text(pointers)  # as if the pointer write never happened
    loaded = store.load()
    assert loaded.candidate is not None and serial(loaded.current) == \
        first.certificate.serial_number
    assert any("recovered" in note for note in loaded.notes)
    assert json.loads(store.pointer_file.read_text())["candidate"] is not None


def test_a_damaged_pointer_file_is_rebuilt_from_the_generations(tmp_path: Path,
                                                                 ca: FakeCa) -> None:
    store, _ = with_current(tmp_path / "id", ca)
    second = identity(ca)
    store.save_candidate(second)
    store.promote()
    store.pointer_file.write_text("{garbage")
    loaded = store.load()
    assert serial(loaded.current) == second.certificate.serial_number
    assert loaded.previous is not None and usable(loaded)


def test_a_damaged_current_pair_falls_back_to_the_previous_one(tmp_path: Path,
                                                               ca: FakeCa) -> None:
    store, first = with_current(tmp_path / "id", ca)
    store.save_candidate(identity(ca))
    promoted = store.promote()
    promoted.key_file.write_bytes(b"-----BEGIN PRIVATE KEY-----\ntruncated")
    loaded = store.load()
    assert serial(loaded.current) == first.certificate.serial_number and usable(loaded)


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under `directory` with its content (None for a directory)."""
    return {str(path.relative_to(directory)): None if path.is_dir() else path.read_bytes()
            for path in sorted(directory.rglob("*")) if not path.is_symlink()}


@pytest.mark.parametrize("name", ["cert.pem", "key.pem", "chain.pem"])
def test_an_unreadable_current_pair_stops_and_keeps_everything(
        tmp_path: Path, ca: FakeCa, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    store, first = with_current(tmp_path / "id", ca)
    store.save_candidate(identity(ca))
    current = store.promote()  # first is now previous: a fallback repair would use it
    before = snapshot(store.directory)
    make_unreadable(current.key_file.parent / name, monkeypatch)
    for repair in (True, False):
        with pytest.raises(KeystoreError, match=f"cannot read .*{name}: Permission denied; "
                                                 "fix its permissions.*identity is kept"):
            store.load(repair=repair)
    monkeypatch.undo()
    (current.key_file.parent / name).chmod(0o600)
    assert snapshot(store.directory) == before
    loaded = store.load()
    assert loaded.current == current and serial(loaded.previous) == \
        first.certificate.serial_number


def test_an_unreadable_pointer_file_is_not_rebuilt(tmp_path: Path, ca: FakeCa,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = with_current(tmp_path / "id", ca)
    store.save_candidate(identity(ca))  # a rebuild would make this unconfirmed one current
    before = snapshot(store.directory)
    make_unreadable(store.pointer_file, monkeypatch)
    with pytest.raises(KeystoreError, match=r"cannot read .*identity\.json: Permission denied"):
        store.load()
    monkeypatch.undo()
    store.pointer_file.chmod(0o600)
    assert snapshot(store.directory) == before


@pytest.mark.parametrize("name", ["cert.pem", "key.pem", "chain.pem", "identity.json"])
def test_a_fifo_in_place_of_an_identity_file_stops_the_session_instead_of_hanging(
        tmp_path: Path, ca: FakeCa, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    store, _ = with_current(tmp_path / "id", ca)
    current = store.load().current
    assert current is not None
    target = store.pointer_file if name == "identity.json" else current.key_file.parent / name
    before = snapshot(store.directory)
    target.unlink()
    spoil(target, "fifo", monkeypatch)
    for repair in (True, False):
        with pytest.raises(KeystoreError, match=f"cannot read .*{name}: a FIFO, not a regular "
                                                 "file; put the file back in its place; the "
                                                 "identity is kept"):
            store.load(repair=repair)
    target.unlink()
    del before[str(target.relative_to(store.directory))]
    assert snapshot(store.directory) == before  # nothing repaired, nothing removed


def test_trust_files_that_are_fifos_are_refused_or_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = TrustStore(tmp_path / "trust")
    store.directory.mkdir()
    for path in (store.roots_file, store.pins_file, store.intermediates_file):
        spoil(path, "fifo", monkeypatch)
    with pytest.raises(TrustStoreError, match=r"cannot read .*roots\.pem: a FIFO, not a regular"):
        store.roots()
    with pytest.raises(TrustStoreError, match=r"cannot read .*pins: .*a FIFO, not a regular"):
        store.pins()
    assert store.intermediates() == []  # a cache: the chain files are only shorter without it


def test_a_pending_key_whose_certificate_was_saved_is_dropped(tmp_path: Path,
                                                               ca: FakeCa) -> None:
    store = Keystore(tmp_path / "id")
    held = identity(ca)
    store.save_pending_key(held.key)
    store.save_candidate(held)  # crash before SavePendingKey(None)
    loaded = store.load()
    assert loaded.pending_key is None and not store.pending_file.exists()


# -- a crash at every step -------------------------------------------------------------------

class Crash(BaseException):
    """Not an Exception: nothing in the key store may swallow it."""


class CrashAt:
    """Counts file-system steps and crashes at the k-th: a write is cut in half first."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, k: int) -> None:
        self.k, self.count = k, 0
        write_new = durable.write_new

        def cut_write(path: Path, data: bytes, mode: int) -> None:
            if self.step():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
                os.write(fd, data[:len(data) // 2])
                os.close(fd)
                raise Crash
            write_new(path, data, mode)

        monkeypatch.setattr(durable, "write_new", cut_write)
        monkeypatch.setattr(durable, "fsync_directory", self.wrap(durable.fsync_directory))
        monkeypatch.setattr(shutil, "rmtree", self.wrap(shutil.rmtree))
        for method in ("rename", "replace", "unlink", "symlink_to"):
            monkeypatch.setattr(Path, method, self.wrap(getattr(Path, method)))

    def step(self) -> bool:
        self.count += 1
        return self.count == self.k

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.step():
                raise Crash
            return function(*args, **kwargs)
        return wrapped


def crash_points(operation: Callable[[Keystore], object], setup: Callable[[Path], Keystore],
                 tmp_path: Path) -> Iterator[tuple[int, Keystore]]:
    """For k = 1, 2, ...: a fresh directory, the operation crashing at step k, and a fresh
    Keystore over what is left. Stops once the operation completes without crashing."""
    k = 0
    while True:
        k += 1
        directory = tmp_path / f"k{k}"
        store = setup(directory)
        with pytest.MonkeyPatch.context() as monkeypatch:
            CrashAt(monkeypatch, k)
            try:
                operation(store)
            except Crash:
                pass
            else:
                return
        yield k, Keystore(directory)
        assert k < 200, "the operation never completes"


def test_a_crash_while_saving_a_candidate_keeps_the_current_pair(tmp_path: Path,
                                                                  ca: FakeCa) -> None:
    first, new = identity(ca), identity(ca)

    def setup(directory: Path) -> Keystore:
        store = Keystore(directory)
        store.save_candidate(first)
        store.promote()
        return store

    outcomes = set()
    for _, store in crash_points(lambda s: s.save_candidate(new), setup, tmp_path):
        loaded = store.load()
        assert serial(loaded.current) == first.certificate.serial_number and usable(loaded)
        assert serial(loaded.candidate) in (None, new.certificate.serial_number)
        outcomes.add(serial(loaded.candidate))
        assert not [p for p in store.generations.iterdir() if p.name.startswith(".")]
        store.save_candidate(new)  # the agent carries on
        assert serial(store.load().candidate) == new.certificate.serial_number
    assert outcomes == {None, new.certificate.serial_number}


def test_a_crash_while_promoting_leaves_old_or_new_never_neither(tmp_path: Path,
                                                                 ca: FakeCa) -> None:
    first, second = identity(ca), identity(ca)
    old = (first.certificate.serial_number, None, second.certificate.serial_number)
    new = (second.certificate.serial_number, first.certificate.serial_number, None)

    def setup(directory: Path) -> Keystore:
        store = Keystore(directory)
        store.save_candidate(first)
        store.promote()
        store.save_candidate(second)
        return store

    seen = set()
    for _, store in crash_points(lambda s: s.promote(), setup, tmp_path):
        loaded = store.load()
        view = (serial(loaded.current), serial(loaded.previous), serial(loaded.candidate))
        assert view in (old, new) and usable(loaded)
        seen.add(view)
    assert seen == {old, new}


def test_a_crash_while_discarding_keeps_the_current_pair(tmp_path: Path, ca: FakeCa) -> None:
    first, refused = identity(ca), identity(ca)

    def setup(directory: Path) -> Keystore:
        store = Keystore(directory)
        store.save_candidate(first)
        store.promote()
        store.save_candidate(refused)
        return store

    for _, store in crash_points(lambda s: s.discard(), setup, tmp_path):
        loaded = store.load()
        assert serial(loaded.current) == first.certificate.serial_number and usable(loaded)


def test_a_crash_while_saving_state_keeps_the_old_state(tmp_path: Path) -> None:
    def setup(directory: Path) -> Keystore:
        store = Keystore(directory)
        store.save_state(AgentState(failures=1))
        return store

    for _, store in crash_points(lambda s: s.save_state(AgentState(failures=2, renew_at=NOW)),
                                 setup, tmp_path):
        assert store.load().state.failures in (1, 2)
