"""CMP without I/O (RFC 9810, Lightweight CMP Profile RFC 9483, HTTP transfer RFC 6712): one
POSTed PKIMessage in, one PKIMessage out.

    check the header      pvno, transactionID, senderNonce, messageTime, recipient
    check the protection  MAC keyed with a bootstrap credential's secret (senderKID names it),
                          or a signature by the first extraCerts certificate
    dispatch              ir/cr/kur/p10cr -> the RA (a new transaction each), certConf,
                          pollReq, rr (the device revokes its own certificate), genm
    answer                protected as the request was: MAC with the same secret, or signed
                          with the CMP server certificate of the profile's issuing CA

The RA decides who may have what: the handler hands it the credential (id and secret after
the MAC checked out, or the signer's certificate) and a CSR-shaped request whose proof of
possession it checked itself (CRMF signature POP, RFC 4211 §4.1).

Replay: a certificate request must start a new transaction (the RA stores transactionIDs);
certConf and pollReq must carry as recipNonce a nonce this server made for that very
transaction, which it recognises by an HMAC tag in the nonce, with no state kept between
messages. A replayed rr or genm changes nothing.

`handle` is synchronous and may block on the RA: an asynchronous caller runs it off its loop.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fleetpki.core import der
from fleetpki.core.csr import unsigned_request
from fleetpki.core.errors import FleetPKIError, NotFound
from fleetpki.core.profile import Profile
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.protocols.cmp import general
from fleetpki.protocols.cmp.asn1 import DIGESTS, FailInfo, Malformed, PkiStatus, status_info
from fleetpki.protocols.cmp.codec import (
    NULL_DN,
    REPLY_TO,
    REQUESTS,
    CertificateRequest,
    CmpRejected,
    CmpRequest,
    cert_rep,
    cert_response,
    decode_request,
    pkiconf,
    poll_reply,
    revocation_reply,
)
from fleetpki.protocols.cmp.errors import to_fail_info
from fleetpki.protocols.cmp.exchange import (
    Auth,
    CmpCall,
    CmpIdentity,
    CmpReply,
    Exchange,
    MacAuth,
    SignedAuth,
    transaction_of,
)
from fleetpki.protocols.cmp.protection import (
    IterationBounds,
    ProtectionError,
    is_mac,
    read_mac,
    verify_signature,
)
from fleetpki.protocols.cmp.replies import CONTENT_TYPE, Replies, text
from fleetpki.protocols.key_delivery import (
    for_certificate,
    for_password,
    signed_key_package,
)
from fleetpki.ra.api import (
    BasicCredentials,
    Enrolled,
    EnrollmentKind,
    EnrollmentPending,
    EnrollmentRequest,
    Transaction,
)

__all__ = ["CONTENT_TYPE", "PREFIX", "CmpCall", "CmpHandler", "CmpIdentity", "CmpReply",
           "CmpSettings"]

log = logging.getLogger(__name__)

PREFIX = "/.well-known/cmp"
MAX_MESSAGE_BYTES = 64 * 1024
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_REASONS = {0: RevocationReason.unspecified, 1: RevocationReason.key_compromise,
            3: RevocationReason.affiliation_changed, 4: RevocationReason.superseded,
            5: RevocationReason.cessation_of_operation, 6: RevocationReason.certificate_hold,
            2: RevocationReason.ca_compromise, 9: RevocationReason.privilege_withdrawn,
            10: RevocationReason.aa_compromise}


class CmpAuthority(Protocol):
    """What the CMP front end asks of the RA (DESIGN.md §1: declared on the consumer's side)."""

    def profile_for(self, label: str | None) -> Profile: ...

    def ca_certificates(self, label: str | None) -> list[x509.Certificate]: ...

    def identify(self, client_certificate: bytes) -> IssuedCertificate: ...


class CmpTransactions(Protocol):
    def enroll(self, request: EnrollmentRequest, transaction: Transaction, *,
               retries: bool = True) -> Enrolled | EnrollmentPending: ...

    def poll(self, transaction: Transaction) -> Enrolled | EnrollmentPending: ...


class CmpRevocation(Protocol):
    def revoke_own(self, signer: bytes, serial: int, reason: RevocationReason
                   ) -> IssuedCertificate: ...

    def refused_by_device(self, record: IssuedCertificate) -> IssuedCertificate | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class CmpSettings:
    max_clock_skew: dt.timedelta | None  # messageTime tolerance (badTime); None: not checked
    iterations: IterationBounds  # accepted MAC iteration counts
    nonce_key: bytes = dataclasses.field(repr=False)  # tags the nonces this server makes


class CmpHandler:
    def __init__(self, authority: CmpAuthority, transactions: CmpTransactions,
                 revocation: CmpRevocation, secrets: Callable[[str], str | None],
                 identity: Callable[[str], CmpIdentity], crl: Callable[[str], bytes | None],
                 settings: CmpSettings, now: Callable[[], dt.datetime]) -> None:
        """`secrets`: a bootstrap credential's secret by id (ra/shared_secrets.py);
        `identity`: the CMP server certificate and key by issuing CA; `crl`: an issuing
        CA's current full CRL (DER) by name."""
        self._authority = authority
        self._transactions = transactions
        self._revocation = revocation
        self._secrets = secrets
        self._identity = identity
        self._crl = crl
        self._settings = settings
        self._now = now
        self._replies = Replies(settings.nonce_key, now)

    def handle(self, call: CmpCall) -> CmpReply:
        try:
            return self._handle(call)
        except Exception:
            log.exception("CMP request failed")
            return text(500, "the CMP server failed; the error is in its log")

    def _handle(self, call: CmpCall) -> CmpReply:
        if call.method != "POST":
            return text(405, "CMP messages are POSTed (RFC 6712 §3.3)", ("Allow", "POST"))
        if call.content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
            return text(415, f"send the PKIMessage as {CONTENT_TYPE} (RFC 6712 §3.4)")
        if call.body is None:
            return text(413, f"a CMP message may be at most {MAX_MESSAGE_BYTES} bytes")
        if call.label is not None and not _LABEL.match(call.label):
            return text(404, "no such CMP label")
        try:
            profile = self._authority.profile_for(call.label)
            chain = self._authority.ca_certificates(call.label)
        except NotFound as missing:
            return text(404, str(missing))
        exchange = Exchange(None, profile, call.label, self._identity(profile.issuer),
                             chain)
        try:
            request = decode_request(call.body)
        except Malformed as error:
            return self._replies.error(exchange, FailInfo.bad_data_format, str(error), status=400)
        except CmpRejected as rejected:
            return self._replies.error(dataclasses.replace(exchange, header=rejected.header),
                               rejected.fail, str(rejected))
        exchange = dataclasses.replace(exchange, header=request.header)
        try:
            self._check_header(request, exchange)
            exchange = dataclasses.replace(exchange, auth=self._authenticate(request))
            return self._dispatch(request, exchange, call.client_address)
        except CmpRejected as rejected:
            return self._replies.error(exchange, rejected.fail, str(rejected))
        except ProtectionError as bad:
            return self._replies.error(exchange, bad.fail, str(bad))
        except FleetPKIError as refusal:
            fail = to_fail_info(refusal, body_type=request.body_type)
            if fail is None:
                log.error("CMP request failed", extra={"error": str(refusal)})
                return self._replies.error(exchange, FailInfo.system_failure,
                                   "the server could not complete the request; try again later")
            return self._replies.error(exchange, fail, str(refusal))

    # -- checks ------------------------------------------------------------------------------

    def _check_header(self, request: CmpRequest, exchange: Exchange) -> None:
        header = request.header
        if header.pvno not in (2, 3):
            raise CmpRejected(FailInfo.unsupported_version, f"pvno {header.pvno}: this server "
                              "speaks CMP v2 (cmp2000) and v3 (cmp2021)")
        if header.transaction_id is None or not 16 <= len(header.transaction_id) <= 64:
            raise CmpRejected(FailInfo.bad_request, "transactionID must be 16-64 bytes "
                              "(RFC 9483 §3.1: 128 random bits)")
        if header.sender_nonce is None or not 16 <= len(header.sender_nonce) <= 64:
            raise CmpRejected(FailInfo.bad_sender_nonce, "senderNonce must be 16-64 bytes "
                              "(RFC 9483 §3.1: 128 random bits)")
        skew = self._settings.max_clock_skew
        if skew is not None and header.message_time is not None \
                and abs(header.message_time - self._now()) > skew:
            when = f"{header.message_time:%Y-%m-%d %H:%M:%S}"
            raise CmpRejected(FailInfo.bad_time, f"messageTime {when}Z is more than {skew} "
                              "away from the server's clock")
        allowed = {NULL_DN, exchange.identity.certificate.subject.public_bytes(),
                   exchange.chain[0].subject.public_bytes()}
        if header.recipient is not None and header.recipient not in allowed:
            raise CmpRejected(FailInfo.wrong_authority, "the recipient is neither this CA "
                              f"({exchange.chain[0].subject.rfc4514_string()}) nor its CMP "
                              "server; check the label or -recipient")
        if request.body_type in ("certConf", "pollReq") \
                and self._replies.transaction_kind(header) is None:
            raise CmpRejected(FailInfo.bad_recipient_nonce, "recipNonce is not the nonce of "
                              "this server's last reply in this transaction")

    def _authenticate(self, request: CmpRequest) -> Auth:
        header = request.header
        if header.protection_algorithm is None or request.protection is None:
            raise CmpRejected(FailInfo.bad_message_check, "the message is not protected: "
                              "protect it with a MAC (a bootstrap credential as senderKID) or "
                              "sign it")
        if is_mac(header.protection_algorithm):
            scheme = read_mac(header.protection_algorithm, header.protection_parameters,
                              self._settings.iterations)
            try:
                credential = (header.sender_kid or b"").decode("utf-8")
            except UnicodeDecodeError:
                credential = ""
            secret = self._secrets(credential) if credential else None
            if secret is None:  # the same answer for an unknown id and a wrong secret
                raise CmpRejected(FailInfo.bad_message_check, "the MAC does not verify with "
                                  "any bootstrap credential named by senderKID")
            if not scheme.verify(secret.encode("utf-8"), request.protected_part,
                                 request.protection):
                raise CmpRejected(FailInfo.bad_message_check, "the MAC does not verify with "
                                  "any bootstrap credential named by senderKID")
            return MacAuth(credential, secret, scheme)
        if not request.extra_certs:
            raise CmpRejected(FailInfo.bad_message_check, "a signed message must carry its "
                              "signer's certificate first in extraCerts (RFC 9483 §3.3)")
        try:
            signer = x509.load_der_x509_certificate(request.extra_certs[0])
            signer_key = signer.public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise CmpRejected(FailInfo.bad_message_check, "the first extraCerts certificate "
                              "or its key cannot be read") from None
        verify_signature(header.protection_algorithm, signer_key,
                         request.protected_part, request.protection, what="the protection")
        if header.sender is not None and header.sender != signer.subject.public_bytes():
            raise CmpRejected(FailInfo.bad_message_check, "sender is not the subject of the "
                              "certificate that signed the message (RFC 9483 §3.1)")
        return SignedAuth(request.extra_certs[0])

    # -- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, request: CmpRequest, exchange: Exchange, address: str) -> CmpReply:
        kind = request.body_type
        if kind in REQUESTS:
            return self._certificate_request(request, exchange, address)
        if kind == "certConf":
            return self._confirm(request, exchange)
        if kind == "pollReq":
            return self._poll(request, exchange)
        if kind == "rr":
            return self._revoke(request, exchange)
        context = general.GeneralContext(exchange.profile, exchange.chain,
                                         lambda: self._crl(exchange.profile.issuer))
        answers = general.answer(request.infos, context)
        return self._replies.reply(exchange, "genp", der.sequence(*answers))

    def _certificate_request(self, request: CmpRequest, exchange: Exchange,
                             address: str) -> CmpReply:
        kind = request.body_type
        if kind == "p10cr":
            assert request.p10 is not None
            csr, cert_req_id = request.p10, 0
        else:
            if len(request.certificate_requests) != 1:
                raise CmpRejected(FailInfo.bad_request, "send one certificate request per "
                                  "message (RFC 9483 §4.1)")
            wanted = request.certificate_requests[0]
            if kind == "kur":
                self._check_update(wanted, exchange.auth)
            if wanted.public_key is None:
                return self._central_key(request, wanted, exchange, address)
            csr, cert_req_id = self._crmf(wanted), wanted.cert_req_id
        enrollment = EnrollmentRequest(
            csr=csr, kind=EnrollmentKind.reenroll if kind == "kur" else EnrollmentKind.enroll,
            client_address=address, label=exchange.label,
            basic=BasicCredentials(exchange.auth.credential, exchange.auth.secret)
            if isinstance(exchange.auth, MacAuth) else None,
            client_certificate=exchange.auth.certificate
            if isinstance(exchange.auth, SignedAuth) else None,
            protocol="cmp", possession_proven=kind != "p10cr")
        outcome = self._transactions.enroll(enrollment, transaction_of(exchange),
                                            retries=False)
        return self._outcome(outcome, exchange, REPLY_TO[kind], cert_req_id, kind)

    def _central_key(self, request: CmpRequest, wanted: CertificateRequest,
                     exchange: Exchange, address: str) -> CmpReply:
        """RFC 9483 §4.1.6: the template has no public key; the RA makes the key (if the
        profile allows server-side key generation) and it goes back enveloped for the device
        (key_delivery.py). The request's CSR form carries a throwaway public key: only its
        names count."""
        self._check_template(wanted)
        signer = (x509.load_der_x509_certificate(exchange.auth.certificate)
                  if isinstance(exchange.auth, SignedAuth) else None)
        if signer is not None and not isinstance(
                signer.public_key(), ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CmpRejected(FailInfo.not_authorized, "a centrally generated key cannot be "
                              "encrypted to the key of the signing certificate: protect the "
                              "request with a MAC, or sign it with an EC or RSA certificate")
        placeholder = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        enrollment = EnrollmentRequest(
            csr=unsigned_request(wanted.subject or NULL_DN, placeholder, wanted.extensions),
            kind=EnrollmentKind.server_keygen, client_address=address, label=exchange.label,
            basic=BasicCredentials(exchange.auth.credential, exchange.auth.secret)
            if isinstance(exchange.auth, MacAuth) else None,
            client_certificate=exchange.auth.certificate
            if isinstance(exchange.auth, SignedAuth) else None,
            protocol="cmp", possession_proven=True,
            server_key_type=_key_type(wanted.key_algorithm))
        outcome = self._transactions.enroll(enrollment, transaction_of(exchange),
                                            retries=False)
        kind = request.body_type
        if not isinstance(outcome, Enrolled) or outcome.private_key_pkcs8 is None:
            raise CmpRejected(FailInfo.system_failure, "the key was not generated")
        package = signed_key_package(outcome.private_key_pkcs8, exchange.identity.certificate,
                                     exchange.identity.key)
        enveloped = (for_certificate(package, signer) if signer is not None else
                     for_password(package, exchange.auth.secret.encode())
                     if isinstance(exchange.auth, MacAuth) else None)
        content = cert_rep([cert_response(wanted.cert_req_id, status_info(PkiStatus.accepted),
                                          outcome.certificate.der, enveloped)])
        assert exchange.header is not None
        return self._replies.reply(exchange, REPLY_TO[kind], content, transaction_kind=kind,
                           implicit_confirm=exchange.header.implicit_confirm)

    @staticmethod
    def _check_template(wanted: CertificateRequest) -> None:
        if wanted.unsupported:
            raise CmpRejected(FailInfo.bad_cert_template, f"the template sets "
                              f"{', '.join(wanted.unsupported)}, which the CA decides")

    @staticmethod
    def _crmf(wanted: CertificateRequest) -> bytes:
        CmpHandler._check_template(wanted)
        # The template's issuer is a suggestion (RFC 4211 §5); OpenSSL fills in the issuer of
        # the signing certificate, a manufacturer CA for an IDevID. The profile decides.
        assert wanted.public_key is not None  # else central key generation
        possession = wanted.possession
        if possession is None or possession.kind != "signature":
            raise CmpRejected(FailInfo.bad_pop, "a signature proof of possession is required "
                              f"(got {possession.kind if possession else 'none'}; RFC 4211 §4.1)")
        if possession.signs_input:
            raise CmpRejected(FailInfo.bad_pop, "poposkInput is not accepted: put subject and "
                              "public key into the template and sign the CertRequest")
        try:
            key = serialization.load_der_public_key(wanted.public_key)
        except (ValueError, TypeError):
            raise CmpRejected(FailInfo.bad_cert_template, "the template's public key cannot be "
                              "read") from None
        try:
            verify_signature(possession.algorithm, key, wanted.signed_part,  # type: ignore[arg-type]
                             possession.signature, what="the proof of possession")
        except ProtectionError as bad:
            raise CmpRejected(FailInfo.bad_pop, str(bad)) from None
        return unsigned_request(wanted.subject or NULL_DN, wanted.public_key, wanted.extensions)

    @staticmethod
    def _check_update(wanted: CertificateRequest, auth: Auth) -> None:
        if not isinstance(auth, SignedAuth):
            raise CmpRejected(FailInfo.not_authorized, "a kur is signed with the certificate "
                              "it updates (RFC 9483 §4.1.3), not MAC-protected")
        if wanted.old_certificate is not None:
            signer = x509.load_der_x509_certificate(auth.certificate)
            issuer, serial = wanted.old_certificate
            if serial != signer.serial_number or (issuer is not None
                                                  and issuer != signer.issuer.public_bytes()):
                raise CmpRejected(FailInfo.bad_cert_id, "oldCertId names another certificate "
                                  "than the one that signed the kur")

    def _outcome(self, outcome: Enrolled | EnrollmentPending, exchange: Exchange, reply: str,
                 cert_req_id: int, kind: str) -> CmpReply:
        if isinstance(outcome, EnrollmentPending):
            content = cert_rep([cert_response(cert_req_id, status_info(
                PkiStatus.waiting, f"held for approval ({outcome.request_id}); poll"))])
            return self._replies.reply(exchange, reply, content, transaction_kind=kind)
        certificate = outcome.certificate
        ca_pubs = [exchange.chain[-1].public_bytes(serialization.Encoding.DER)] \
            if reply == "ip" and isinstance(exchange.auth, MacAuth) else []
        content = cert_rep([cert_response(cert_req_id, status_info(PkiStatus.accepted),
                                          certificate.der)], ca_pubs)
        assert exchange.header is not None
        return self._replies.reply(exchange, reply, content, transaction_kind=kind,
                           implicit_confirm=exchange.header.implicit_confirm)

    def _confirm(self, request: CmpRequest, exchange: Exchange) -> CmpReply:
        found = self._transactions.poll(transaction_of(exchange))
        if not isinstance(found, Enrolled):
            raise CmpRejected(FailInfo.bad_request, "no certificate was issued in this "
                              "transaction yet: poll for it first")
        record = found.certificate
        for confirmation in request.confirmations:
            if confirmation.cert_hash != _cert_hash(record.der, confirmation.hash_algorithm):
                raise CmpRejected(FailInfo.bad_cert_id, "certHash does not match the "
                                  "certificate issued in this transaction")
            if not confirmation.accepted:
                self._revocation.refused_by_device(record)
                log.info("certificate refused by the device", extra={
                    "serial": f"{record.serial:x}", "reason": confirmation.reason})
        return self._replies.reply(exchange, "pkiconf", pkiconf())

    def _poll(self, request: CmpRequest, exchange: Exchange) -> CmpReply:
        assert exchange.header is not None
        kind = self._replies.transaction_kind(exchange.header) or "ir"
        outcome = self._transactions.poll(transaction_of(exchange))
        cert_req_id = request.polled[0] if request.polled else 0
        if isinstance(outcome, EnrollmentPending):
            return self._replies.reply(exchange, "pollRep", poll_reply(
                cert_req_id, outcome.retry_after, "waiting for an operator's approval"),
                transaction_kind=kind)
        return self._outcome(outcome, exchange, REPLY_TO[kind], cert_req_id, kind)

    def _revoke(self, request: CmpRequest, exchange: Exchange) -> CmpReply:
        if not isinstance(exchange.auth, SignedAuth):
            raise CmpRejected(FailInfo.not_authorized, "an rr is signed with the certificate "
                              "to revoke (RFC 9483 §4.2), not MAC-protected")
        if len(request.revocations) != 1:
            raise CmpRejected(FailInfo.bad_request, "revoke one certificate per rr")
        details = request.revocations[0]
        if details.serial is None:
            raise CmpRejected(FailInfo.bad_cert_id, "the rr names no serialNumber")
        signer = x509.load_der_x509_certificate(exchange.auth.certificate)
        if details.issuer is not None and details.issuer != signer.issuer.public_bytes():
            raise CmpRejected(FailInfo.bad_cert_id, "the rr names another issuer than that of "
                              "the certificate that signed it")
        reason = _REASONS.get(details.reason if details.reason is not None else 0)
        if reason is None:
            raise CmpRejected(FailInfo.bad_request, f"reasonCode {details.reason} is not one "
                              "a device may give")
        self._revocation.revoke_own(exchange.auth.certificate, details.serial, reason)
        return self._replies.reply(exchange, "rp",
                                   revocation_reply([status_info(PkiStatus.accepted)]))


def _cert_hash(certificate_der: bytes, algorithm: str | None) -> bytes:
    """certHash (RFC 9810 §5.3.18): with the hash of the certificate's signature algorithm,
    unless the certConf names one (hashAlg, CMP v3); SHA-512 for Ed25519 (RFC 9481 §2)."""
    if algorithm is not None:
        name = DIGESTS.get(algorithm)
        if name is None:
            raise CmpRejected(FailInfo.bad_alg, f"certConf hashAlg {algorithm} is not supported")
        return hashlib.new(name, certificate_der).digest()
    certificate = x509.load_der_x509_certificate(certificate_der)
    chosen = certificate.signature_hash_algorithm or hashes.SHA512()
    return hashlib.new(chosen.name, certificate_der).digest()


_CURVES = {der.oid("1.2.840.10045.3.1.7"): "ec-p256", der.oid("1.3.132.0.34"): "ec-p384",
           der.oid("1.3.132.0.35"): "ec-p521"}  # namedCurve parameters, as DER


def _key_type(algorithm: tuple[str, bytes | None] | None) -> str | None:
    """The key type a central key generation template names; None: the profile's choice."""
    if algorithm is None:
        return None
    oid, parameters = algorithm
    if oid == "1.3.101.112":
        return "ed25519"
    if oid == "1.2.840.113549.1.1.1":
        return "rsa"
    if oid == "1.2.840.10045.2.1" and parameters in _CURVES:
        return _CURVES[parameters]
    raise CmpRejected(FailInfo.bad_alg, f"central key generation for algorithm {oid} is not "
                      "offered (EC P-256/384/521, Ed25519, RSA)")


