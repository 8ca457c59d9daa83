"""CMP message protection (RFC 9810 §5.1.3, algorithms of RFC 9481 §6) and the signature
check CRMF proof of possession shares with it.

MAC protection keys an HMAC with a shared secret:
- PasswordBasedMac (RFC 9481 §6.1.1): the key is the one-way function applied
  `iterationCount` times to secret || salt. The only kind OpenSSL 3.0's `cmp` makes.
- PBMAC1 (RFC 9481 §6.1.3, RFC 8018 §7.1): the key is PBKDF2(secret, salt, iterations).

The client chooses salt and iteration count, so the count is bounded on both sides: too few
makes a captured message a cheap offline guess at the secret, too many makes every request a
denial-of-service lever (RFC 9810 §5.1.3.1 asks the recipient to limit it).

Signature protection is checked with the public key of the first extraCerts certificate;
responses are signed with the CMP server key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pyasn1_alt_modules import rfc4210, rfc8018  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.protocols.cmp.asn1 import (
    DIGESTS,
    HMAC_SHA1,
    HMAC_WITH,
    PASSWORD_BASED_MAC,
    PBKDF2,
    PBMAC1,
    FailInfo,
    Malformed,
    algorithm,
    decode,
    encode,
)
from fleetpki.protocols.cms_parts import algorithm_identifier

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}
# Signature algorithms accepted on requests and proofs of possession: (hash, key kind).
SIGNATURES: dict[str, tuple[str | None, str]] = {
    "1.2.840.10045.4.3.2": ("sha256", "ec"), "1.2.840.10045.4.3.3": ("sha384", "ec"),
    "1.2.840.10045.4.3.4": ("sha512", "ec"),
    "1.2.840.113549.1.1.11": ("sha256", "rsa"), "1.2.840.113549.1.1.12": ("sha384", "rsa"),
    "1.2.840.113549.1.1.13": ("sha512", "rsa"),
    "1.3.101.112": (None, "ed25519"),
}
_SHA1_SIGNATURES = {"1.2.840.10045.4.1", "1.2.840.113549.1.1.5"}
MIN_SALT_BYTES = 8
MAX_SALT_BYTES = 64


class ProtectionError(Exception):
    """The protection is unusable or wrong; `fail` says which PKIFailureInfo bit answers it."""

    def __init__(self, fail: FailInfo, message: str) -> None:
        super().__init__(message)
        self.fail = fail


@dataclasses.dataclass(frozen=True, slots=True)
class IterationBounds:
    minimum: int
    maximum: int


@dataclasses.dataclass(frozen=True, slots=True)
class MacScheme:
    """One MAC protection as a message named it; `fresh` makes the same with a new salt, for
    protecting the reply as the request was protected."""

    kind: str  # PASSWORD_BASED_MAC or PBMAC1
    salt: bytes
    iterations: int
    mac_hash: str  # the HMAC's hash
    owf: str = "sha256"  # PasswordBasedMac: the one-way function
    owf_der: bytes = b""  # its AlgorithmIdentifier as sent
    mac_der: bytes = b""  # the MAC's AlgorithmIdentifier as sent
    prf_hash: str = "sha1"  # PBMAC1: PBKDF2's pseudo-random function
    prf_der: bytes | None = None
    key_length: int = 32  # PBMAC1: PBKDF2 output length

    def key(self, secret: bytes) -> bytes:
        if self.kind == PASSWORD_BASED_MAC:
            digest = hashlib.new(self.owf, secret + self.salt).digest()
            for _ in range(self.iterations - 1):
                digest = hashlib.new(self.owf, digest).digest()
            return digest
        return PBKDF2HMAC(_HASHES[self.prf_hash](), self.key_length, self.salt,
                          self.iterations).derive(secret)

    def mac(self, secret: bytes, data: bytes) -> bytes:
        return hmac.new(self.key(secret), data, self.mac_hash).digest()

    def verify(self, secret: bytes, data: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.mac(secret, data), tag)

    def fresh(self) -> MacScheme:
        return dataclasses.replace(self, salt=os.urandom(16))

    def algorithm_identifier(self) -> bytes:
        if self.kind == PASSWORD_BASED_MAC:
            return algorithm_identifier(PASSWORD_BASED_MAC, der.sequence(
                der.octet_string(self.salt), self.owf_der, der.integer(self.iterations),
                self.mac_der))
        prf = [] if self.prf_der is None else [self.prf_der]
        kdf = algorithm_identifier(PBKDF2, der.sequence(
            der.octet_string(self.salt), der.integer(self.iterations),
            der.integer(self.key_length), *prf))
        return algorithm_identifier(PBMAC1, der.sequence(kdf, self.mac_der))


def read_mac(oid: str, parameters: bytes | None, bounds: IterationBounds) -> MacScheme:
    """The MAC scheme a protectionAlg names; ProtectionError (badAlg) for anything else or
    outside the bounds."""
    if parameters is None:
        raise ProtectionError(FailInfo.bad_alg, "the MAC protection has no parameters")
    try:
        if oid == PASSWORD_BASED_MAC:
            scheme = _password_based_mac(parameters)
        elif oid == PBMAC1:
            scheme = _pbmac1(parameters)
        else:
            raise ProtectionError(FailInfo.bad_alg, f"protection algorithm {oid} is not "
                                                    "supported (PasswordBasedMac, PBMAC1 or a "
                                                    "signature)")
    except Malformed as error:
        raise ProtectionError(FailInfo.bad_alg, str(error)) from None
    if not bounds.minimum <= scheme.iterations <= bounds.maximum:
        raise ProtectionError(FailInfo.bad_alg, f"MAC iteration count {scheme.iterations} is "
                              f"outside {bounds.minimum}-{bounds.maximum}")
    if not MIN_SALT_BYTES <= len(scheme.salt) <= MAX_SALT_BYTES:
        raise ProtectionError(FailInfo.bad_alg, f"MAC salt of {len(scheme.salt)} bytes; "
                              f"{MIN_SALT_BYTES}-{MAX_SALT_BYTES} are accepted")
    return scheme


def is_mac(oid: str) -> bool:
    return oid in (PASSWORD_BASED_MAC, PBMAC1)


def _password_based_mac(parameters: bytes) -> MacScheme:
    value = decode(parameters, rfc4210.PBMParameter(), "PBMParameter")
    owf_oid, _ = algorithm(value["owf"])
    mac_oid, _ = algorithm(value["mac"])
    owf = DIGESTS.get(owf_oid)
    mac_hash = "sha1" if mac_oid == HMAC_SHA1 else HMAC_WITH.get(mac_oid)
    if owf is None or mac_hash is None:
        raise ProtectionError(FailInfo.bad_alg, f"PasswordBasedMac with one-way function "
                              f"{owf_oid} and MAC {mac_oid} is not supported")
    return MacScheme(PASSWORD_BASED_MAC, bytes(value["salt"]), int(value["iterationCount"]),
                     mac_hash, owf=owf, owf_der=encode(value["owf"]),
                     mac_der=encode(value["mac"]))


def _pbmac1(parameters: bytes) -> MacScheme:
    value = decode(parameters, rfc8018.PBMAC1_params(), "PBMAC1-params")
    kdf_oid, kdf_parameters = algorithm(value["keyDerivationFunc"])
    mac_oid, _ = algorithm(value["messageAuthScheme"])
    mac_hash = HMAC_WITH.get(mac_oid)
    if kdf_oid != PBKDF2 or kdf_parameters is None or mac_hash is None:
        raise ProtectionError(FailInfo.bad_alg, f"PBMAC1 with key derivation {kdf_oid} and MAC "
                              f"{mac_oid} is not supported (PBKDF2 and hmacWithSHA*)")
    kdf = decode(kdf_parameters, rfc8018.PBKDF2_params(), "PBKDF2-params")
    if kdf["salt"].getName() != "specified":
        raise ProtectionError(FailInfo.bad_alg, "PBKDF2 salt must be given (specified)")
    prf_der = encode(kdf["prf"]) if kdf["prf"].isValue else None
    prf_oid = algorithm(kdf["prf"])[0] if kdf["prf"].isValue else "1.2.840.113549.2.7"
    prf_hash = HMAC_WITH.get(prf_oid)
    if prf_hash is None:
        raise ProtectionError(FailInfo.bad_alg, f"PBKDF2 PRF {prf_oid} is not supported")
    key_length = int(kdf["keyLength"]) if kdf["keyLength"].isValue \
        else hashlib.new(mac_hash).digest_size
    if not 16 <= key_length <= 64:
        raise ProtectionError(FailInfo.bad_alg, f"PBKDF2 key length {key_length} is outside "
                                                "16-64 bytes")
    return MacScheme(PBMAC1, bytes(kdf["salt"]["specified"]), int(kdf["iterationCount"]),
                     mac_hash, mac_der=encode(value["messageAuthScheme"]), prf_hash=prf_hash,
                     prf_der=prf_der, key_length=key_length)


# -- signatures -----------------------------------------------------------------------------

def verify_signature(oid: str, key: CertificatePublicKeyTypes, data: bytes,
                     signature: bytes, *, what: str) -> None:
    """ProtectionError: badAlg for an algorithm we do not accept, `badMessageCheck` for a
    signature that does not verify."""
    if oid in _SHA1_SIGNATURES:
        raise ProtectionError(FailInfo.bad_alg, f"{what} uses SHA-1, which is not accepted")
    known = SIGNATURES.get(oid)
    if known is None:
        raise ProtectionError(FailInfo.bad_alg, f"{what} uses signature algorithm {oid}, "
                              "which is not supported (ECDSA, RSA PKCS#1 v1.5 with SHA-2, "
                              "Ed25519)")
    digest, kind = known
    try:
        if kind == "ec" and isinstance(key, ec.EllipticCurvePublicKey) and digest:
            key.verify(signature, data, ec.ECDSA(_HASHES[digest]()))
        elif kind == "rsa" and isinstance(key, rsa.RSAPublicKey) and digest:
            key.verify(signature, data, padding.PKCS1v15(), _HASHES[digest]())
        elif kind == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise ProtectionError(FailInfo.bad_alg, f"{what}: algorithm {oid} does not fit "
                                                    f"a {type(key).__name__}")
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        raise ProtectionError(FailInfo.bad_message_check,
                              f"{what} does not verify") from None

