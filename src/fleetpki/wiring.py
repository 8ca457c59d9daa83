"""The composition root: the only module that imports every role and connects them."""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette

from fleetpki.ca.file_signers import CAKeyLocation, FileSignerSource
from fleetpki.ca.keyfiles import write_private_file
from fleetpki.config import DEFAULT_PASSPHRASE_ENV, Settings, load_settings
from fleetpki.core.clock import Clock, SystemClock
from fleetpki.core.errors import ConfigError
from fleetpki.core.profile import Profile
from fleetpki.core.serials import RandomSerials
from fleetpki.profiles_loader import load_profiles
from fleetpki.protocols.est.server import EstServer, ProxyTrust
from fleetpki.ra.api import Authorization
from fleetpki.ra.approvals import ApprovalDesk
from fleetpki.ra.ca_admin import CAAdmin
from fleetpki.ra.ca_chain import issuer_chain
from fleetpki.ra.credentials import CredentialAdmin
from fleetpki.ra.enrollment import EnrollmentLimits, EnrollmentService
from fleetpki.ra.manufacturers import ManufacturerAdmin
from fleetpki.ra.service import IssuanceService
from fleetpki.server_identity import (
    PROFILE_NAME,
    ServerCredentials,
    ensure_server_certificate,
    server_profile,
)
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

    @functools.cached_property
    def default_profile(self) -> str:
        """The profile of unlabelled EST requests: configured, or the first in the file."""
        configured = self.settings.est.default_profile
        if configured is not None:
            if configured not in self.profiles:
                raise ConfigError(f"names profile '{configured}', which does not exist",
                                  file=str(self.settings.settings_file),
                                  field="est.default_profile")
            return configured
        return next(iter(self.profiles))

    @functools.cached_property
    def enrollment(self) -> EnrollmentService:
        limits = EnrollmentLimits(per_credential=self.settings.est.per_credential,
                                  per_address=self.settings.est.per_address)
        return EnrollmentService(self.issuance, self.store, self.profiles, self.clock, limits,
                                 self.default_profile)

    def credential_admin(self, authorization: Authorization) -> CredentialAdmin:
        return CredentialAdmin(self.store, self.profiles, self.clock, authorization.actor)

    def manufacturer_admin(self, authorization: Authorization) -> ManufacturerAdmin:
        return ManufacturerAdmin(self.store, self.profiles, self.clock, authorization.actor)

    def approvals(self, authorization: Authorization) -> ApprovalDesk:
        return ApprovalDesk(self.issuance, self.store, self.clock, authorization)

    def server_credentials(self) -> ServerCredentials:
        """The serve command's TLS certificate and key, issued or renewed as needed."""
        issuer = self.profiles[self.default_profile].issuer
        issuance = IssuanceService(self.store, self.store, {PROFILE_NAME: server_profile(issuer)},
                                   self.signers, self.clock, RandomSerials())
        return ensure_server_certificate(
            self.settings.home / "server", self.settings.server.hostnames, issuer, issuance,
            self.chain(issuer), self.settings.passphrase.read(), self.clock.now())

    def client_trust_pem(self) -> bytes:
        """What the TLS layer accepts client certificates from: our unrevoked CAs (renewal)
        and the registered manufacturer CAs (factory identities). The RA checks again."""
        ders = [ca.certificate_der for ca in self.store.list_cas() if ca.revoked_at is None]
        ders += [m.certificate_der for m in self.store.list_manufacturers()]
        return b"".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
                        for d in ders)

    def ca_admin(self, authorization: Authorization) -> CAAdmin:
        return CAAdmin(self.store, self.store, self.signers, self.settings.key_directory,
                       self.settings.passphrase.read, self.clock, authorization.actor)

    def chain(self, issuer: str) -> list[x509.Certificate]:
        """The issuer and its parents up to the root, nearest first."""
        return issuer_chain(self.store, issuer)

    def close(self) -> None:
        self.store.close()


def asgi_app(fleet: Fleet) -> Starlette:
    """Every device-facing protocol on one ASGI app. A new protocol is one more line here."""
    proxies = fleet.settings.server.trusted_proxies
    routes = EstServer(fleet.enrollment, ProxyTrust(proxies) if proxies else None).routes()
    return Starlette(routes=routes)


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


__all__ = ["DEFAULT_PASSPHRASE_ENV", "Fleet", "asgi_app", "open_fleet", "prepare_home"]
