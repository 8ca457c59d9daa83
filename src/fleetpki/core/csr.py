"""Reading PKCS#10 requests: bytes in, a parsed CSR out, or an error a person can act on.

Only parsing and proof of possession live here; what the request may ask for is the profile's
business (issuance_plan.py).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import SignatureAlgorithmOID

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
            if b"-----BEGIN CERTIFICATE-----" in stripped[:40]:
                raise BadInput("this is a certificate, not a certificate request (CSR)")
            if b"PRIVATE KEY-----" in stripped[:60]:
                raise BadInput("this is a private key, not a certificate request (CSR); "
                               "never send private keys to the CA")
            csr = x509.load_pem_x509_csr(stripped)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError as exc:
        kind = "PEM" if stripped.startswith(b"-----BEGIN") else "DER"
        raise BadInput(f"not a valid PKCS#10 certificate request ({kind}): {_short(exc)}; "
                       "expected a PEM 'CERTIFICATE REQUEST' block or its DER bytes") from None
    return csr


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
