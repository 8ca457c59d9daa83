"""A fleet with certificates and API tokens of every role, and its admin app in process."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from fastapi.testclient import TestClient

from fleetpki.core.api_tokens import Role
from fleetpki.core.issuance_plan import Request
from fleetpki.core.records import IssuedCertificate
from fleetpki.ra.api import Authorization
from fleetpki.serve_wiring import admin_app
from fleetpki.wiring import Fleet, open_fleet
from support.csrs import make_csr

OPERATOR = Authorization(actor="operator:test")


@dataclasses.dataclass
class AdminRig:
    fleet: Fleet
    client: TestClient
    tokens: dict[Role, str]

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def issue(self, device: str, profile: str = "sensor", *, key: str = "ec-p256",
              sans: list[x509.GeneralName] | None = None) -> IssuedCertificate:
        from support.csrs import make_key
        csr, _ = make_csr(device, key=make_key(key), sans=sans)
        return self.fleet.issuance.issue(Request.from_csr(csr), profile, OPERATOR)


@contextmanager
def admin_rig(home: Path) -> Iterator[AdminRig]:
    fleet = open_fleet(home)
    try:
        admin = fleet.token_admin(OPERATOR)
        tokens = {role: admin.create(f"{role.value}-holder", role,
                                     lifetime=dt.timedelta(days=1)).text for role in Role}
        with TestClient(admin_app(fleet), base_url="https://testserver") as client:
            yield AdminRig(fleet, client, tokens)
    finally:
        fleet.close()
