"""Key authorizations (RFC 8555 §8.1) and the two digests of them the challenges publish.

The key authorization binds a challenge to the account key (RFC 8555 §10.2): whoever answers
must know the thumbprint of the account that asked, so a validation response provisioned for
one account cannot complete another account's challenge.
"""

from __future__ import annotations

import base64
import hashlib
import re

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def is_base64url(text: str) -> bool:
    """RFC 8555 §8.3/§8.4: tokens use the base64url alphabet, without "=" padding."""
    return _BASE64URL.fullmatch(text) is not None


def key_authorization(token: str, thumbprint: str) -> str:
    """RFC 8555 §8.1: token || "." || base64url(JWK thumbprint of the account key).

    Both parts must be base64url: the token ends up in a URL path and the result in HTTP
    bodies and DNS records, where anything else would change what is asked for."""
    if not is_base64url(token) or not is_base64url(thumbprint):
        raise ValueError("token and thumbprint must be base64url without padding")
    return f"{token}.{thumbprint}"


def key_authorization_digest(key_auth: str) -> bytes:
    """SHA-256 of the key authorization: RFC 8737 §3 (acmeIdentifier) and RFC 8555 §8.4."""
    return hashlib.sha256(key_auth.encode("ascii")).digest()


def dns_txt_value(key_auth: str) -> str:
    """RFC 8555 §8.4: the TXT record holds base64url(SHA-256(key authorization)), unpadded."""
    digest = key_authorization_digest(key_auth)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
