"""An OCSP responder (RFC 6960) on the RFC 5019 lightweight profile, with no network in it.

`OcspResponder.respond` takes the DER of an OCSPRequest and returns the DER of the OCSPResponse
together with what an HTTP layer needs for its cache headers; ocsp_http.py puts it on the wire.

- One CertID per request (RFC 5019 §2.1.1), matched to an issuing CA by issuerNameHash and
  issuerKeyHash under SHA-1, SHA-256, SHA-384 or SHA-512. A CA this responder does not serve
  gets `unauthorized` (RFC 6960 §2.3); anything unparsable gets `malformedRequest`. A request's
  signature is ignored (RFC 5019 §2.1.2 lets a responder do so).
- Each issuing CA has a delegated responder (RFC 6960 §4.2.2.2) that signs its answers, named
  by key hash (RFC 5019 §2.2.3), its certificate included so that clients can check the
  delegation without fetching anything.
- Status comes from a `StatusSource` on every request, so a revocation shows at once. Answers
  to nonce-free requests are kept pre-signed, with the status they state (revocation time and
  reason): a kept answer is served only while the source still reports that very status, so a
  kept "good" is never served for a revoked certificate. They are signed again once half their
  validity has passed, well before their nextUpdate (RFC 5019 §4, §6.2: clients and HTTP
  caches may hold them until then). Kept answers are found by the request's own bytes: a hit
  costs one dict lookup and one status lookup, and no parsing (a nonce-free request's bytes
  determine its CertID, hence its issuer and serial).
- A nonce (RFC 8954, RFC 6960 §4.4.1) is echoed in an answer signed for that request only.

`respond` never raises: whatever goes wrong inside becomes `internalError`, logged without the
request's bytes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from fleetpki.core import der
from fleetpki.core.clock import Clock
from fleetpki.core.keys import signature_hash
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import RevocationStatus

__all__ = [
    "CERT_ID_HASHES",
    "INTERNAL_ERROR",
    "MALFORMED_REQUEST",
    "MAX_NONCE_OCTETS",
    "UNAUTHORIZED",
    "OcspAnswer",
    "OcspResponder",
    "ResponderKey",
    "StatusSource",
]

log = logging.getLogger(__name__)

# RFC 8954 §2.1: Nonce ::= OCTET STRING (SIZE(1..32)); longer ones are refused as malformed.
MAX_NONCE_OCTETS = 32
# The CertID hashes accepted (RFC 5019 §2.1.1 requires SHA-1; the SHA-2 family is what newer
# clients send). Change this tuple first to accept another: the issuer index is built from it.
CERT_ID_HASHES: tuple[hashes.HashAlgorithm, ...] = (
    hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512())  # noqa: S303 - an identifier
_CERT_ID_HASH_NAMES = frozenset(algorithm.name for algorithm in CERT_ID_HASHES)


class StatusSource(Protocol):
    """Where the responder learns a certificate's status (the SQL store implements it)."""

    def certificate_status(self, issuer: str, serial: int) -> RevocationStatus | None:
        """The status of ``serial`` as issued by the CA named ``issuer``; None if that CA
        never issued it."""
        ...


@dataclasses.dataclass(frozen=True)
class ResponderKey:
    """The delegated responder of one issuing CA (RFC 6960 §4.2.2.2): a certificate issued by
    that CA with the OCSPSigning extended key usage (and, so that clients need not ask about
    the responder itself, id-pkix-ocsp-nocheck, §4.2.2.2.1), and its private key."""

    issuer: str  # the CA's name in the store
    issuer_certificate: x509.Certificate
    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class OcspAnswer:
    """An encoded OCSPResponse and the times an HTTP layer turns into cache headers."""

    der: bytes
    this_update: dt.datetime | None  # None for error responses
    next_update: dt.datetime | None
    cacheable: bool  # False for nonce'd and error responses


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> OcspAnswer:
    """RFC 6960 §4.2.1: an error is an OCSPResponse with a responseStatus and nothing else."""
    response = ocsp.OCSPResponseBuilder.build_unsuccessful(status)
    return OcspAnswer(response.public_bytes(Encoding.DER), None, None, cacheable=False)


MALFORMED_REQUEST = _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
INTERNAL_ERROR = _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)
UNAUTHORIZED = _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)


@dataclasses.dataclass(frozen=True, slots=True)
class _Issuer:
    name: str
    builder: ocsp.OCSPResponseBuilder  # responderID and certs already set
    private_key: CertificateIssuerPrivateKeyTypes
    signature_hash: hashes.HashAlgorithm | None


# What an answer states about a certificate: None for "never issued", else (revoked_at,
# reason), both None while it is good. Any change of status changes the fingerprint.
_Fingerprint = tuple[dt.datetime | None, RevocationReason | None] | None


def _fingerprint(status: RevocationStatus | None) -> _Fingerprint:
    return None if status is None else (status.revoked_at, status.reason)


@dataclasses.dataclass(frozen=True, slots=True)
class _Kept:
    """A pre-signed answer to one nonce-free request, and what it was signed for."""

    issuer: str
    serial: int
    fingerprint: _Fingerprint
    answer: OcspAnswer
    this_update: dt.datetime
    refresh_after: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class _State:
    """What replace_responders swaps in one assignment: requests under way finish with the
    responders they started with, and never see an answer signed by another."""

    issuers: dict[tuple[str, bytes, bytes], _Issuer]  # (hash name, name hash, key hash)
    kept: dict[bytes, _Kept]  # by request DER; insertion order is age order


class _Malformed(Exception):
    pass


class OcspResponder:
    def __init__(self, source: StatusSource, responders: Sequence[ResponderKey], clock: Clock,
                 *, validity: dt.timedelta = dt.timedelta(days=1),
                 max_cached: int = 50_000) -> None:
        """``validity`` is nextUpdate - thisUpdate; answers are signed again after half of it.
        ``max_cached`` bounds the pre-signed answers kept (the oldest go first); an answer
        with its key takes about 1 KB, so the default holds about 50 MB per process."""
        if validity < dt.timedelta(seconds=2):
            raise ValueError("an OCSP validity period must be at least 2 seconds")
        if max_cached < 0:
            raise ValueError("max_cached cannot be negative")
        self._source = source
        self._clock = clock
        self._validity = validity
        self._refresh_after = validity / 2
        self._max_cached = max_cached
        self._lock = threading.Lock()  # for writers of the cache only; readers need none
        self._state = _State(_index(responders, clock.now()), {})

    @property
    def clock(self) -> Clock:
        """The clock answers are dated by (the HTTP layer computes max-age from it)."""
        return self._clock

    def replace_responders(self, responders: Sequence[ResponderKey]) -> None:
        """Serve with new responder keys from the next request on (responder-certificate
        rollover). Kept answers are dropped: they carry the old responder's certificate."""
        self._state = _State(_index(responders, self._clock.now()), {})

    def respond(self, request_der: bytes) -> OcspAnswer:
        """The answer to one DER OCSPRequest. Never raises."""
        try:
            return self._respond(request_der)
        except _Malformed:
            return MALFORMED_REQUEST
        except Exception:
            # Never the request bytes in the log: they are the client's, and may be anything.
            log.exception("OCSP request failed; answered internalError",
                          extra={"request_length": len(request_der)})
            return INTERNAL_ERROR

    def _respond(self, request_der: bytes) -> OcspAnswer:
        state = self._state
        kept = state.kept.get(request_der)
        known: RevocationStatus | None = None
        if kept is not None:
            known = self._source.certificate_status(kept.issuer, kept.serial)
            now = self._clock.now()
            if (_fingerprint(known) == kept.fingerprint
                    and kept.this_update <= now < kept.refresh_after):
                return kept.answer
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            # Raises UnsupportedAlgorithm for hashes cryptography does not know (MD5, ...).
            algorithm = request.hash_algorithm
            extensions = request.extensions
        except (ValueError, NotImplementedError, UnsupportedAlgorithm):
            # NotImplementedError: more than one CertID (RFC 5019 §2.1.1 allows one).
            return MALFORMED_REQUEST
        issuer = state.issuers.get(
            (algorithm.name, request.issuer_name_hash, request.issuer_key_hash))
        if issuer is None:
            if algorithm.name not in _CERT_ID_HASH_NAMES:
                return MALFORMED_REQUEST
            return UNAUTHORIZED  # RFC 6960 §2.3: not a CA this responder answers for
        nonce = _nonce(extensions) if len(extensions) else None
        serial = request.serial_number
        # The same bytes name the same issuer and serial: a kept answer's status, just read,
        # is the one to sign now that the answer has changed or aged.
        status = known if kept is not None else self._source.certificate_status(
            issuer.name, serial)
        answer = self._sign(issuer, request, algorithm, status, self._clock.now(), nonce)
        if nonce is None and self._max_cached and answer.this_update is not None:
            self._keep(state, request_der, _Kept(
                issuer.name, serial, _fingerprint(status), answer, answer.this_update,
                answer.this_update + self._refresh_after))
        return answer

    def _sign(self, issuer: _Issuer, request: ocsp.OCSPRequest,
              algorithm: hashes.HashAlgorithm, status: RevocationStatus | None,
              now: dt.datetime, nonce: bytes | None) -> OcspAnswer:
        this_update = now.replace(microsecond=0)
        next_update = this_update + self._validity
        revoked_at: dt.datetime | None = None
        reason: x509.ReasonFlags | None = None
        if status is None:
            cert_status = ocsp.OCSPCertStatus.UNKNOWN
        elif status.revoked_at is None:
            # Also for an expired certificate: its true status, nothing invented.
            cert_status = ocsp.OCSPCertStatus.GOOD
        else:
            cert_status = ocsp.OCSPCertStatus.REVOKED
            revoked_at = status.revoked_at.replace(microsecond=0)
            # RFC 5280 §5.3.1, as for CRLs: no reason rather than 'unspecified'.
            if status.reason not in (None, RevocationReason.unspecified):
                reason = status.reason.x509_flag
        # The CertID is echoed as asked, in the request's own hash (RFC 6960 §4.2.1).
        builder = issuer.builder.add_response_by_hash(
            request.issuer_name_hash, request.issuer_key_hash, request.serial_number,
            algorithm, cert_status, this_update, next_update, revoked_at, reason)
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(issuer.private_key, issuer.signature_hash)
        return OcspAnswer(response.public_bytes(Encoding.DER), this_update, next_update,
                          cacheable=nonce is None)

    def _keep(self, state: _State, request_der: bytes, kept: _Kept) -> None:
        answers = state.kept
        with self._lock:
            answers.pop(request_der, None)  # a re-signed answer becomes the newest
            while len(answers) >= self._max_cached:
                del answers[next(iter(answers))]
            answers[bytes(request_der)] = kept


def _nonce(extensions: x509.Extensions) -> bytes | None:
    """The request's nonce (RFC 8954), if any. An unknown critical extension is refused
    (RFC 6960 §4.4: only non-critical unrecognised extensions may be ignored)."""
    nonce = None
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
            if not 1 <= len(nonce) <= MAX_NONCE_OCTETS:
                raise _Malformed()
        elif extension.critical:
            raise _Malformed()
    return nonce


def _index(responders: Sequence[ResponderKey], now: dt.datetime
           ) -> dict[tuple[str, bytes, bytes], _Issuer]:
    """Checks each responder key (it must be able to sign answers clients accept) and indexes
    its CA by the CertID hashes of every accepted algorithm. Any key refused: ValueError, and
    nothing changes."""
    if not responders:
        # A fleet with no issuing CA yet: serve, and say why every request is refused.
        log.warning("no OCSP responder keys: every request is answered 'unauthorized'")
    index: dict[tuple[str, bytes, bytes], _Issuer] = {}
    names: set[str] = set()
    for responder in responders:
        _check(responder, now)
        if responder.issuer in names:
            raise ValueError(f"two OCSP responder keys for the CA '{responder.issuer}'")
        names.add(responder.issuer)
        issuer = _Issuer(
            responder.issuer,
            ocsp.OCSPResponseBuilder()
            .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
            .certificates([responder.certificate]),
            responder.private_key, signature_hash(responder.private_key))
        name_der, key_bits = _issuer_name_and_key(responder.issuer_certificate)
        for algorithm in CERT_ID_HASHES:
            key = (algorithm.name, _digest(algorithm, name_der), _digest(algorithm, key_bits))
            if key in index:
                raise ValueError(f"the CAs '{index[key].name}' and '{responder.issuer}' have "
                                 "the same name and key")
            index[key] = issuer
    return index


def _check(responder: ResponderKey, now: dt.datetime) -> None:
    """RFC 6960 §4.2.2.2: a delegated responder's certificate is issued directly by the CA it
    answers for and carries id-kp-OCSPSigning; otherwise clients reject every answer."""
    certificate = responder.certificate
    what = f"the OCSP responder certificate of '{responder.issuer}'"
    try:
        certificate.verify_directly_issued_by(responder.issuer_certificate)
    except (ValueError, TypeError, InvalidSignature) as error:
        raise ValueError(f"{what} is not issued by that CA: {error}") from None
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
        raise ValueError(f"{what} lacks the OCSPSigning extended key usage")
    if responder.private_key.public_key() != certificate.public_key():
        raise ValueError(f"{what} does not match its private key")
    if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
        raise ValueError(f"{what} is not valid now (valid from "
                         f"{certificate.not_valid_before_utc} to "
                         f"{certificate.not_valid_after_utc})")


def _issuer_name_and_key(certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """RFC 6960 §4.1.1: what issuerNameHash and issuerKeyHash hash: the DER of the CA's subject
    as it stands in its certificate, and the value of its subjectPublicKey BIT STRING (without
    tag, length and unused-bits octet). Read from the certificate's own bytes, not re-encoded."""
    fields = der.elements(certificate.tbs_certificate_bytes)
    first = 1 if fields[0][0] == 0xA0 else 0  # [0] EXPLICIT version, absent in v1
    subject, public_key_info = fields[first + 4], fields[first + 5]
    bits = der.content(der.elements(public_key_info)[1])
    return subject, bits[1:]


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()
