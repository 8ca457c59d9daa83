"""One CMP request being answered: who sent it (a MAC credential or a signing certificate),
and what addresses and protects the reply. Shared by the handler and replies.py."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from fleetpki.core.errors import NotAuthorized
from fleetpki.core.profile import Profile
from fleetpki.protocols.cmp.codec import Header
from fleetpki.protocols.cmp.protection import MacScheme
from fleetpki.ra.api import Transaction


@dataclasses.dataclass(frozen=True, slots=True)
class CmpIdentity:
    """The CMP server certificate of one issuing CA (cmp_identity.py): signs responses."""

    certificate: x509.Certificate
    key: PrivateKeyTypes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class CmpCall:
    method: str
    label: str | None
    content_type: str
    body: bytes | None  # None: larger than the handler's MAX_MESSAGE_BYTES
    client_address: str


@dataclasses.dataclass(frozen=True, slots=True)
class CmpReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class MacAuth:
    credential: str
    secret: str = dataclasses.field(repr=False)
    scheme: MacScheme = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class SignedAuth:
    certificate: bytes  # DER of the signer


Auth = MacAuth | SignedAuth | None


@dataclasses.dataclass(frozen=True, slots=True)
class Exchange:
    """One request being answered: what addresses and protects the reply."""

    header: Header | None
    profile: Profile
    label: str | None
    identity: CmpIdentity
    chain: Sequence[x509.Certificate]
    auth: Auth = None


def transaction_of(exchange: Exchange) -> Transaction:
    """The RA's name for the exchange's transaction, bound to who authenticated it: only the
    same credential or key may poll it or confirm its certificate."""
    assert exchange.header is not None and exchange.header.transaction_id is not None
    auth = exchange.auth
    if isinstance(auth, MacAuth):
        requester = hashlib.sha256(b"cmp-mac\x00" + auth.credential.encode()).hexdigest()
    elif isinstance(auth, SignedAuth):
        key = x509.load_der_x509_certificate(auth.certificate).public_key()
        requester = hashlib.sha256(key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )).hexdigest()
    else:
        raise NotAuthorized("the request is not authenticated")
    return Transaction("cmp", exchange.header.transaction_id.hex(), requester)

