"""Bootstrap secrets the RA can compute again, for protocols that key a MAC with them.

CMP's PasswordBasedMac and PBMAC1 (RFC 9481 §6.1) key the MAC with the shared secret and a salt
and iteration count the client chooses, so checking one needs the secret itself: a hash cannot
be salted afterwards. fleetpki still stores no secret. It derives each bootstrap secret from a
32-byte secret key (kept encrypted at rest like the CA keys, see wiring) and the credential's
id and creation second, stores only the SHA-256 of the result as for every credential, and
derives the secret again when a MAC must be checked. A copy of the database alone reveals no
secret; so does a copy of the encrypted key file without the passphrase.

A credential whose stored hash does not match its derived secret (made before this existed, or
under another key) still works where the secret is sent (HTTP Basic, SCEP), not for a MAC.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from typing import Protocol

from fleetpki.core.enrollment_records import BootstrapCredential
from fleetpki.ra.credentials import secret_matches

KEY_BYTES = 32
_SECRET_LABEL = b"fleetpki bootstrap secret\x00"


class CredentialLookup(Protocol):
    def get_credential(self, credential_id: str) -> BootstrapCredential | None: ...


class SecretDeriver:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the secret derivation key must be {KEY_BYTES} bytes")
        self._key = key

    def secret(self, credential_id: str, created_at: dt.datetime) -> str:
        """192 bits, written like ra/credentials.new_secret (32 URL-safe characters)."""
        if created_at.tzinfo is None:  # a store that hands back naive UTC
            created_at = created_at.replace(tzinfo=dt.UTC)
        second = int(created_at.timestamp())
        message = _SECRET_LABEL + credential_id.encode("utf-8") + b"\x00" + str(second).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:24]
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def subkey(self, purpose: str) -> bytes:
        """A key for another purpose (e.g. tagging protocol nonces), independent of the
        secrets: HMAC of the purpose under the derivation key."""
        return hmac.new(self._key, b"fleetpki subkey\x00" + purpose.encode(),
                        hashlib.sha256).digest()


class SharedSecrets:
    """The secret of a bootstrap credential, for checking a MAC a device made with it."""

    def __init__(self, credentials: CredentialLookup, deriver: SecretDeriver) -> None:
        self._credentials = credentials
        self._deriver = deriver

    def secret_for(self, credential_id: str) -> str | None:
        """None when no such credential exists or its secret cannot be derived. Disabled,
        expired and used-up credentials still answer: the MAC then proves who asks, and the RA
        refuses them by name (a device confirming a certificate has used its one use)."""
        credential = self._credentials.get_credential(credential_id)
        if credential is None:
            return None
        secret = self._deriver.secret(credential.id, credential.created_at)
        return secret if secret_matches(secret, credential.secret_hash) else None
