"""Composition of the ACME server: the RA's ACME service over the store, and the front end
over it. Called by serve_wiring.py, from the Fleet that owns the store, the issuance service
and the settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from fleetpki.acme_settings import AcmeSettings, acme_profiles, default_acme_profile
from fleetpki.core.clock import Clock
from fleetpki.core.profile import Profile
from fleetpki.core.records import IssuedCertificate
from fleetpki.protocols.acme.challenges import ValidationSettings
from fleetpki.protocols.acme.handler import AcmeHandler
from fleetpki.protocols.acme.nonces import NonceMint
from fleetpki.protocols.acme.requests import RequestVerifier
from fleetpki.protocols.acme.server import AcmeServer, blocking
from fleetpki.protocols.acme.service_api import AcmeServices
from fleetpki.ra.acme.accounts import AccountService
from fleetpki.ra.acme.authorizations import AuthorizationService
from fleetpki.ra.acme.certificates import AcmeCertificates
from fleetpki.ra.acme.identifiers import normalised
from fleetpki.ra.acme.orders import OrderService, OrderTiming
from fleetpki.ra.acme.replay import SpentNonces
from fleetpki.ra.api import Authorization
from fleetpki.ra.self_revocation import Revoker
from fleetpki.ra.service import IssuanceService
from fleetpki.ra.shared_secrets import SecretDeriver
from fleetpki.store.sql.store import SqlStore


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeParts:
    store: SqlStore
    issuance: IssuanceService
    profiles: Mapping[str, Profile]
    clock: Clock
    settings: AcmeSettings
    deriver: SecretDeriver
    identify: Callable[[bytes], IssuedCertificate]
    desk: Callable[[Authorization], Revoker]
    settings_file: str


def validation_settings(settings: AcmeSettings) -> ValidationSettings:
    validation = settings.validation
    timeout = validation.timeout.total_seconds()
    return ValidationSettings(
        hosts=dict(validation.hosts), http_port=validation.http_port,
        tls_alpn_port=validation.tls_alpn_port,
        resolver=(validation.resolver.host, validation.resolver.port)
        if validation.resolver else None,
        timeout=timeout, total_timeout=max(3 * timeout, 30.0))


def acme_server(parts: AcmeParts) -> AcmeServer:
    settings = parts.settings
    accounts = AccountService(parts.store, parts.deriver, parts.clock,
                              eab_required=settings.eab_required,
                              per_account=settings.per_account)
    mint = NonceMint(parts.deriver.subkey("acme nonces"),
                     lifetime=settings.nonce_lifetime.total_seconds())
    services = AcmeServices(
        accounts=accounts,
        orders=OrderService(parts.store, parts.issuance, parts.profiles, parts.clock,
                            OrderTiming(settings.order_lifetime,
                                        settings.authorization_lifetime),
                            per_identifier=settings.orders_per_identifier),
        authorizations=AuthorizationService(parts.store, parts.clock),
        certificates=AcmeCertificates(parts.store, parts.profiles, parts.clock, parts.identify,
                                      parts.desk),
        normalise=normalised,
        nonces=RequestVerifier(mint, SpentNonces(parts.store), accounts),
        mint=mint)
    handler = AcmeHandler(services, validation_settings(settings), blocking)
    return AcmeServer(handler, acme_profiles(parts.profiles),
                      default_acme_profile(parts.profiles, settings, parts.settings_file))
