"""Server-generated keys with additional encryption (RFC 7030 §4.4.1.2 and §4.4.2).

A device that wants its new private key protected beyond TLS puts an
AsymmetricDecryptKeyIdentifier attribute in its serverkeygen request: the key identifier of
a certificate whose key it holds. fleetpki encrypts to the certificate the device
authenticates with on the TLS layer (its current or its factory certificate), the one it can
prove it holds; the identifier must name that certificate. The key then goes back as
`application/pkcs7-mime; smime-type=server-generated-key`: an EnvelopedData for that
certificate (ECDH key agreement for EC, RSA-OAEP for RSA) around a SignedData of the key
package, signed by the EST server's TLS key (protocols/key_delivery.py).

Refused before anything is issued, so that a key is never generated and then sent in a form
the device did not ask for (the RA audits the refusal once it knows who asked):
- DecryptKeyIdentifier (RFC 7030 §4.4.1.1, a symmetric key shared beforehand): 501, fleetpki
  keeps no such keys;
- an AsymmetricDecryptKeyIdentifier without a TLS client certificate, naming another
  certificate, or naming one whose key cannot be encrypted to (Ed25519): 400.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ObjectIdentifier

from fleetpki.core.errors import BadInput, Unsupported

__all__ = ["ASYMMETRIC_DECRYPT_KEY_ID", "DECRYPT_KEY_ID", "key_identifier", "key_recipient"]

# id-aa-decryptKeyID (RFC 4108) and id-aa-asymmDecryptKeyID (RFC 7030 §4.4.1.2)
DECRYPT_KEY_ID = ObjectIdentifier("1.2.840.113549.1.9.16.2.37")
ASYMMETRIC_DECRYPT_KEY_ID = ObjectIdentifier("1.2.840.113549.1.9.16.2.54")


def key_recipient(csr_der: bytes, client_certificate_der: bytes | None,
                  *, can_sign: bool) -> x509.Certificate | None:
    """The certificate to encrypt the generated key to, or None when the request asks for
    no additional encryption. `can_sign`: the server has a key to sign key packages with.
    Unsupported or BadInput when the request asks for encryption that cannot be done. A CSR
    that cannot be read is left to the RA, which refuses it with its own reason."""
    try:
        attributes = {a.oid: a.value for a in x509.load_der_x509_csr(csr_der).attributes}
    except ValueError:
        return None
    if DECRYPT_KEY_ID in attributes:
        raise Unsupported(
            "the request asks for the key to be encrypted with a pre-shared symmetric "
            "key (DecryptKeyIdentifier, RFC 7030 §4.4.1.1), which this server does not "
            "keep: ask for AsymmetricDecryptKeyIdentifier naming your TLS client "
            "certificate instead, or for the key without additional encryption")
    wanted = attributes.get(ASYMMETRIC_DECRYPT_KEY_ID)
    if wanted is None:
        return None
    if not can_sign:
        raise Unsupported(
            "this server has no key to sign encrypted key packages with; ask for the key "
            "without additional encryption")
    if client_certificate_der is None:
        raise BadInput(
            "AsymmetricDecryptKeyIdentifier (RFC 7030 §4.4.1.2): the key is encrypted to "
            "the certificate you authenticate with; present it as the TLS client "
            "certificate")
    certificate = x509.load_der_x509_certificate(client_certificate_der)
    presented = key_identifier(certificate)
    if wanted != presented:
        raise BadInput(
            f"the AsymmetricDecryptKeyIdentifier {wanted.hex()} does not name the TLS "
            f"client certificate (key identifier {presented.hex()}), "
            "the only certificate this server encrypts generated keys to")
    if not isinstance(certificate.public_key(), ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise BadInput(
            "a key can be encrypted to an EC or RSA certificate only; the TLS client "
            f"certificate holds a {type(certificate.public_key()).__name__}")
    return certificate


def key_identifier(certificate: x509.Certificate) -> bytes:
    """Its subjectKeyIdentifier, or for a certificate without one the SHA-1 of its public key
    (RFC 5280 §4.2.1.2, method 1), as devices compute it."""
    try:
        return certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest
