"""The device's identity directory: keys, certificates, state and trust, safe against crashes.

Layout (the directory is 0700, every private key file 0600):

    identity.json           which generation is current, previous and candidate
    generations/g000007/    key.pem  cert.pem  chain.pem  fullchain.pem   (one per certificate)
    pending-key.pem         the key of an enrollment held by the server (RFC 7030 §4.2.3)
    state.json              AgentState (state.py): windows, backoff, last error
    factory/idevid.pem      the factory identity (IDevID) and its key: provisioned, read-only
    factory/idevid.key
    bootstrap.secret        "<id>:<secret>", an optional one-time enrollment secret
                            (bootstrap_secret.py)
    trust/                  roots, pins of future roots, intermediates (trust_store.py)
    agent.lock              one session at a time (the daemon and a manual `renew`)
    current -> generations/g000007   a convenience link for services that want fixed paths

Why generations and a pointer file: the one step that changes which identity is in use, a
promotion, is then a single atomic rename of `identity.json`. Every file is written to a
temporary name, fsynced, renamed, and the directory fsynced (durable.py), so a crash or power
loss at any instant leaves either the old pointer or the new one, and each names complete
generations:

    save a candidate   write generations/.tmp-gN, fsync, rename to gN, fsync the directory,
                       then point `candidate` at gN
    promote            one pointer write: current <- candidate, previous <- old current
    discard            rename gN to .trash-gN (gone as far as load is concerned), then clear
                       the pointer
    clean up           only after the pointer that stops naming a generation is durable

`load()` repairs what an interruption can leave: temporary and trash directories are removed,
generations no pointer names are removed, except one newer than every named generation: that
is a certificate saved just before the crash whose pointer write never happened, and it
becomes the candidate (so a certificate the server issued is not thrown away). A current
generation that does not load (disk corruption, not a crash) falls back to the previous one.

"Does not load" means a file that is absent or whose content does not parse. A file that is
there but cannot be read (EACCES, EIO, a FIFO, ...) is not damage: repair would rewrite the
pointers and delete a working identity over a permission mistake. load() then raises
KeystoreError naming the file, before anything is written, and the session stops with the
identity kept (key_pairs.py draws that line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from fleetpki.agent import bootstrap_secret, durable
from fleetpki.agent.flow import Identities
from fleetpki.agent.key_pairs import (
    KeystoreError,
    Pair,
    Unreadable,
    key_pem,
    load_key,
    load_pair,
    public_der,
)
from fleetpki.agent.messages import Credential, NewIdentity
from fleetpki.agent.state import AgentState
from fleetpki.agent.trust_store import TrustStore

_GENERATION = re.compile(r"^g(\d{6,})$")
_SCRAP = re.compile(r"^\.(tmp|trash)-g(\d{6,})$")
_ROLES = ("current", "previous", "candidate")


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    current: Pair | None
    candidate: Pair | None
    previous: Pair | None
    factory: Pair | None
    bootstrap: tuple[str, str] | None = dataclasses.field(repr=False)
    pending_key: CertificateIssuerPrivateKeyTypes | None = dataclasses.field(repr=False)
    state: AgentState
    notes: tuple[str, ...] = ()  # what load() found and repaired, for the log

    def identities(self) -> Identities:
        return Identities(
            current=self.current.certificate if self.current else None,
            candidate=self.candidate.certificate if self.candidate else None,
            factory=self.factory is not None, bootstrap=self.bootstrap,
            pending_key=self.pending_key)

    def client_files(self, credential: Credential) -> tuple[Path, Path] | None:
        """(certificate chain file, key file) to present for `credential`; None: no
        client certificate."""
        pair = {Credential.current: self.current, Credential.candidate: self.candidate,
                Credential.factory: self.factory}.get(credential)
        if pair is None:
            return None
        return pair.fullchain_file or pair.certificate_file, pair.key_file


class Keystore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.generations = directory / "generations"
        self.pointer_file = directory / "identity.json"
        self.state_file = directory / "state.json"
        self.pending_file = directory / "pending-key.pem"
        self.factory_certificate = directory / "factory" / "idevid.pem"
        self.factory_key = directory / "factory" / "idevid.key"
        self.bootstrap_file = directory / "bootstrap.secret"
        self.trust = TrustStore(directory / "trust")
        self.lock_file = directory / "agent.lock"
        self.current_link = directory / "current"

    # -- the directory -----------------------------------------------------------------

    def prepare(self) -> None:
        """Create the directories the agent writes to, private to its user."""
        try:
            for path in (self.directory, self.generations):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.directory.chmod(0o700)
        except OSError as error:
            raise KeystoreError(f"cannot create the identity directory {self.directory}: "
                                f"{error.strerror}; check data_dir and the agent's user"
                                ) from None

    @contextlib.contextmanager
    def lock(self, timeout: float = 30.0) -> Iterator[None]:
        """Hold the directory for one session. The kernel releases it if the process dies,
        so a killed agent never leaves it locked."""
        self.prepare()
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as error:
                    if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        raise KeystoreError(
                            f"another fleetpki-agent is using {self.directory} (a session "
                            f"took longer than {timeout:.0f} s); try again later") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- reading -------------------------------------------------------------------------

    def load(self, *, repair: bool = True) -> Loaded:
        """Everything the flow and the transport need. With `repair` (the caller holds the
        lock), leftovers of an interrupted step are cleaned up as the module docstring says;
        without it (`status`), the same view is computed and nothing is written."""
        notes: list[str] = []
        recorded, damaged = self._pointers(notes)
        pointers = self._recover(recorded, damaged, notes)
        pairs = {role: self._pair(name) if name is not None else None
                 for role, name in pointers.items()}
        for role in _ROLES:
            if pointers[role] is not None and pairs[role] is None:
                notes.append(f"the {role} identity ({pointers[role]}) is missing or damaged; "
                             "ignored")
                pointers[role] = None
        if pairs["current"] is None and pairs["previous"] is not None:
            notes.append("falling back to the previous identity")
            pairs["current"], pairs["previous"] = pairs["previous"], None
            pointers["current"], pointers["previous"] = pointers["previous"], None
        if repair:
            self.prepare()
            if pointers != recorded:
                self._write_pointers(pointers)
            self._link_current(pointers["current"])
            self._collect()
        pending = self._pending_key(pairs["current"], pairs["candidate"], repair)
        return Loaded(current=pairs["current"], candidate=pairs["candidate"],
                      previous=pairs["previous"], factory=self._factory(notes),
                      bootstrap=bootstrap_secret.read(self.bootstrap_file, notes),
                      pending_key=pending, state=self.load_state(notes), notes=tuple(notes))

    def _recover(self, recorded: dict[str, str | None], damaged: bool, notes: list[str]
                 ) -> dict[str, str | None]:
        """The pointers corrected for an interrupted save_candidate (an orphan newer than
        every named generation becomes the candidate) or a damaged pointer file (the two
        newest generations that load become current and previous)."""
        pointers = dict(recorded)
        loadable = [name for name in sorted(self._generation_names(), key=_number,
                                            reverse=True) if self._pair(name) is not None]
        if damaged:
            pointers = {"current": loadable[0] if loadable else None,
                        "previous": loadable[1] if len(loadable) > 1 else None,
                        "candidate": None}
            return pointers
        newest_named = max((_number(n) for n in recorded.values() if n is not None),
                           default=-1)
        if loadable and _number(loadable[0]) > newest_named:
            pointers["candidate"] = loadable[0]
            pair = self._pair(loadable[0])
            assert pair is not None
            notes.append(f"recovered certificate {_serial(pair.certificate)}, saved just "
                         "before an interruption: it will be confirmed as a candidate")
        return pointers

    def load_state(self, notes: list[str] | None = None) -> AgentState:
        """The saved state. None is a fresh state; so is one that cannot be read or parsed,
        with a note naming the file: it holds no identity (state.py), so the agent asks the
        server again rather than refusing to run, and the session's save_state replaces it."""
        try:
            return AgentState.from_json(
                durable.read_regular(self.state_file).decode("utf-8"))
        except FileNotFoundError:
            return AgentState()
        except OSError as error:
            problem = f"cannot read {self.state_file}: {error.strerror or error}"
            fix = "fix its permissions or delete it"
        except (UnicodeDecodeError, ValueError) as error:
            problem = f"{self.state_file} is not valid agent state ({error})"
            fix = "delete it to start afresh at once"
        if notes is not None:
            notes.append(f"{problem}; the renewal schedule and backoff start afresh (the "
                         f"file holds no keys or certificates) and the next session rewrites "
                         f"it, or {fix}")
        return AgentState()

    # -- writing: identities ---------------------------------------------------------------

    def save_candidate(self, identity: NewIdentity) -> Pair:
        """Write the new pair as a generation of its own, then name it the candidate."""
        self.prepare()
        name = f"g{self._next_number():06d}"
        scratch = self.generations / f".tmp-{name}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        leaf = identity.certificate.public_bytes(serialization.Encoding.PEM)
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in identity.chain)
        durable.write_new(scratch / "key.pem", key_pem(identity.key), 0o600)
        durable.write_new(scratch / "cert.pem", leaf, 0o644)
        durable.write_new(scratch / "chain.pem", chain, 0o644)
        durable.write_new(scratch / "fullchain.pem", leaf + chain, 0o644)
        durable.fsync_directory(scratch)
        scratch.rename(self.generations / name)
        durable.fsync_directory(self.generations)
        pointers, _ = self._pointers([])
        self._write_pointers({**pointers, "candidate": name})
        self._collect()
        pair = self._pair(name)
        assert pair is not None
        return pair

    def promote(self) -> Pair:
        """The candidate becomes current, the current one previous: one atomic rename."""
        pointers, _ = self._pointers([])
        candidate = pointers["candidate"]
        pair = self._pair(candidate) if candidate is not None else None
        if pair is None:
            raise KeystoreError("there is no candidate certificate to promote")
        self._write_pointers({"current": candidate, "previous": pointers["current"],
                              "candidate": None})
        self._collect()
        return pair

    def discard(self) -> None:
        pointers, _ = self._pointers([])
        candidate = pointers["candidate"]
        if candidate is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.generations / candidate).rename(self.generations / f".trash-{candidate}")
            durable.fsync_directory(self.generations)
        self._write_pointers({**pointers, "candidate": None})
        self._collect()

    def save_pending_key(self, key: CertificateIssuerPrivateKeyTypes | None) -> None:
        self.prepare()
        if key is None:
            with contextlib.suppress(FileNotFoundError):
                self.pending_file.unlink()
                durable.fsync_directory(self.directory)
            return
        durable.write_atomic(self.pending_file, key_pem(key), 0o600)

    def save_state(self, state: AgentState) -> None:
        self.prepare()
        durable.write_atomic(self.state_file, state.to_json().encode("utf-8") + b"\n", 0o600)

    # -- internals -----------------------------------------------------------------------

    def _pointers(self, notes: list[str]) -> tuple[dict[str, str | None], bool]:
        """The recorded pointers, and whether the file was damaged. It is written
        atomically, so only outside damage (a bad disk, an editor) makes it unreadable."""
        try:
            # Not read_text(): a FIFO put there would block the agent for ever (durable.py).
            document = json.loads(durable.read_regular(self.pointer_file).decode("utf-8"))
        except FileNotFoundError:
            return dict.fromkeys(_ROLES), False
        except OSError as error:
            raise Unreadable(self.pointer_file, error) from None
        except ValueError as error:
            notes.append(f"{self.pointer_file.name} is unreadable ({error}); rebuilt from "
                         "the generations on disk")
            return dict.fromkeys(_ROLES), True
        if not isinstance(document, dict):
            notes.append(f"{self.pointer_file.name} is not a JSON object; rebuilt from the "
                         "generations on disk")
            return dict.fromkeys(_ROLES), True
        return {role: value if isinstance(value := document.get(role), str)
                and _GENERATION.match(value) else None for role in _ROLES}, False

    def _write_pointers(self, pointers: dict[str, str | None]) -> None:
        text = json.dumps({role: pointers.get(role) for role in _ROLES}, indent=2)
        durable.write_atomic(self.pointer_file, text.encode("utf-8") + b"\n", 0o600)
        self._link_current(pointers.get("current"))

    def _link_current(self, name: str | None) -> None:
        """Point `current` at the current generation (a symlink replaced by rename). It is
        derived from identity.json, which alone decides, so load() repairs it if a crash
        came between the two."""
        target = f"generations/{name}" if name is not None else None
        try:
            if self.current_link.is_symlink() and str(self.current_link.readlink()) == target:
                return
            if self.current_link.exists() and not self.current_link.is_symlink():
                return  # something of the operator's: leave it alone
            if target is None:
                self.current_link.unlink(missing_ok=True)
                return
            scratch = self.directory / f".current.tmp-{os.getpid()}"
            scratch.unlink(missing_ok=True)
            scratch.symlink_to(target)
            scratch.replace(self.current_link)
            durable.fsync_directory(self.directory)
        except OSError:
            pass  # a convenience only: identity.json stays the truth

    def _generation_names(self) -> list[str]:
        try:
            return [entry.name for entry in durable.entries(self.generations)
                    if entry.is_dir(follow_symlinks=False) and _GENERATION.match(entry.name)]
        except FileNotFoundError:
            return []

    def _next_number(self) -> int:
        numbers = [-1]
        with contextlib.suppress(FileNotFoundError):
            for entry in durable.entries(self.generations):
                match = _GENERATION.match(entry.name) or _SCRAP.match(entry.name)
                if match:
                    numbers.append(int(match.groups()[-1]))
        return max(numbers) + 1

    def _collect(self) -> None:
        """Remove scratch directories and generations the durable pointer file no longer
        names (it is read back from disk, so a pointer not yet written protects nothing)."""
        pointers, damaged = self._pointers([])
        if damaged:
            return  # nothing is known to be unused until load() rebuilds the pointers
        keep = {name for name in pointers.values() if name is not None}
        with contextlib.suppress(FileNotFoundError):
            for entry in durable.entries(self.generations):
                if entry.name in keep:
                    continue
                if _SCRAP.match(entry.name) or _GENERATION.match(entry.name):
                    shutil.rmtree(entry.path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            for entry in durable.entries(self.directory):
                if entry.name.startswith(".") and ".tmp-" in entry.name:
                    with contextlib.suppress(OSError):
                        Path(entry.path).unlink()

    def _pair(self, name: str) -> Pair | None:
        """A generation that loads and whose key matches its certificate, else None."""
        directory = self.generations / name
        pair = load_pair(directory / "key.pem", directory / "cert.pem", directory / "chain.pem")
        if pair is None:
            return None
        return dataclasses.replace(pair, chain_file=directory / "chain.pem",
                                   fullchain_file=directory / "fullchain.pem")

    def _factory(self, notes: list[str]) -> Pair | None:
        if not self.factory_certificate.exists() and not self.factory_key.exists():
            return None
        try:
            pair = load_pair(self.factory_key, self.factory_certificate, None)
        except Unreadable as error:
            # Provisioned and never rewritten by the agent: a note is enough, nothing is lost.
            notes.append(f"the factory identity is not used: {error}")
            return None
        if pair is None:
            notes.append(f"the factory identity in {self.factory_certificate.parent} does not "
                         "load (or its key does not match its certificate); not using it")
            return None
        return dataclasses.replace(pair, fullchain_file=self.factory_certificate)

    def _pending_key(self, current: Pair | None, candidate: Pair | None, repair: bool
                     ) -> CertificateIssuerPrivateKeyTypes | None:
        # Unreadable goes up: the key of an enrollment the server holds must not be
        # replaced by a new one over a permission mistake.
        try:
            key = load_key(self.pending_file)
        except (FileNotFoundError, ValueError, TypeError):
            return None
        certified = {public_der(p.key) for p in (current, candidate) if p is not None}
        if key is not None and public_der(key) in certified:
            # Its certificate was saved and the crash came before the key was cleared.
            if repair:
                self.save_pending_key(None)
            return None
        return key


def _number(name: str) -> int:
    match = _GENERATION.match(name)
    return int(match.group(1)) if match else -1


def _serial(certificate: x509.Certificate) -> str:
    return f"{certificate.serial_number:x}"
