"""ACME challenge validation (RFC 8555 §8): one module per challenge type.

    validation.py        validate(): the entry point; which challenge fits which identifier
    http01.py            http-01 (RFC 8555 §8.3), with redirects.py deciding what is followed
    tls_alpn01.py        tls-alpn-01 (RFC 8737), with alpn_certificate.py checking the cert
    dns01.py             dns-01 (RFC 8555 §8.4)
    addresses.py         where to connect: hosts override, configured resolver, system
    target.py            the identifier, parsed before anything touches the network
    keyauth.py           key authorizations and their digests (RFC 8555 §8.1)
    settings.py          ValidationSettings: ports, resolver, limits
    problems.py          the AcmeProblem every failure becomes

Pure front-end code: no store, no RA. The ACME server creates challenges from SUPPORTED (or
offered_challenge_types) and awaits validate(); a failure is an AcmeProblem whose document
goes into the challenge's "error" field (RFC 8555 §8, §8.2).
"""

from fleetpki.protocols.acme.challenges.keyauth import key_authorization
from fleetpki.protocols.acme.challenges.settings import ValidationSettings
from fleetpki.protocols.acme.challenges.validation import (
    SUPPORTED,
    offered_challenge_types,
    validate,
)

__all__ = [
    "SUPPORTED",
    "ValidationSettings",
    "key_authorization",
    "offered_challenge_types",
    "validate",
]
