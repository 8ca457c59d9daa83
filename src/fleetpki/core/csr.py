"""Reading PKCS#10 requests: bytes in, a parsed CSR out, or an error a person can act on.

Only parsing and proof of possession live here; what the request may ask for is the profile's
business (issuance_plan.py).
"""

from __future__ import annotations

from cryptography import x509

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


def check_proof_of_possession(csr: x509.CertificateSigningRequest) -> None:
    """RFC 2986 §3: the request's signature proves the requester holds the private key."""
    try:
        valid = csr.is_signature_valid
    except ValueError as exc:  # unsupported signature algorithm
        raise PolicyViolation(f"CSR signature cannot be checked: {_short(exc)}",
                              field="signature") from None
    if not valid:
        raise PolicyViolation("CSR self-signature does not verify: the request was altered or "
                              "was not signed with the key it carries", field="signature")


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
