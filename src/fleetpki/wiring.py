"""The composition root: the only module that imports every role and connects them."""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
from importlib import resources
from pathlib import Path

from cryptography import x509

from fleetpki.ca.file_signers import CAKeyLocation, FileSignerSource
from fleetpki.ca.keyfiles import write_private_file
from fleetpki.config import DEFAULT_PASSPHRASE_ENV, Settings, load_settings
from fleetpki.core.clock import Clock, SystemClock
from fleetpki.core.errors import ConfigError, NotFound
from fleetpki.core.profile import Profile
from fleetpki.core.serials import RandomSerials
from fleetpki.profiles_loader import load_profiles
from fleetpki.ra.api import Authorization
from fleetpki.ra.ca_admin import CAAdmin
from fleetpki.ra.service import IssuanceService
from fleetpki.store.sql.store import SqlStore


@dataclasses.dataclass
class Fleet:
    settings: Settings
    store: SqlStore
    clock: Clock
    signers: FileSignerSource

    @functools.cached_property
    def profiles(self) -> dict[str, Profile]:
        issuers = {ca.name for ca in self.store.list_cas()}
        return load_profiles(self.settings.profiles_file, known_issuers=issuers)

    @functools.cached_property
    def issuance(self) -> IssuanceService:
        return IssuanceService(self.store, self.store, self.profiles, self.signers, self.clock,
                               RandomSerials())

    def ca_admin(self, authorization: Authorization) -> CAAdmin:
        return CAAdmin(self.store, self.store, self.signers, self.settings.key_directory,
                       self.settings.passphrase.read, self.clock, authorization.actor)

    def chain(self, issuer: str) -> list[x509.Certificate]:
        """The issuer and its parents up to the root, nearest first."""
        chain: list[x509.Certificate] = []
        name: str | None = issuer
        while name is not None:
            record = self.store.get_ca(name)
            if record is None:
                raise NotFound(f"no CA named '{name}'")
            chain.append(x509.load_der_x509_certificate(record.certificate_der))
            name = record.parent
            if len(chain) > 8:
                raise ConfigError("CA hierarchy deeper than 8 levels: the parent links loop")
        return chain

    def close(self) -> None:
        self.store.close()


def open_fleet(home: Path, *, clock: Clock | None = None) -> Fleet:
    if not home.is_dir():
        raise ConfigError(f"data directory {home} does not exist: run `fleetpki init` first "
                          "(or pass --home)")
    settings = load_settings(home)
    store = SqlStore(settings.store_url)

    def locate(name: str) -> CAKeyLocation | None:
        record = store.get_ca(name)
        return None if record is None else CAKeyLocation(name, record.certificate_der,
                                                         record.key_file)

    signers = FileSignerSource(locate, settings.key_directory, settings.passphrase.read)
    return Fleet(settings=settings, store=store, clock=clock or SystemClock(), signers=signers)


def prepare_home(home: Path) -> list[str]:
    """Create the data directory with default settings, profiles and (if no passphrase is
    provided through the environment) a random key passphrase in a 0600 file. Returns what it
    created, for the CLI to report; existing files are never overwritten."""
    created = []
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    profiles = home / "profiles.toml"
    if not profiles.exists():
        profiles.write_text(resources.files("fleetpki.defaults").joinpath("profiles.toml")
                            .read_text(encoding="utf-8"), encoding="utf-8")
        created.append(str(profiles))
    settings = load_settings(home)
    source = settings.passphrase
    if not os.environ.get(source.env) and source.file is not None and not source.file.exists():
        # The embedded default needs no manual step; production sets the env var instead
        # (docs/operations.md), so the passphrase and the keys are not on the same disk.
        write_private_file(source.file, secrets.token_urlsafe(32).encode("ascii"))
        source.file.parent.chmod(0o700)
        created.append(str(source.file))
    settings.key_directory.mkdir(parents=True, exist_ok=True)
    settings.key_directory.chmod(0o700)
    return created


__all__ = ["DEFAULT_PASSPHRASE_ENV", "Fleet", "open_fleet", "prepare_home"]
