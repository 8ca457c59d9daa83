"""The network between virtual devices and the in-process EST front end.

A request travels as the TLS layer would deliver it: the client certificate the device
presents (its DER; the handshake's proof of possession is not simulated, the EST front end
and the RA check everything after it), its address, headers and body. During a CA outage
every request fails as a refused connection would.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from fleetpki.agent.messages import HttpRequest, HttpResponse, Reply, TransportFailure
from fleetpki.protocols.est.handler import EstCall, EstReply
from fleetpki.simulator.device import VirtualDevice
from fleetpki.simulator.load import Load

_ENROLLMENTS = ("simpleenroll", "simplereenroll", "serverkeygen")


class EstEndpoint(Protocol):
    def handle(self, call: EstCall) -> EstReply: ...


class VirtualNetwork:
    def __init__(self, endpoint: EstEndpoint, outages: Sequence[tuple[dt.datetime, dt.datetime]],
                 load: Load) -> None:
        self._endpoint = endpoint
        self._outages = sorted(outages)
        self._starts = [start for start, _ in self._outages]
        self._load = load
        self.requests = 0

    def down(self, now: dt.datetime) -> bool:
        at = bisect.bisect_right(self._starts, now) - 1
        return at >= 0 and now < self._outages[at][1]

    def exchange(self, device: VirtualDevice, request: HttpRequest, now: dt.datetime) -> Reply:
        self.requests += 1
        if self.down(now):
            return TransportFailure("connection refused (the CA is down)")
        reply = self._endpoint.handle(EstCall(
            method=request.method, path=request.path, headers=dict(request.headers),
            body=request.body, client_address=device.address,
            client_certificate=device.client_certificate(request.credential)))
        if request.method == "POST" and request.path.endswith(_ENROLLMENTS):
            self._load.enrollment(now, reply.status == 200)
        return HttpResponse(reply.status, dict(reply.headers), reply.body)
