"""Factory identities (IDevID, IEEE 802.1AR): which manufacturer CAs we trust, for what.

A device leaves the factory with a certificate from its maker's CA. Registering that CA maps
every device it signed to one profile (group enrollment, as cloud provisioning services do);
an allow list narrows it to the device ids the buyer actually received.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.core.clock import Clock
from fleetpki.core.enrollment_records import ManufacturerCA
from fleetpki.core.errors import BadInput, NotAuthorized, NotFound
from fleetpki.core.names import SUBJECT_ATTRIBUTES
from fleetpki.core.profile import Profile
from fleetpki.store.api import AuditEvent, ManufacturerRegistry

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ManufacturerAdmin:
    def __init__(self, store: ManufacturerRegistry, profiles: Mapping[str, Profile],
                 clock: Clock, actor: str) -> None:
        self._store = store
        self._profiles = profiles
        self._clock = clock
        self._actor = actor

    def add(self, name: str, certificate_pem: bytes, profile: str, *,
            device_id_from: str = "serialNumber", allow_list: bool = False) -> ManufacturerCA:
        if not _NAME.match(name):
            raise BadInput(f"manufacturer name '{name}' must be 1-64 lower-case letters, "
                           "digits, '-' or '_'")
        if profile not in self._profiles:
            raise NotFound(f"no profile named '{profile}' (profiles: "
                           f"{', '.join(sorted(self._profiles))})")
        if device_id_from not in SUBJECT_ATTRIBUTES:
            raise BadInput(f"--device-id-from must be a subject attribute "
                           f"({', '.join(sorted(SUBJECT_ATTRIBUTES))})")
        certificate = _load_ca_certificate(certificate_pem)
        now = self._clock.now()
        record = ManufacturerCA(
            name=name, certificate_der=certificate.public_bytes(serialization.Encoding.DER),
            profile=profile, device_id_from=device_id_from, allow_list=allow_list,
            created_at=now)
        self._store.add_manufacturer(record, AuditEvent(
            actor=self._actor, action="manufacturer.added", subject=name,
            details={"profile": profile, "ca_subject": certificate.subject.rfc4514_string(),
                     "allow_list": str(allow_list).lower()}), at=now)
        return record

    def allow(self, name: str, device_ids: Sequence[str]) -> int:
        now = self._clock.now()
        return self._store.allow_devices(name, device_ids, AuditEvent(
            actor=self._actor, action="manufacturer.allowed", subject=name,
            details={"count": str(len(device_ids))}), at=now)


def _load_ca_certificate(data: bytes) -> x509.Certificate:
    try:
        certificate = (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
                       else x509.load_der_x509_certificate(data))
    except ValueError as exc:
        raise BadInput(f"not a certificate (PEM or DER): {exc}") from None
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.value.ca:
        raise BadInput("this certificate is not a CA (basicConstraints CA:TRUE missing): "
                       "register the CA that signs the devices' factory certificates")
    return certificate


def factory_device_id(device: x509.Certificate, manufacturer: ManufacturerCA,
                      now: dt.datetime) -> str:
    """The device id a manufacturer-signed certificate names, once its validity is checked.

    The TLS layer accepts expired client certificates (so that renewal grace can work), so
    validity is enforced here. IEEE 802.1AR IDevIDs often carry notAfter 9999-12-31, which
    passes."""
    if not device.not_valid_before_utc <= now <= device.not_valid_after_utc:
        raise NotAuthorized(f"the factory certificate is outside its validity "
                            f"({device.not_valid_before_utc:%Y-%m-%d} to "
                            f"{device.not_valid_after_utc:%Y-%m-%d})")
    values = device.subject.get_attributes_for_oid(SUBJECT_ATTRIBUTES[manufacturer.device_id_from])
    if not values or not isinstance(values[0].value, str) or not values[0].value:
        raise NotAuthorized(f"the factory certificate has no subject "
                            f"{manufacturer.device_id_from} to identify the device by")
    return values[0].value
