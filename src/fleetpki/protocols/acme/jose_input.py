"""Strict reading of what an ACME client sends inside a JWS (RFC 8259 JSON, RFC 7515
base64url), and the problems a bad one gets: shared by jws.py and account_keys.py."""

from __future__ import annotations

import json
from typing import Any

from joserfc.util import urlsafe_b64decode

from fleetpki.core.acme_problems import AcmeProblem


def malformed(detail: str) -> AcmeProblem:
    return AcmeProblem("malformed", detail)


def unauthorized(detail: str) -> AcmeProblem:
    return AcmeProblem("unauthorized", detail, status=403)


def bad_public_key(detail: str) -> AcmeProblem:
    return AcmeProblem("badPublicKey", detail)


def quote(text: str) -> str:
    """A client's string, shortened, for a detail: echoing kilobytes back helps nobody."""
    return repr(text if len(text) <= 64 else text[:61] + "...")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 7515 §5.2 lets a recipient refuse duplicate names; joserfc would keep the last,
    so two readers of one header could disagree."""
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member names")
    return members


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 §6)")


def load_json(data: bytes, what: str) -> Any:
    """RFC 8259 JSON in UTF-8 (§8.1), strictly. Strings must encode back to UTF-8: a lone
    surrogate could be neither stored nor echoed back in a problem document."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_members,
                           parse_constant=_no_constant)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise malformed(f"{what} is nested too deeply") from None
    except UnicodeEncodeError:
        raise malformed(f"{what} has a string that is not Unicode (a lone surrogate "
                         "escape such as \\ud800)") from None
    except ValueError as error:
        raise malformed(f"{what} is not valid UTF-8 JSON: {error}") from None
    return value


def b64decode(text: object, what: str) -> bytes:
    """RFC 8555 §6.1 and RFC 7515 §2: base64url without padding, and nothing else."""
    if not isinstance(text, str):
        raise malformed(f"{what} must be a base64url string")
    try:
        return urlsafe_b64decode(text.encode("ascii"))
    except ValueError:
        raise malformed(f"{what} is not base64url without padding "
                         "(RFC 7515 §2, RFC 8555 §6.1)") from None
