"""The outbound call that asks a profile's challenge service (an MDM) about a SCEP challenge
password (ra/challenges.py): the pattern of dynamic SCEP challenges.

    POST <enrollment.challenge_callback>   Content-Type: application/json
    {"challenge": "...", "profile": "router", "csr": "<base64 DER>", "client_address": "..."}

    200 {"allow": true, "device_id": "optional: the device the challenge was issued for"}

Anything else (another status, other JSON, a timeout, a refused connection) refuses the
enrollment. Redirects are not followed: the challenge goes only where the profile says.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from fleetpki.ra.challenges import ChallengeQuery, ChallengeVerdict

log = logging.getLogger(__name__)

_MAX_REPLY_BYTES = 16 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpChallengeCallback:
    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds
        self._opener = urllib.request.build_opener(_NoRedirects())

    def verify(self, url: str, query: ChallengeQuery) -> ChallengeVerdict:
        body = json.dumps({
            "challenge": query.challenge, "profile": query.profile,
            "csr": base64.b64encode(query.csr_der).decode("ascii"),
            "client_address": query.client_address,
        }).encode("utf-8")
        # The scheme is http or https: profiles_loader.py checks challenge_callback.
        request = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310
            "Content-Type": "application/json", "Accept": "application/json",
            "User-Agent": "fleetpki-scep"})
        try:
            # The scheme is http or https: profiles_loader.py checks challenge_callback.
            with self._opener.open(request, timeout=self._timeout) as response:
                status = response.status
                reply = response.read(_MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as error:
            return ChallengeVerdict(False, reason=f"challenge service answered {error.code}")
        except (urllib.error.URLError, OSError, ValueError) as error:
            log.warning("challenge service unreachable", extra={"url": url,
                                                                  "error": str(error)[:200]})
            return ChallengeVerdict(False, reason=f"challenge service unreachable: {error}")
        if status != 200 or len(reply) > _MAX_REPLY_BYTES:
            return ChallengeVerdict(False, reason=f"challenge service answered {status}")
        try:
            verdict = json.loads(reply)
        except ValueError:
            return ChallengeVerdict(False, reason="challenge service sent no JSON")
        if not isinstance(verdict, dict) or verdict.get("allow") is not True:
            return ChallengeVerdict(False, reason="challenge service refused the challenge")
        device_id = verdict.get("device_id")
        if device_id is not None and (not isinstance(device_id, str) or not device_id
                                      or len(device_id) > 256):
            return ChallengeVerdict(False, reason="challenge service sent an invalid device_id")
        return ChallengeVerdict(True, device_id=device_id)
