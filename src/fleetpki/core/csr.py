"""Reading PKCS#10 requests: bytes in, a parsed CSR out, or an error a person can act on.

Only parsing and proof of possession live here; what the request may ask for is the profile's
business (issuance_plan.py).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import SignatureAlgorithmOID

from fleetpki.core import der
from fleetpki.core.errors import BadInput, PolicyViolation

MAX_CSR_BYTES = 64 * 1024


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse PEM or DER. Refuses oversized input before parsing anything."""
    if len(data) > MAX_CSR_BYTES:
        raise BadInput(f"CSR is {len(data)} bytes; the limit is {MAX_CSR_BYTES} (64 KiB)")
    if not data.strip():
        raise BadInput("CSR is empty")
    stripped = data.lstrip()
    try:
        if stripped.startswith(b"-----BEGIN"):
            wrong_kind = _other_pem(stripped)
            if wrong_kind is not None:
                raise BadInput(wrong_kind)
            csr = x509.load_pem_x509_csr(stripped)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError as exc:
        if stripped.startswith(b"-----BEGIN"):
            raise BadInput(f"not a valid PKCS#10 certificate request (PEM): {_short(exc)}; "
                           "expected a 'CERTIFICATE REQUEST' block") from None
        if _is_certificate(data):
            raise BadInput("this is a certificate, not a certificate request (CSR)") from None
        raise BadInput(_pem_after_text(data) or "not a valid PKCS#10 certificate request "
                       f"(DER): {_asn1_problem(exc)}") from None
    return csr


def _other_pem(block: bytes) -> str | None:
    """Why a PEM block that starts `block` is not a CSR, when its label says so."""
    if b"-----BEGIN CERTIFICATE-----" in block[:40]:
        return "this is a certificate, not a certificate request (CSR)"
    if b"PRIVATE KEY-----" in block[:60]:
        return ("this is a private key, not a certificate request (CSR); never send private "
                "keys to the CA")
    return None


def _pem_after_text(data: bytes) -> str | None:
    """The refusal of a PEM file with text above its block (what `openssl req -text` writes),
    which is neither the DER it was parsed as nor PEM as fleetpki reads it; None otherwise.
    RFC 7468 §2 lets such text be, but a person should see what the CA signs: the text
    above may describe another request than the block below."""
    begin = data.find(b"-----BEGIN")
    if begin <= 0:
        return None
    block = data[begin:]
    line = block.split(b"\n", 1)[0].strip().decode("ascii", "replace")[:64]
    return _other_pem(block) or (
        f"this is PEM with {begin} bytes of text before its '{line}' line (as `openssl req "
        "-text` writes, for one); delete the text above that line, or write the request "
        "without it (`openssl req -in FILE -out NEW`)")


def _is_certificate(data: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return False
    return True


# What cryptography's ASN.1 parser reports (its Rust error, printed for debugging), in words.
_ASN1_PROBLEMS = {
    "ShortData": "the data ends before the request does (truncated?)",
    "ExtraData": "there are extra bytes after the request",
    "UnexpectedTag": "it is not a PKCS#10 structure (an unexpected ASN.1 tag)",
    "InvalidLength": "an ASN.1 length is invalid",
    "InvalidValue": "an ASN.1 value is invalid",
}


def _asn1_problem(exc: Exception) -> str:
    text = str(exc)
    for kind, words in _ASN1_PROBLEMS.items():
        if f"kind: {kind}" in text:
            return words
    return "it is not DER-encoded ASN.1" if "ParseError" in text else _short(exc)


_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"


def unsigned_request(subject: bytes, public_key: bytes, extensions: bytes | None) -> bytes:
    """The PKCS#10 form of a request whose proof of possession was not a CSR signature (CRMF,
    RFC 4211 §4.1): the RA plans, holds and stores every request as a CSR. `subject`,
    `public_key` and `extensions` are DER (Name, SubjectPublicKeyInfo, Extensions). The
    signature is empty and proves nothing: such a CSR travels with `possession_proven`."""
    attributes = b"" if extensions is None else der.sequence(
        der.oid(_EXTENSION_REQUEST), der.set_of(extensions))
    info = der.sequence(der.integer(0), subject, public_key, der.context(0, attributes))
    return der.sequence(info, der.sequence(der.oid(_ECDSA_WITH_SHA256)),
                        der.tlv(der.BIT_STRING, b"\x00"))


def malformed(exc: Exception) -> BadInput:
    """cryptography parses a CSR's parts lazily; a malformed part surfaces on first access."""
    return BadInput(f"malformed certificate request: {_short(exc)}")


def check_proof_of_possession(csr: x509.CertificateSigningRequest,
                              public_key: CertificatePublicKeyTypes | None = None) -> None:
    """RFC 2986 §3: the request's signature proves the requester holds the private key.

    `public_key` is the CSR's own key, when the caller has parsed it already. ECDSA and Ed25519
    signatures are verified with it directly: a third faster than `is_signature_valid`, which
    parses the key again. Anything else (RSA, RSA-PSS, an algorithm we do not map) takes
    cryptography's own check."""
    key = public_key if public_key is not None else csr.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) \
                and csr.signature_algorithm_oid in _ECDSA_SIGNATURES:
            hash_algorithm = csr.signature_hash_algorithm
            assert isinstance(hash_algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512)
            key.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(hash_algorithm))
            return
        if isinstance(key, ed25519.Ed25519PublicKey) \
                and csr.signature_algorithm_oid == SignatureAlgorithmOID.ED25519:
            key.verify(csr.signature, csr.tbs_certrequest_bytes)
            return
        valid = csr.is_signature_valid
    except InvalidSignature:
        valid = False
    except (ValueError, UnsupportedAlgorithm) as exc:  # an algorithm we cannot check
        raise PolicyViolation(f"CSR signature cannot be checked: {_short(exc)}",
                              field="signature") from None
    if not valid:
        raise PolicyViolation("CSR self-signature does not verify: the request was altered or "
                              "was not signed with the key it carries", field="signature")


_ECDSA_SIGNATURES = frozenset({
    SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512,
})


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


_CHALLENGE_PASSWORD = der.oid("1.2.840.113549.1.9.7")  # PKCS #9 challengePassword


def without_challenge_password(data: bytes) -> bytes | None:
    """The DER CSR with its challengePassword attribute taken out, or None if it has none.

    For storing a request that waits for approval without the secret it carried. The result's
    signature no longer verifies (it covered the password): check proof of possession first."""
    request, algorithm, signature = der.elements(load_csr(data).public_bytes(Encoding.DER))
    version, subject, key, *rest = der.elements(request)
    if not rest:
        return None
    attributes = der.elements(der.tlv(der.SEQUENCE, der.content(rest[0])))
    kept = [a for a in attributes if der.elements(a)[0] != _CHALLENGE_PASSWORD]
    if len(kept) == len(attributes):
        return None
    info = der.sequence(version, subject, key, der.context(0, b"".join(kept)))
    return der.sequence(info, algorithm, signature)


def challenge_password(data: bytes) -> str | None:
    """The CSR's challengePassword (PKCS #9), read from the DER itself, so that it is found in
    a CSR whose attributes cryptography refuses (see `canonical_csr`). None if absent."""
    try:
        for item in _attributes(data):
            oid, values = der.elements(item)
            if oid == _CHALLENGE_PASSWORD:
                value = der.elements(der.tlv(der.SEQUENCE, der.content(values)))[0]
                return der.content(value).decode("utf-8", errors="replace")
    except (ValueError, IndexError):
        return None
    return None


def canonical_csr(data: bytes) -> tuple[bytes, bool]:
    """(CSR, possession already proven). strongSwan's pki writes the attributes SET of its CSRs
    in the order given (extensionRequest, then challengePassword) rather than DER's sorted
    order, and cryptography refuses such a CSR. When that is the only fault, the signature is
    checked over the bytes as sent and the CSR returned with its attributes sorted, with True:
    the sorted copy's own signature no longer verifies. Anything else comes back unchanged,
    for load_csr to judge."""
    try:
        request, algorithm, signature = der.elements(data)
        version, subject, key, *rest = der.elements(request)
    except (ValueError, IndexError):
        return data, False  # PEM, or not a CSR: load_csr says which
    if len(rest) != 1 or rest[0][0] != 0xA0:
        return data, False
    try:
        items = der.elements(der.tlv(der.SEQUENCE, der.content(rest[0])))
    except (ValueError, IndexError):
        return data, False
    if items == sorted(items):  # the usual case, decided without parsing anything
        return data, False
    try:
        info = der.sequence(version, subject, key, der.context(0, b"".join(sorted(items))))
        repaired = der.sequence(info, algorithm, signature)
        _verify_over(x509.load_der_x509_csr(repaired), request, der.content(signature)[1:])
    except (ValueError, IndexError, InvalidSignature, UnsupportedAlgorithm, TypeError):
        return data, False
    return repaired, True


def _verify_over(csr: x509.CertificateSigningRequest, signed: bytes, signature: bytes) -> None:
    """Verify `signature` over `signed` with the CSR's key and signature algorithm."""
    key = csr.public_key()
    hash_algorithm = csr.signature_hash_algorithm
    if isinstance(key, rsa.RSAPublicKey) and hash_algorithm is not None \
            and csr.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        key.verify(signature, signed, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
        key.verify(signature, signed, ec.ECDSA(hash_algorithm))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, signed)
    else:
        raise UnsupportedAlgorithm("signature algorithm")


def _attributes(data: bytes) -> list[bytes]:
    request = der.elements(data)[0]
    rest = der.elements(request)[3:]
    return der.elements(der.tlv(der.SEQUENCE, der.content(rest[0]))) if rest else []
