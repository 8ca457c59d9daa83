"""A CA's signing capability: its certificate plus something the cryptography builders can sign
with. A file key is a plain private key object; an HSM key (PKCS#11) will be a private-key
subclass that forwards `sign` to the token, so nothing that signs needs to change.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from fleetpki.core.keys import SignatureHash, signature_hash


@dataclasses.dataclass(frozen=True)
class Signer:
    name: str
    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes = dataclasses.field(repr=False)

    @property
    def hash_algorithm(self) -> SignatureHash | None:
        return signature_hash(self.private_key)

    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.private_key.public_key())


class SignerSource(Protocol):
    """Where signers come from (encrypted files today, a PKCS#11 token later)."""

    def signer(self, ca_name: str) -> Signer: ...
