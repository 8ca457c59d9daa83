"""How a CA key signs DER that fleetpki assembled itself (a TBSCertificate, a TBSCertList).

Certificate and CRL assembly both need the same two things from a signer: the
AlgorithmIdentifier to write into the structure (and again beside the signature), and a function
that signs the finished TBS bytes. Deciding both in one place keeps them from disagreeing.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from fleetpki.ca.signer import Signer
from fleetpki.core import der

__all__ = ["signature_algorithm"]


def signature_algorithm(signer: Signer) -> tuple[bytes, Callable[[bytes], bytes]]:
    """AlgorithmIdentifier DER and a function signing TBS bytes with the CA key. A PKCS#11 key
    (a private-key subclass forwarding `sign`) fits here unchanged.

    Encodings: RFC 8410 §3 (Ed25519, no parameters), RFC 5758 §3.2 (ECDSA, parameters absent),
    RFC 4055 §5 (RSA PKCS#1 v1.5, parameters NULL)."""
    key, algorithm = signer.private_key, signer.hash_algorithm
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return der.sequence(der.oid("1.3.101.112")), key.sign
    assert algorithm is not None
    suffix = {"sha256": 0, "sha384": 1, "sha512": 2}[algorithm.name]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(algorithm)
        return (der.sequence(der.oid(f"1.2.840.10045.4.3.{2 + suffix}")),
                lambda tbs: key.sign(tbs, ecdsa))
    if isinstance(key, rsa.RSAPrivateKey):
        pkcs1 = padding.PKCS1v15()
        return (der.sequence(der.oid(f"1.2.840.113549.1.1.{11 + suffix}"),
                             der.tlv(der.NULL, b"")),
                lambda tbs: key.sign(tbs, pkcs1, algorithm))
    raise TypeError(f"cannot sign with {type(key).__name__}")
