"""Server-side TLS contexts for the device-facing HTTPS listeners.

The handshake proves one thing: the peer holds a key certified, directly or through the chain it
sent, by a CA in the trust bundle. Everything a certificate may or may not be used for (validity
period and renewal grace, revocation, which profile issued it) is decided by the application,
which reads the leaf from the ASGI ``tls`` extension (see ``client_certs``).
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["X509_V_FLAG_NO_CHECK_TIME", "server_tls_context"]

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (openssl/x509_vfy.h); the ssl module has no name for it.
# Python 3.11's verify_flags setter (Modules/_ssl.c, set_verify_flags) parses an unsigned long
# and hands every newly set bit to X509_VERIFY_PARAM_set_flags without masking, and the getter
# returns it as a VerifyFlags whose unknown bits are kept. The unit tests read the bit back and
# prove its effect with a real handshake using an expired certificate.
X509_V_FLAG_NO_CHECK_TIME = 0x200000

# TLS 1.2 suites: forward-secret ECDHE only, AEAD first, CBC with SHA-2 MACs kept for older
# device stacks; no SHA-1 MACs, no anonymous or NULL suites. This is Python 3.11's own server
# default minus the DHE suites (unusable without DH parameters), written out so that it does not
# move with the interpreter. uvicorn's default, set_ciphers("TLSv1"), would instead enable the
# SHA-1 CBC suites and list anonymous and NULL ones. TLS 1.3 suites are OpenSSL's defaults
# (set_ciphers does not touch them): AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM.
_TLS12_CIPHERS = "@SECLEVEL=2:ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:!aNULL:!eNULL:!SHA1:!AESCCM"


def _refuse_password_prompt(*_args: object) -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key and hang
    # a server; an empty password makes loading fail with ssl.SSLError instead.
    return b""


def server_tls_context(
    cert_file: Path,
    key_file: Path,
    *,
    key_password: bytes | None,
    client_trust_pem: bytes | None,
    accept_expired_client_certs: bool = True,
) -> ssl.SSLContext:
    """Build the server context: TLS 1.2 or 1.3, client certificates optional.

    ``cert_file`` holds the server certificate followed by any intermediates to send.
    ``client_trust_pem`` is a PEM bundle of the CAs whose certificates devices may present
    (the fleet's issuing and root CAs, imported manufacturer CAs). With it, a client that sends
    a certificate must chain to one of them or the handshake fails; a client that sends none
    still connects (CERT_OPTIONAL: enrollment with a bootstrap secret has no certificate yet).
    Any certificate in the bundle is a trust anchor, root or not (X509 partial chain), so
    trusting an issuing CA does not mean trusting everything its root signed.
    Without a bundle no client certificate is requested at all.

    ``accept_expired_client_certs`` sets X509_V_FLAG_NO_CHECK_TIME: the chain is verified without
    looking at any validity period (leaf and CAs), so a device whose certificate just expired can
    still reach the renewal endpoint. The application must then check the leaf's validity
    itself, applying its renewal grace.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_TLS12_CIPHERS)
    # Compression off (CRIME); no TLS 1.2 renegotiation, which would also let the peer change
    # its certificate under a connection whose certificate was read once.
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
                        | ssl.OP_CIPHER_SERVER_PREFERENCE)
    password = key_password if key_password is not None else _refuse_password_prompt
    context.load_cert_chain(cert_file, key_file, password=password)
    if client_trust_pem is None:
        context.verify_mode = ssl.CERT_NONE
        return context
    # cadata takes PEM as str; bytes would be read as DER.
    context.load_verify_locations(cadata=client_trust_pem.decode("ascii"))
    context.verify_mode = ssl.CERT_OPTIONAL
    flags = ssl.VERIFY_X509_PARTIAL_CHAIN
    if accept_expired_client_certs:
        flags |= X509_V_FLAG_NO_CHECK_TIME
    context.verify_flags |= flags
    return context
