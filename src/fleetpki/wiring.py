"""The composition root: the only module that imports every role and connects them.

The protocol front ends, the web frameworks and the ASN.1 modules they need are imported
where a server is built, not at the top: every CLI command opens a Fleet, and importing them
all (pyasn1's CMP modules alone take most of a second) made `fleetpki certs list` wait for
`serve`'s imports."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
import os
import secrets
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.admin_operations import FleetOperations
from fleetpki.ca.file_signers import CAKeyLocation, FileSignerSource
from fleetpki.ca.keyfiles import load_key_file, write_private_file
from fleetpki.challenge_callback import HttpChallengeCallback
from fleetpki.cmp_identity import PROFILE_NAME as CMP_SERVER_PROFILE
from fleetpki.cmp_identity import cmp_files, cmp_profile, ensure_cmp_server, load_cmp_identity
from fleetpki.config import DEFAULT_PASSPHRASE_ENV, Settings, load_settings
from fleetpki.core.clock import Clock, SystemClock
from fleetpki.core.errors import ConfigError
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.core.profile import Profile
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.serials import RandomSerials
from fleetpki.derivation_key import FILE_NAME as DERIVATION_KEY_FILE
from fleetpki.derivation_key import derivation_key
from fleetpki.metrics.registry import EnrollmentCounter, process_metrics, scrape_registry
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
from fleetpki.ra.api_tokens import OperatorCertificateAdmin, TokenAdmin, TokenAuthenticator
from fleetpki.ra.approvals import ApprovalDesk
from fleetpki.ra.ca_admin import CAAdmin
from fleetpki.ra.ca_chain import issuer_chain
from fleetpki.ra.certificate_retrieval import CertificateRetrieval
from fleetpki.ra.challenges import ChallengeAdmin
from fleetpki.ra.credentials import CredentialAdmin
from fleetpki.ra.enrollment import EnrollmentLimits, EnrollmentService
from fleetpki.ra.manufacturers import ManufacturerAdmin
from fleetpki.ra.renewal_advisories import RenewalAdvisoryAdmin
from fleetpki.ra.revocations import RevocationDesk
from fleetpki.ra.self_revocation import SelfRevocation
from fleetpki.ra.service import IssuanceService
from fleetpki.ra.shared_secrets import SecretDeriver, SharedSecrets
from fleetpki.ra.transactions import RETENTION as TRANSACTION_RETENTION
from fleetpki.ra.transactions import TransactionalEnrollment
from fleetpki.revocation.crl_publisher import CrlPublisher, CrlTiming, PublishedCrl
from fleetpki.revocation.ocsp_responder import OcspResponder, ResponderKey
from fleetpki.revocation_runtime import ResponderKeys, publish_lock, revocation_loop
from fleetpki.scep_identity import PROFILE_NAME as SCEP_RA_PROFILE
from fleetpki.scep_identity import ensure_ra, load_identity, ra_files, ra_profile
from fleetpki.server_identity import (
    PROFILE_NAME,
    ServerCredentials,
    ensure_server_certificate,
    server_profile,
)
from fleetpki.service_certificates import ServiceFiles, following_rollover
from fleetpki.store.sql.name_search import INDEX_CHUNK as NAME_INDEX_CHUNK
from fleetpki.store.sql.store import SqlStore
from fleetpki.summary_runtime import summary_loop

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.types import ASGIApp

    from fleetpki.protocols.acme.server import AcmeServer
    from fleetpki.protocols.cmp.handler import CmpHandler
    from fleetpki.protocols.cmp.server import CmpServer
    from fleetpki.protocols.key_delivery import KeyGenerationAuthority
    from fleetpki.protocols.scep.handler import ScepHandler
    from fleetpki.protocols.scep.server import ScepServer
    from fleetpki.revocation.crl_http import CrlFiles
    from fleetpki.serving.direct import DirectRequest, DirectResponse
    from fleetpki.serving.workers import WorkerApps

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
        issuers = {ca.name for ca in self.store.list_cas()}
        return load_profiles(self.settings.profiles_file, known_issuers=issuers,
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

    def scep_handler(self, crls: CrlFiles) -> ScepHandler:
        from fleetpki.protocols.scep.handler import ScepHandler, ScepSettings

        passphrase = self.settings.passphrase.read()
        directory = self.settings.home / "scep"
        identity = following_rollover(lambda issuer: ra_files(directory, issuer),
                                      lambda issuer: load_identity(directory, issuer, passphrase))

        scep = self.settings.scep
        return ScepHandler(
            self.enrollment, TransactionalEnrollment(self.enrollment, self.store, self.clock),
            CertificateRetrieval(self.store, self.enrollment.identify, crls.published),
            identity, ScepSettings(self.scep_default_profile, scep.max_clock_skew,
                                   scep.accept_single_des), self.clock.now)

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

    def acme_server(self) -> AcmeServer:
        from fleetpki.acme_setup import AcmeParts, acme_server

        return acme_server(AcmeParts(
            self.store, self.issuance, self.profiles, self.clock, self.settings.acme,
            self.secret_deriver, self.enrollment.identify, self.revocations,
            str(self.settings.settings_file)))

    def eab_admin(self, authorization: Authorization) -> EabKeyAdmin:
        return EabKeyAdmin(self.store, self.secret_deriver, self.clock, authorization.actor)

    def acme_profiles(self) -> frozenset[str]:
        from fleetpki.acme_setup import acme_profiles

        return frozenset(acme_profiles(self.profiles))

    @functools.cached_property
    def acme_default_profile(self) -> str | None:
        """The profile at /acme/directory; a bad acme.default_profile refuses to start."""
        from fleetpki.acme_setup import default_acme_profile

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

    def cmp_handler(self, crls: CrlFiles) -> CmpHandler:
        from fleetpki.protocols.cmp.handler import CmpHandler, CmpSettings
        from fleetpki.protocols.cmp.protection import IterationBounds

        passphrase = self.settings.passphrase.read()
        directory = self.settings.home / "cmp"
        identity = following_rollover(
            lambda issuer: cmp_files(directory, issuer),
            lambda issuer: load_cmp_identity(directory, issuer, passphrase))

        settings = self.settings.cmp
        secrets = SharedSecrets(self.store, self.secret_deriver)
        revocation = SelfRevocation(self.enrollment.identify, self.revocations)
        return CmpHandler(
            self.enrollment, TransactionalEnrollment(self.enrollment, self.store, self.clock),
            revocation, secrets.secret_for, identity,
            lambda issuer: crls.published(f"/crl/{issuer}.crl"),
            CmpSettings(settings.max_clock_skew,
                        IterationBounds(settings.mac_min_iterations,
                                        settings.mac_max_iterations),
                        self.secret_deriver.subkey("cmp nonces")),
            self.clock.now)

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

    def admin_app(self) -> FastAPI:
        """The admin listener's application: REST API and dashboard."""
        from fleetpki.inventory.app import admin_app
        from fleetpki.inventory.context import AdminContext

        context = AdminContext(reader=self.store, operations=FleetOperations(self),
                               profiles=self.profiles, clock=self.clock,
                               max_body_bytes=self.settings.admin.max_body_bytes)
        return admin_app(context)

    def refresh_summary(self) -> StoredSummary:
        return FleetOperations(self).refresh_summary()

    def server_credentials(self) -> ServerCredentials:
        """The serve command's TLS certificate and key, issued or renewed as needed."""
        issuer = self.profiles[self.default_profile].issuer
        issuance = IssuanceService(self.store, {PROFILE_NAME: server_profile(issuer)},
                                   self.signers, self.clock, RandomSerials())
        return ensure_server_certificate(
            self._server_directory, self.settings.server.hostnames, issuer, issuance,
            self.chain(issuer), self.settings.passphrase.read(), self.clock.now())

    @property
    def _server_directory(self) -> Path:
        return self.settings.home / "server"

    def est_key_authority(self) -> KeyGenerationAuthority | None:
        """The serve command's TLS certificate and key, which sign the key packages of EST
        server-side key generation with additional encryption; None until serve has made
        them (such requests are then refused)."""
        from fleetpki.protocols.key_delivery import KeyGenerationAuthority

        files = ServerCredentials.in_directory(self._server_directory)
        if not (files.chain_file.exists() and files.key_file.exists()):
            return None
        leaf = x509.load_pem_x509_certificates(files.chain_file.read_bytes())[0]
        return KeyGenerationAuthority(leaf, load_key_file(files.key_file,
                                                          self.settings.passphrase.read()))

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

    def close(self) -> None:
        self.store.close()


def asgi_app(fleet: Fleet, scep: ScepServer | None = None, cmp: CmpServer | None = None
             ) -> Starlette:
    """Every enrollment protocol on one ASGI app. A new protocol is one more line here."""
    from starlette.applications import Starlette

    from fleetpki.protocols.cmp.server import CmpServer
    from fleetpki.protocols.est.server import EstServer, ProxyTrust
    from fleetpki.protocols.scep.server import ScepServer
    from fleetpki.revocation.crl_http import CrlFiles

    proxies = fleet.settings.server.trusted_proxies
    routes = EstServer(fleet.enrollment, ProxyTrust(proxies) if proxies else None,
                       fleet.est_key_authority()).routes()
    crls = CrlFiles(fleet.crl_directory, fleet.clock)
    scep = scep or ScepServer(fleet.scep_handler(crls))
    cmp = cmp or CmpServer(fleet.cmp_handler(crls))
    return Starlette(routes=[*routes, *scep.routes(), *cmp.routes(),
                             *fleet.acme_server().routes()])


def worker_apps(fleet: Fleet) -> WorkerApps:
    """What each `fleetpki serve` worker runs: enrollment on the HTTPS (and proxy) listener,
    CRLs and OCSP on the plain-HTTP one, the admin API with /metrics, and the background loops.
    Every listener's requests are timed (docs/metrics.md)."""
    from starlette.applications import Starlette

    from fleetpki.metrics.collector import FleetCollector
    from fleetpki.metrics.http import (
        MetricsEndpoint,
        RequestTimer,
        by_last_segment,
        by_prefix,
        with_endpoint,
    )
    from fleetpki.protocols.cmp.server import CmpServer
    from fleetpki.protocols.est.handler import OPERATIONS as EST_OPERATIONS
    from fleetpki.protocols.est.server import PREFIX as EST_PREFIX
    from fleetpki.protocols.scep.server import ScepServer
    from fleetpki.revocation.crl_http import CrlFiles
    from fleetpki.revocation.ocsp_http import MAX_REQUEST_BYTES as MAX_OCSP_REQUEST_BYTES
    from fleetpki.revocation.ocsp_http import OcspEndpoint, ocsp_app
    from fleetpki.serving.direct import DirectRoute
    from fleetpki.serving.workers import WorkerApps

    metrics = process_metrics()  # after the fork: this worker's own (metrics/process.py)
    timed = metrics.request_seconds
    crls = CrlFiles(fleet.crl_directory, fleet.clock)
    scep = ScepServer(fleet.scep_handler(crls))
    cmp = CmpServer(fleet.cmp_handler(crls))
    enrollment = RequestTimer(asgi_app(fleet, scep, cmp), timed, "est", by_last_segment(
        EST_PREFIX, [operation.name for operation in EST_OPERATIONS], "other"))
    responder, keys = fleet.ocsp_responder()
    ocsp = OcspEndpoint(responder)
    # OCSP first, as a bare ASGI app: it is the busiest thing a PKI serves, and Starlette's
    # router would cost a quarter of each answer. Everything else falls through to the CRLs.
    # SCEP and CMP protect their own messages, and routers speak them over plain HTTP: they
    # are served here too (docs/protocols.md). Most OCSP GETs and POSTs skip ASGI altogether
    # (serving/direct.py); the app answers the rest (other methods, pipelined requests).
    revocation_routes = by_prefix([("/ocsp", "ocsp"), ("/crl", "crl"), ("/scep", "scep"),
                                   ("/.well-known/cmp", "cmp")], "other")
    revocation = RequestTimer(ocsp_app(ocsp, fallback=Starlette(
        routes=[*crls.routes(), *scep.routes(), *cmp.routes()])), timed, "revocation",
        revocation_routes)

    ocsp_route = revocation_routes(ocsp.prefix)

    def answer_ocsp(request: DirectRequest) -> DirectResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = ocsp.answer_read_request(
                request.method, request.raw_path, request.headers, request.body,
                body_too_long=request.body_too_long)
            status = response[0]
            return response
        finally:
            revocation.observe_route(ocsp_route, status, started)

    def responder_certificates() -> list[tuple[str, x509.Certificate]]:
        found = []
        for issuer in fleet.crl_publisher.issuers():
            path = ResponderFiles.of(fleet.settings.home / "ocsp", issuer).certificate
            if path.exists():
                found.append((issuer, x509.load_pem_x509_certificate(path.read_bytes())))
        return found

    collector = FleetCollector(fleet.store, fleet.clock, responder_certificates)
    scrape = MetricsEndpoint(lambda: scrape_registry(metrics, collector),
                             TokenAuthenticator(fleet.store, fleet.clock).authenticate)
    administration = RequestTimer(
        with_endpoint("/metrics", scrape, fleet.admin_app()), timed, "admin",
        by_prefix([("/metrics", "metrics"), ("/api", "api"), ("/static", "static")],
                  "dashboard"))
    interval = fleet.settings.revocation.check_interval.total_seconds()

    admin = fleet.settings.admin

    async def background() -> None:
        await asyncio.gather(
            revocation_loop(fleet.background_round, fleet.crl_directory, interval, responder,
                            keys),
            summary_loop(fleet.store.latest_summary, fleet.refresh_summary, fleet.clock,
                         admin.summary_interval, fleet.settings.home / "run"))

    apps: dict[str, ASGIApp] = {"https": enrollment, "proxy": enrollment,
                                "revocation": revocation, "admin": administration}
    return WorkerApps(apps, background, direct={"revocation": DirectRoute(
        ocsp.prefix, MAX_OCSP_REQUEST_BYTES, answer_ocsp)})


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
    if not os.environ.get(source.env) and source.file is not None and not source.file.exists():
        # The embedded default needs no manual step; production sets the env var instead
        # (docs/operations.md), so the passphrase and the keys are not on the same disk.
        write_private_file(source.file, secrets.token_urlsafe(32).encode("ascii"))
        source.file.parent.chmod(0o700)
        created.append(str(source.file))
    settings.key_directory.mkdir(parents=True, exist_ok=True)
    settings.key_directory.chmod(0o700)
    return created


__all__ = ["DEFAULT_PASSPHRASE_ENV", "Fleet", "asgi_app", "open_fleet", "prepare_home",
           "worker_apps"]
