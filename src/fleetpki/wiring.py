"""The composition root: the only module that imports every role and connects them.

What only `fleetpki serve` needs (the protocol front ends, the admin app, the worker apps) is
composed in serve_wiring.py, so that the other commands do not import the web frameworks and
pyasn1's modules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import os
import secrets
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.acme_settings import acme_profiles, default_acme_profile
from fleetpki.admin_operations import FleetOperations
from fleetpki.ca.file_signers import CAKeyLocation, FileSignerSource
from fleetpki.ca.keyfiles import write_private_file
from fleetpki.challenge_callback import HttpChallengeCallback
from fleetpki.cmp_identity import PROFILE_NAME as CMP_SERVER_PROFILE
from fleetpki.cmp_identity import cmp_profile, ensure_cmp_server
from fleetpki.config import DEFAULT_PASSPHRASE_ENV, Settings, load_settings
from fleetpki.core.clock import Clock, SystemClock
from fleetpki.core.errors import ConfigError
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.core.profile import Profile
from fleetpki.core.records import CARole, IssuedCertificate
from fleetpki.core.serials import RandomSerials
from fleetpki.derivation_key import FILE_NAME as DERIVATION_KEY_FILE
from fleetpki.derivation_key import derivation_key
from fleetpki.metrics.registry import EnrollmentCounter, process_metrics
from fleetpki.ocsp_identity import PROFILE_NAME as OCSP_PROFILE
from fleetpki.ocsp_identity import (
    ResponderFiles,
    ensure_responder,
    load_responder,
    responder_profile,
)
from fleetpki.profiles_loader import load_profiles
from fleetpki.ra.acme.eab import EabKeyAdmin
from fleetpki.ra.api import Authorization
from fleetpki.ra.api_tokens import OperatorCertificateAdmin, TokenAdmin
from fleetpki.ra.approvals import ApprovalDesk
from fleetpki.ra.ca_admin import CAAdmin
from fleetpki.ra.ca_chain import issuer_chain
from fleetpki.ra.challenges import ChallengeAdmin
from fleetpki.ra.credentials import CredentialAdmin
from fleetpki.ra.enrollment import EnrollmentLimits, EnrollmentService
from fleetpki.ra.manufacturers import ManufacturerAdmin
from fleetpki.ra.renewal_advisories import RenewalAdvisoryAdmin
from fleetpki.ra.revocations import RevocationDesk
from fleetpki.ra.service import IssuanceService
from fleetpki.ra.shared_secrets import SecretDeriver
from fleetpki.ra.transactions import RETENTION as TRANSACTION_RETENTION
from fleetpki.revocation.crl_publisher import CrlPublisher, CrlTiming, PublishedCrl
from fleetpki.revocation.ocsp_responder import OcspResponder, ResponderKey
from fleetpki.revocation_runtime import ResponderKeys, publish_lock
from fleetpki.scep_identity import PROFILE_NAME as SCEP_RA_PROFILE
from fleetpki.scep_identity import ensure_ra, ra_profile
from fleetpki.server_identity import (
    PROFILE_NAME,
    ServerCredentials,
    ensure_server_certificate,
    server_profile,
)
from fleetpki.service_certificates import ServiceFiles
from fleetpki.store.sql.name_search import INDEX_CHUNK as NAME_INDEX_CHUNK
from fleetpki.store.sql.store import SqlStore

log = logging.getLogger(__name__)
# ACME orders are kept this long after they expire: a client may still fetch a certificate.
ACME_ORDER_RETENTION = dt.timedelta(days=30)


@dataclasses.dataclass
class Fleet:
    settings: Settings
    store: SqlStore
    clock: Clock
    signers: FileSignerSource

    @functools.cached_property
    def profiles(self) -> dict[str, Profile]:
        cas = self.store.list_cas()
        return load_profiles(self.settings.profiles_file,
                             known_issuers={ca.name for ca in cas},
                             root_cas=frozenset(ca.name for ca in cas if ca.role is CARole.root),
                             publication=self.settings.revocation.publication)

    @functools.cached_property
    def issuance(self) -> IssuanceService:
        return IssuanceService(self.store, self.profiles, self.signers, self.clock,
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
        callback = HttpChallengeCallback(self.settings.scep.callback_timeout.total_seconds())
        return EnrollmentService(self.issuance, self.store, self.profiles, self.clock, limits,
                                 self.default_profile,
                                 observer=EnrollmentCounter(process_metrics()),
                                 challenge_callback=callback)

    # -- SCEP ------------------------------------------------------------------------------

    @functools.cached_property
    def scep_default_profile(self) -> str | None:
        """The profile of unlabelled SCEP requests: configured, or the first SCEP profile."""
        configured = self.settings.scep.default_profile
        if configured is not None:
            profile = self.profiles.get(configured)
            if profile is None or not profile.enrollment.scep:
                raise ConfigError(f"names profile '{configured}', which does not exist or does "
                                  "not set enrollment.scep = true",
                                  file=str(self.settings.settings_file),
                                  field="scep.default_profile")
            return configured
        return next((p.name for p in self.profiles.values() if p.enrollment.scep), None)

    def scep_issuers(self) -> list[str]:
        return sorted({p.issuer for p in self.profiles.values() if p.enrollment.scep})

    def ensure_scep_identities(self) -> list[ServiceFiles]:
        """The RA certificate of every issuing CA that serves SCEP, issued or rolled over."""
        passphrase = self.settings.passphrase.read()
        files = []
        for issuer in self.scep_issuers():
            issuance = IssuanceService(self.store, {SCEP_RA_PROFILE: ra_profile(issuer)},
                                       self.signers, self.clock, RandomSerials())
            files.append(ensure_ra(self.settings.home / "scep", issuer, self.chain(issuer)[0],
                                   issuance, passphrase, self.clock.now()))
        return files

    def challenge_admin(self, authorization: Authorization) -> ChallengeAdmin:
        return ChallengeAdmin(self.store, self.profiles, self.clock, authorization.actor)

    def credential_admin(self, authorization: Authorization) -> CredentialAdmin:
        return CredentialAdmin(self.store, self.profiles, self.clock, authorization.actor,
                               derive=self.secret_deriver.secret)

    @functools.cached_property
    def secret_deriver(self) -> SecretDeriver:
        return SecretDeriver(derivation_key(self.settings.key_directory / DERIVATION_KEY_FILE,
                                            self.settings.passphrase.read()))

    # -- ACME ------------------------------------------------------------------------------

    def eab_admin(self, authorization: Authorization) -> EabKeyAdmin:
        return EabKeyAdmin(self.store, self.secret_deriver, self.clock, authorization.actor)

    def acme_profiles(self) -> frozenset[str]:
        return frozenset(acme_profiles(self.profiles))

    @functools.cached_property
    def acme_default_profile(self) -> str | None:
        """The profile at /acme/directory; a bad acme.default_profile refuses to start."""
        return default_acme_profile(self.profiles, self.settings.acme,
                                    str(self.settings.settings_file))

    # -- CMP -------------------------------------------------------------------------------

    def cmp_issuers(self) -> list[str]:
        """Every issuing CA of a profile: CMP is open to all of them (the RA decides)."""
        return sorted({p.issuer for p in self.profiles.values()})

    def ensure_cmp_identities(self) -> list[ServiceFiles]:
        """The CMP server certificate of every issuing CA, issued or rolled over."""
        passphrase = self.settings.passphrase.read()
        files = []
        for issuer in self.cmp_issuers():
            issuance = IssuanceService(self.store, {CMP_SERVER_PROFILE: cmp_profile(issuer)},
                                       self.signers, self.clock, RandomSerials())
            files.append(ensure_cmp_server(self.settings.home / "cmp", issuer,
                                           self.chain(issuer)[0], issuance, passphrase,
                                           self.clock.now()))
        return files

    def renewal_advisories(self, authorization: Authorization) -> RenewalAdvisoryAdmin:
        return RenewalAdvisoryAdmin(self.store, self.profiles, self.clock, authorization.actor)

    def manufacturer_admin(self, authorization: Authorization) -> ManufacturerAdmin:
        return ManufacturerAdmin(self.store, self.profiles, self.clock, authorization.actor)

    def approvals(self, authorization: Authorization) -> ApprovalDesk:
        return ApprovalDesk(self.issuance, self.store, self.clock, authorization)

    def token_admin(self, authorization: Authorization) -> TokenAdmin:
        return TokenAdmin(self.store, self.clock, authorization.actor)

    def operator_certificates(self, authorization: Authorization) -> OperatorCertificateAdmin:
        return OperatorCertificateAdmin(self.store, self.clock, authorization.actor)

    def refresh_summary(self) -> StoredSummary:
        return FleetOperations(self).refresh_summary()

    def server_credentials(self) -> ServerCredentials:
        """The serve command's TLS certificate and key, issued or renewed as needed."""
        issuer = self.profiles[self.default_profile].issuer
        issuance = IssuanceService(self.store, {PROFILE_NAME: server_profile(issuer)},
                                   self.signers, self.clock, RandomSerials())
        return ensure_server_certificate(
            self.server_directory, self.settings.server.hostnames, issuer, issuance,
            self.chain(issuer), self.settings.passphrase.read(), self.clock.now())

    @property
    def server_directory(self) -> Path:
        return self.settings.home / "server"

    def client_trust_pem(self) -> bytes:
        """What the TLS layer accepts client certificates from: our unrevoked CAs (renewal)
        and the registered manufacturer CAs (factory identities). The RA checks again."""
        ders = [ca.certificate_der for ca in self.store.list_cas() if ca.revoked_at is None]
        ders += [m.certificate_der for m in self.store.list_manufacturers()]
        return b"".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
                        for d in ders)

    # -- revocation ------------------------------------------------------------------------

    @property
    def crl_directory(self) -> Path:
        return self.settings.home / "crl"

    @functools.cached_property
    def crl_publisher(self) -> CrlPublisher:
        revocation = self.settings.revocation
        return CrlPublisher(self.store, self.store, self.signers, self.profiles,
                            self.crl_directory, self.clock,
                            CrlTiming(revocation.crl_validity, revocation.delta_validity),
                            actor="fleetpki:crl")

    def publish_crls(self, *, force: bool = False) -> list[PublishedCrl]:
        """Sign the CRLs that are due, and renew OCSP responders nearing their end; waits for
        a publisher running elsewhere (serve's timer, another shell) to finish first."""
        with publish_lock(self.crl_directory, wait=True):
            return self.publish_due(force=force)

    def publish_due(self, *, force: bool = False) -> list[PublishedCrl]:
        """publish_crls without the lock, for a caller that holds it."""
        self.ensure_ocsp_responders()
        self.ensure_scep_identities()
        self.ensure_cmp_identities()
        published = self.crl_publisher.publish(force=force)
        pruned = self.store.prune_transactions(self.clock.now() - TRANSACTION_RETENTION)
        if pruned:
            log.info("protocol transactions pruned", extra={"count": pruned})
        pruned = self.store.prune_acme(self.clock.now(), keep_orders=ACME_ORDER_RETENTION)
        if pruned:
            log.info("ACME orders and nonces pruned", extra={"count": pruned})
        return published

    def background_round(self) -> None:
        """What `serve` does every revocation.check_interval, under the publish lock: what
        publish_due does, then catch the name search index up. Not at serve's start: a store
        just migrated with millions of certificates would delay it, while searches are
        correct, if slower, without the index."""
        self.publish_due()
        self.index_certificate_names()

    def index_certificate_names(self) -> int:
        """Bring the subject and SAN search index up to date, a chunk per transaction so
        that enrollments wait for half a second at most. Stops at a short chunk, so that a
        steady stream of issuance cannot keep it going."""
        total = 0
        while True:
            added = self.store.index_certificate_names(limit=NAME_INDEX_CHUNK)
            total += added
            if added < NAME_INDEX_CHUNK:
                break
        if total:
            log.info("certificates added to the name search index", extra={"count": total})
        return total

    def revocations(self, authorization: Authorization) -> RevocationDesk:
        def publish_now(record: IssuedCertificate) -> None:
            with publish_lock(self.crl_directory, wait=True):
                self.crl_publisher.publish_after_revocation(record)

        return RevocationDesk(self.store, self.store, self.profiles, self.clock, authorization,
                              publish_now)

    def ensure_ocsp_responders(self) -> list[ResponderFiles]:
        passphrase = self.settings.passphrase.read()
        files = []
        for issuer in self.crl_publisher.issuers():
            issuance = IssuanceService(self.store, {OCSP_PROFILE: responder_profile(issuer)},
                                       self.signers, self.clock, RandomSerials())
            files.append(ensure_responder(
                self.settings.home / "ocsp", issuer, self.chain(issuer)[0], issuance,
                passphrase, self.clock.now(),
                answer_validity=self.settings.revocation.ocsp_validity))
        return files

    def ocsp_responder(self) -> tuple[OcspResponder, ResponderKeys]:
        """A responder over the store, with keys that follow their files' rollover."""
        passphrase = self.settings.passphrase.read()
        directory = self.settings.home / "ocsp"

        def files() -> list[Path]:
            return sorted(directory.glob("*-responder*.pem"))

        def load() -> list[ResponderKey]:
            keys = []
            for issuer in self.crl_publisher.issuers():
                responder = ResponderFiles.of(directory, issuer)
                if responder.certificate.exists():
                    keys.append(load_responder(responder, issuer, self.chain(issuer)[0],
                                               passphrase))
            return keys

        keys = ResponderKeys(files, load)
        responder = OcspResponder(self.store, keys.initial(), self.clock,
                                  validity=self.settings.revocation.ocsp_validity)
        return responder, keys

    def ca_admin(self, authorization: Authorization) -> CAAdmin:
        return CAAdmin(self.store, self.store, self.signers, self.settings.key_directory,
                       self.settings.passphrase.read, self.clock, authorization.actor)

    def chain(self, issuer: str) -> list[x509.Certificate]:
        """The issuer and its parents up to the root, nearest first."""
        return issuer_chain(self.store, issuer)

    def release_serials(self) -> None:
        """Give back the serials the issuance service reserved ahead and never used. Best
        effort: a reserved serial that is never used harms nothing (issuance-cycle.md)."""
        if "issuance" not in self.__dict__:  # never built (cached_property): holds none
            return
        try:
            self.issuance.release_serials()
        except Exception:
            log.warning("could not give back the serials reserved ahead", exc_info=True)

    def close(self) -> None:
        self.release_serials()
        self.store.close()


def open_fleet(home: Path, *, clock: Clock | None = None, durable: bool = True) -> Fleet:
    if not home.is_dir():
        raise ConfigError(f"data directory {home} does not exist: run `fleetpki init` first "
                          "(or pass --home)")
    settings = load_settings(home)
    store = SqlStore(settings.store_url, durable=durable)

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
    if source.env not in os.environ and source.file is not None and not source.file.exists():
        # The embedded default needs no manual step; production sets the env var instead
        # (docs/operations.md), so the passphrase and the keys are not on the same disk.
        write_private_file(source.file, secrets.token_urlsafe(32).encode("ascii"))
        source.file.parent.chmod(0o700)
        created.append(str(source.file))
    settings.key_directory.mkdir(parents=True, exist_ok=True)
    settings.key_directory.chmod(0o700)
    return created


__all__ = ["DEFAULT_PASSPHRASE_ENV", "Fleet", "open_fleet", "prepare_home"]
