"""The composition of `fleetpki serve`: the protocol front ends, their handlers, the admin app
and what each worker process runs, built from a Fleet (wiring.py).

Kept apart from wiring.py because only `serve` needs it: the front ends bring the web
frameworks and pyasn1's modules (CMP's alone take most of a second to import), and every
other CLI command opens a Fleet without them. A new protocol is one folder under
`protocols/` and one line in `asgi_app` here.
"""

from __future__ import annotations

import asyncio
import time

from cryptography import x509
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.types import ASGIApp

from fleetpki.acme_setup import AcmeParts
from fleetpki.acme_setup import acme_server as build_acme_server
from fleetpki.admin_operations import FleetOperations
from fleetpki.ca.keyfiles import load_key_file
from fleetpki.cmp_identity import cmp_files, load_cmp_identity
from fleetpki.inventory.app import admin_app as build_admin_app
from fleetpki.inventory.context import AdminContext
from fleetpki.metrics.collector import FleetCollector
from fleetpki.metrics.http import (
    MetricsEndpoint,
    RequestTimer,
    by_last_segment,
    by_prefix,
    with_endpoint,
)
from fleetpki.metrics.registry import process_metrics, scrape_registry
from fleetpki.ocsp_identity import ResponderFiles
from fleetpki.protocols.acme.server import AcmeServer
from fleetpki.protocols.cmp.handler import CmpHandler, CmpSettings
from fleetpki.protocols.cmp.protection import IterationBounds
from fleetpki.protocols.cmp.server import CmpServer
from fleetpki.protocols.est.handler import OPERATIONS as EST_OPERATIONS
from fleetpki.protocols.est.server import PREFIX as EST_PREFIX
from fleetpki.protocols.est.server import EstServer, ProxyTrust
from fleetpki.protocols.http_adapter import client_gone_quietly
from fleetpki.protocols.key_delivery import KeyGenerationAuthority
from fleetpki.protocols.scep.handler import ScepHandler, ScepSettings
from fleetpki.protocols.scep.server import ScepServer
from fleetpki.ra.api_tokens import TokenAuthenticator
from fleetpki.ra.certificate_retrieval import CertificateRetrieval
from fleetpki.ra.self_revocation import SelfRevocation
from fleetpki.ra.shared_secrets import SharedSecrets
from fleetpki.ra.transactions import TransactionalEnrollment
from fleetpki.revocation.crl_http import CrlFiles
from fleetpki.revocation.ocsp_http import MAX_REQUEST_BYTES as MAX_OCSP_REQUEST_BYTES
from fleetpki.revocation.ocsp_http import OcspEndpoint, ocsp_app
from fleetpki.revocation_runtime import revocation_loop
from fleetpki.scep_identity import load_identity, ra_files
from fleetpki.server_identity import ServerCredentials
from fleetpki.service_certificates import following_rollover
from fleetpki.serving.direct import DirectRequest, DirectResponse, DirectRoute
from fleetpki.serving.workers import WorkerApps
from fleetpki.summary_runtime import summary_loop
from fleetpki.wiring import Fleet


def scep_handler(fleet: Fleet, crls: CrlFiles) -> ScepHandler:
    passphrase = fleet.settings.passphrase.read()
    directory = fleet.settings.home / "scep"
    identity = following_rollover(lambda issuer: ra_files(directory, issuer),
                                  lambda issuer: load_identity(directory, issuer, passphrase))
    scep = fleet.settings.scep
    return ScepHandler(
        fleet.enrollment, TransactionalEnrollment(fleet.enrollment, fleet.store, fleet.clock),
        CertificateRetrieval(fleet.store, fleet.enrollment.identify, crls.published),
        identity, ScepSettings(fleet.scep_default_profile, scep.max_clock_skew,
                               scep.accept_single_des), fleet.clock.now)


def cmp_handler(fleet: Fleet, crls: CrlFiles) -> CmpHandler:
    passphrase = fleet.settings.passphrase.read()
    directory = fleet.settings.home / "cmp"
    identity = following_rollover(
        lambda issuer: cmp_files(directory, issuer),
        lambda issuer: load_cmp_identity(directory, issuer, passphrase))
    settings = fleet.settings.cmp
    secrets = SharedSecrets(fleet.store, fleet.secret_deriver)
    revocation = SelfRevocation(fleet.enrollment.identify, fleet.revocations)
    return CmpHandler(
        fleet.enrollment, TransactionalEnrollment(fleet.enrollment, fleet.store, fleet.clock),
        revocation, secrets.secret_for, identity,
        lambda issuer: crls.published(f"/crl/{issuer}.crl"),
        CmpSettings(settings.max_clock_skew,
                    IterationBounds(settings.mac_min_iterations, settings.mac_max_iterations),
                    fleet.secret_deriver.subkey("cmp nonces")),
        fleet.clock.now)


def acme_server(fleet: Fleet) -> AcmeServer:
    return build_acme_server(AcmeParts(
        fleet.store, fleet.issuance, fleet.profiles, fleet.clock, fleet.settings.acme,
        fleet.secret_deriver, fleet.enrollment.identify, fleet.revocations,
        str(fleet.settings.settings_file)))


def admin_app(fleet: Fleet) -> FastAPI:
    """The admin listener's application: REST API and dashboard."""
    context = AdminContext(reader=fleet.store, operations=FleetOperations(fleet),
                           profiles=fleet.profiles, clock=fleet.clock,
                           max_body_bytes=fleet.settings.admin.max_body_bytes)
    return build_admin_app(context)


def est_key_authority(fleet: Fleet) -> KeyGenerationAuthority | None:
    """The serve command's TLS certificate and key, which sign the key packages of EST
    server-side key generation with additional encryption; None until serve has made them
    (such requests are then refused)."""
    files = ServerCredentials.in_directory(fleet.server_directory)
    if not (files.chain_file.exists() and files.key_file.exists()):
        return None
    leaf = x509.load_pem_x509_certificates(files.chain_file.read_bytes())[0]
    return KeyGenerationAuthority(leaf, load_key_file(files.key_file,
                                                      fleet.settings.passphrase.read()))


def asgi_app(fleet: Fleet, scep: ScepServer | None = None, cmp: CmpServer | None = None
             ) -> Starlette:
    """Every enrollment protocol on one ASGI app. A new protocol is one more line here."""
    proxies = fleet.settings.server.trusted_proxies
    routes = EstServer(fleet.enrollment, ProxyTrust(proxies) if proxies else None,
                       est_key_authority(fleet)).routes()
    crls = CrlFiles(fleet.crl_directory, fleet.clock)
    scep = scep or ScepServer(scep_handler(fleet, crls))
    cmp = cmp or CmpServer(cmp_handler(fleet, crls))
    app = Starlette(routes=[*routes, *scep.routes(), *cmp.routes(),
                            *acme_server(fleet).routes()])
    # No protocol here has paths ending in '/': a trailing slash is a wrong path (404), not a
    # redirect whose Location would repeat whatever Host header the client sent.
    app.router.redirect_slashes = False
    return app


def worker_apps(fleet: Fleet) -> WorkerApps:
    """What each `fleetpki serve` worker runs: enrollment on the HTTPS (and proxy) listener,
    CRLs and OCSP on the plain-HTTP one, the admin API with /metrics, and the background loops.
    Every listener's requests are timed (docs/metrics.md)."""
    metrics = process_metrics()  # after the fork: this worker's own (metrics/process.py)
    timed = metrics.request_seconds
    crls = CrlFiles(fleet.crl_directory, fleet.clock)
    scep = ScepServer(scep_handler(fleet, crls))
    cmp = CmpServer(cmp_handler(fleet, crls))
    est_routes = by_last_segment(EST_PREFIX, [operation.name for operation in EST_OPERATIONS],
                                 "other")
    enrollment = RequestTimer(client_gone_quietly(asgi_app(fleet, scep, cmp)), timed, "est",
                              est_routes)
    responder, keys = fleet.ocsp_responder()
    ocsp = OcspEndpoint(responder)
    # OCSP first, as a bare ASGI app: it is the busiest thing a PKI serves, and Starlette's
    # router would cost a quarter of each answer. Everything else falls through to the CRLs.
    # SCEP and CMP protect their own messages, and routers speak them over plain HTTP: they
    # are served here too (docs/protocols.md). Most OCSP GETs and POSTs skip ASGI altogether
    # (serving/direct.py); the app answers the rest (other methods, pipelined requests).
    revocation_routes = by_prefix([("/ocsp", "ocsp"), ("/crl", "crl"), ("/scep", "scep"),
                                   ("/.well-known/cmp", "cmp")], "other")
    revocation = RequestTimer(client_gone_quietly(ocsp_app(ocsp, fallback=Starlette(
        routes=[*crls.routes(), *scep.routes(), *cmp.routes()]))), timed, "revocation",
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
        with_endpoint("/metrics", scrape, admin_app(fleet)), timed, "admin",
        by_prefix([("/metrics", "metrics"), ("/api", "api"), ("/static", "static")],
                  "dashboard"))
    interval = fleet.settings.revocation.check_interval.total_seconds()

    admin = fleet.settings.admin

    async def background() -> None:
        try:
            await asyncio.gather(
                revocation_loop(fleet.background_round, fleet.crl_directory, interval,
                                responder, keys),
                summary_loop(fleet.store.latest_summary, fleet.refresh_summary, fleet.clock,
                             admin.summary_interval, fleet.settings.home / "run"))
        finally:  # cancelled once the servers have stopped: the worker is about to exit
            fleet.release_serials()

    apps: dict[str, ASGIApp] = {"https": enrollment, "proxy": enrollment,
                                "revocation": revocation, "admin": administration}
    return WorkerApps(apps, background, direct={"revocation": DirectRoute(
        ocsp.prefix, MAX_OCSP_REQUEST_BYTES, answer_ocsp)})


__all__ = ["acme_server", "admin_app", "asgi_app", "cmp_handler", "est_key_authority",
           "scep_handler", "worker_apps"]
