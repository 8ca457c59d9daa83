"""Which challenge may validate which identifier, and the one entry point the server calls.

`validate` checks what it is given before any network traffic (identifier syntax, token
syntax, challenge/identifier combination), runs the validator of the challenge type under
`total_timeout`, and guarantees that whatever goes wrong leaves as an AcmeProblem: a
validator's own problems pass through, anything unforeseen becomes "connection" (the only
honest summary of "the validation could not be carried out").
"""

from __future__ import annotations

import asyncio
import dataclasses
import types
from collections.abc import Awaitable, Callable, Mapping

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import Identifier
from fleetpki.protocols.acme.challenges.dns01 import validate_dns01
from fleetpki.protocols.acme.challenges.http01 import validate_http01
from fleetpki.protocols.acme.challenges.keyauth import is_base64url, key_authorization
from fleetpki.protocols.acme.challenges.problems import problem, reason
from fleetpki.protocols.acme.challenges.settings import ValidationSettings
from fleetpki.protocols.acme.challenges.target import Target, parse_identifier
from fleetpki.protocols.acme.challenges.tls_alpn01 import validate_tls_alpn01

Validator = Callable[[Target, str, str, ValidationSettings], Awaitable[None]]

# The challenges to create per identifier type. RFC 8738 §4: http-01 and tls-alpn-01 may
# validate ip identifiers; §7: dns-01 MUST NOT.
SUPPORTED: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "dns": ("http-01", "tls-alpn-01", "dns-01"),
    "ip": ("http-01", "tls-alpn-01"),
})

_VALIDATORS: Mapping[str, Validator] = types.MappingProxyType({
    "http-01": validate_http01,
    "tls-alpn-01": validate_tls_alpn01,
    "dns-01": validate_dns01,
})

# These prove control of one host by connecting to it; a wildcard names no host, and control
# of one name under it says nothing about the others. Only dns-01 validates a wildcard.
_CONNECTING = frozenset({"http-01", "tls-alpn-01"})


def offered_challenge_types(identifier: Identifier, *, wildcard: bool = False,
                            ) -> tuple[str, ...]:
    """The challenge types to create for an authorization of `identifier`: SUPPORTED for its
    type, narrowed to dns-01 for a wildcard (RFC 8555 §7.1.4 names the authorization of
    "*.example.org" by "example.org" with wildcard true: pass that flag)."""
    offered = SUPPORTED.get(identifier.type, ())
    if wildcard or identifier.value.startswith("*."):
        return tuple(kind for kind in offered if kind not in _CONNECTING)
    return offered


async def validate(challenge_type: str, identifier: Identifier, token: str, thumbprint: str,
                   settings: ValidationSettings, *, wildcard: bool = False) -> None:
    """Returns when the challenge is fulfilled; raises AcmeProblem (status 400) otherwise,
    and never anything else. `thumbprint` is the account key's RFC 7638 thumbprint,
    base64url; `wildcard` as in offered_challenge_types."""
    target = _target(challenge_type, identifier, wildcard)
    if not is_base64url(token) or not is_base64url(thumbprint):
        raise problem("malformed", "the challenge token and the account key thumbprint must be "
                                   "base64url without padding (RFC 8555 §8.1)")
    key_auth = key_authorization(token, thumbprint)
    run = _VALIDATORS[challenge_type]
    deadline = asyncio.timeout(settings.total_timeout)
    try:
        async with deadline:
            await run(target, token, key_auth, settings)
    except AcmeProblem:
        raise
    except TimeoutError:
        if deadline.expired():
            raise problem("connection", f"{challenge_type} for {identifier} did not finish "
                                        f"within {settings.total_timeout:g} s") from None
        raise problem("connection", f"{challenge_type} for {identifier}: a network step "
                                    "timed out") from None
    except Exception as error:  # noqa: BLE001 - the edge: nothing but AcmeProblem leaves
        raise problem("connection", f"{challenge_type} for {identifier} could not be "
                                    f"carried out: {type(error).__name__}: {reason(error)}",
                      ) from None


def _target(challenge_type: str, identifier: Identifier, wildcard: bool) -> Target:
    """The parsed identifier, once the combination is known to be one this server validates."""
    if challenge_type not in _VALIDATORS:
        known = ", ".join(_VALIDATORS)
        raise problem("malformed", f"unknown challenge type {challenge_type!r}; this server "
                                   f"validates {known}")
    target = parse_identifier(identifier)
    if challenge_type not in SUPPORTED[identifier.type]:
        # RFC 8738 §7: "dns-01" MUST NOT be used to validate IP identifiers.
        raise problem("unsupportedIdentifier", f"{challenge_type} cannot validate {identifier}; "
                                               f"use {' or '.join(SUPPORTED[identifier.type])}")
    if wildcard:
        if target.ip is not None:
            raise problem("malformed", f"{identifier}: an IP address cannot be a wildcard")
        target = dataclasses.replace(target, wildcard=True)
    if target.wildcard and challenge_type in _CONNECTING:
        raise problem("malformed", f"{challenge_type} cannot validate the wildcard "
                                   f"*.{target.host}: there is no host to connect to; use dns-01")
    return target
