"""Key policy: which public keys a certificate may carry, and which keys CAs are made with.

Rules enforced here (change this module first if a rule changes):
- RSA moduli below 2048 bits are refused everywhere (NIST SP 800-131A), whatever a profile says.
- RSA public exponent must be 65537: small exponents have a history of implementation attacks
  and nothing in a device fleet needs another value.
- EC keys must be on a named curve we list; cryptography has already checked the point is on it.
"""

from __future__ import annotations

import dataclasses
import enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from fleetpki.core.errors import PolicyViolation

RSA_FLOOR_BITS = 2048
RSA_EXPONENT = 65537


class KeyKind(enum.Enum):
    ec = "ec"
    rsa = "rsa"
    ed25519 = "ed25519"


_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
}
_CURVE_ALIASES = {"p256": "secp256r1", "p384": "secp384r1", "p521": "secp521r1"}


@dataclasses.dataclass(frozen=True, slots=True)
class KeySpec:
    """An algorithm and its size: 'ec-p256', 'rsa-3072', 'ed25519'."""

    kind: KeyKind
    curve: str | None = None  # for EC: the SEC name, e.g. secp256r1
    bits: int | None = None  # for RSA: modulus size

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        name = text.strip().lower()
        if name == "ed25519":
            return cls(KeyKind.ed25519)
        kind, _, param = name.partition("-")
        if kind == "ec" and param in _CURVE_ALIASES:
            return cls(KeyKind.ec, curve=_CURVE_ALIASES[param])
        if kind == "rsa" and param.isdigit() and int(param) in (2048, 3072, 4096):
            return cls(KeyKind.rsa, bits=int(param))
        raise ValueError(
            f"unknown key type {text!r}; use ec-p256, ec-p384, ec-p521, ed25519, "
            "rsa-2048, rsa-3072 or rsa-4096"
        )

    def __str__(self) -> str:
        if self.kind is KeyKind.ec:
            short = {v: k for k, v in _CURVE_ALIASES.items()}[self.curve or ""]
            return f"ec-{short}"
        if self.kind is KeyKind.rsa:
            return f"rsa-{self.bits}"
        return "ed25519"

    def generate(self) -> CertificateIssuerPrivateKeyTypes:
        if self.kind is KeyKind.ec:
            return ec.generate_private_key(_CURVES[self.curve or ""]())
        if self.kind is KeyKind.rsa:
            return rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=self.bits or 0)
        return ed25519.Ed25519PrivateKey.generate()


def describe(public_key: CertificatePublicKeyTypes) -> KeySpec:
    """What a public key is, or PolicyViolation if it is a kind no device certificate carries.

    RSA sizes outside 2048/3072/4096 are described with their real size so that policy can
    refuse them by name (a 1024-bit key says 'rsa-1024', not 'unknown').
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _CURVES:
            raise PolicyViolation(f"EC curve {public_key.curve.name} is not allowed", field="key")
        return KeySpec(KeyKind.ec, curve=public_key.curve.name)
    if isinstance(public_key, rsa.RSAPublicKey):
        return KeySpec(KeyKind.rsa, bits=public_key.key_size)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeySpec(KeyKind.ed25519)
    raise PolicyViolation(f"{type(public_key).__name__} keys are not allowed", field="key")


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPolicy:
    """What a profile accepts. `allowed` holds kinds/curves; RSA is bounded by `rsa_min_bits`."""

    allowed: frozenset[str]  # e.g. {"ec-p256", "ec-p384", "rsa"}
    rsa_min_bits: int = RSA_FLOOR_BITS

    def check(self, public_key: CertificatePublicKeyTypes) -> KeySpec:
        spec = describe(public_key)
        if spec.kind is KeyKind.rsa:
            if "rsa" not in self.allowed:
                raise PolicyViolation(f"RSA keys are not allowed by this profile (allowed: "
                                      f"{self.allowed_text()})", field="key")
            assert isinstance(public_key, rsa.RSAPublicKey)
            floor = max(self.rsa_min_bits, RSA_FLOOR_BITS)
            if public_key.key_size < floor:
                raise PolicyViolation(
                    f"RSA key of {public_key.key_size} bits is too weak (minimum {floor})",
                    field="key")
            if public_key.public_numbers().e != RSA_EXPONENT:
                raise PolicyViolation("RSA public exponent must be 65537", field="key")
            return spec
        if str(spec) not in self.allowed:
            raise PolicyViolation(
                f"{spec} keys are not allowed by this profile (allowed: {self.allowed_text()})",
                field="key")
        return spec

    def allowed_text(self) -> str:
        return ", ".join(sorted(self.allowed))


SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def signature_hash(key: CertificateIssuerPrivateKeyTypes) -> SignatureHash | None:
    """The hash a CA signs with: matched to the key's strength; Ed25519 takes none."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size >= 521:
            return hashes.SHA512()
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    return hashes.SHA256()


_PREFERENCE = ("ec-p256", "ec-p384", "ec-p521", "ed25519")


def preferred_key_spec(policy: KeyPolicy) -> KeySpec:
    """The key a server generates for a profile (RFC 7030 §4.4) and advertises in CSR
    attributes: the first allowed of P-256, P-384, P-521, Ed25519, then RSA at the policy's
    floor rounded up to a standard size. P-256 first: it is what constrained devices verify
    fastest and what every TLS stack on them supports."""
    for name in _PREFERENCE:
        if name in policy.allowed:
            return KeySpec.parse(name)
    if "rsa" not in policy.allowed:  # the profiles loader refuses such a policy
        raise ValueError(f"the key policy allows no key type fleetpki can generate or request "
                         f"({policy.allowed_text()})")
    floor = max(policy.rsa_min_bits, RSA_FLOOR_BITS)
    return KeySpec(KeyKind.rsa, bits=next((b for b in (2048, 3072, 4096) if b >= floor), 4096))
