"""The admin REST API in process, over a real store: roles, lists, actions, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from fleetpki.core.api_tokens import Role
from fleetpki.core.discovery_records import DiscoveredCertificate
from fleetpki.core.serials import serial_hex
from fleetpki.store.api import AuditEvent
from support.admin_rig import AdminRig, admin_rig

API = "/api/v1"


@pytest.fixture
def rig(home: Path) -> Iterator[AdminRig]:
    with admin_rig(home) as made:
        yield made


def test_without_a_token_every_resource_answers_401_with_what_to_do(rig: AdminRig) -> None:
    for path in ("/certificates", "/devices", "/cas", "/audit", "/tokens", "/summary"):
        reply = rig.client.get(API + path)
        assert reply.status_code == 401, path
        assert "fleetpki admin token create" in reply.json()["message"]
        assert reply.headers["www-authenticate"].startswith("Bearer")
    forged = rig.tokens[Role.admin][:-4] + "AAAA"
    reply = rig.client.get(API + "/cas", headers={"Authorization": f"Bearer {forged}"})
    assert reply.status_code == 401
    assert reply.json()["message"] == "unknown API token or wrong secret"


def test_roles_admit_what_they_include_and_nothing_more(rig: AdminRig) -> None:
    cert = rig.issue("sensor-role-1")
    revoke = f"{API}/certificates/{serial_hex(cert.serial)}/revoke"
    auditor, operator = rig.headers(Role.auditor), rig.headers(Role.operator)
    assert rig.client.get(API + "/certificates", headers=auditor).status_code == 200
    refused = rig.client.post(revoke, json={"reason": "superseded"}, headers=auditor)
    assert refused.status_code == 403
    assert "operator role" in refused.json()["message"]
    assert rig.client.get(API + "/tokens", headers=operator).status_code == 403
    assert rig.client.get(API + "/tokens", headers=rig.headers(Role.admin)).status_code == 200
    # The refusal changed nothing.
    assert rig.fleet.store.get_certificate(cert.serial).revoked_at is None  # type: ignore[union-attr]


def test_revocation_through_the_api_is_audited_under_the_token(rig: AdminRig) -> None:
    cert = rig.issue("sensor-revoke-1")
    serial = serial_hex(cert.serial)
    reply = rig.client.post(f"{API}/certificates/{serial}/revoke",
                            json={"reason": "keyCompromise"}, headers=rig.headers(Role.operator))
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "revoked"
    assert reply.json()["revocation_reason"] == "keyCompromise"
    stored = rig.fleet.store.get_certificate(cert.serial)
    assert stored is not None and stored.revoked_at is not None
    entries = rig.client.get(API + "/audit", params={"action": "certificate.revoked"},
                             headers=rig.headers(Role.auditor)).json()
    assert entries[0]["subject"] == serial
    assert entries[0]["actor"].startswith("token:operator-holder/")
    again = rig.client.post(f"{API}/certificates/{serial}/revoke", json={},
                            headers=rig.headers(Role.operator))
    assert again.status_code == 409
    verified = rig.client.get(API + "/audit/verify", headers=rig.headers(Role.auditor)).json()
    assert verified["intact"] is True and verified["entries"] >= 3


def test_substring_search_finds_certificates_before_and_after_the_background_round(
        rig: AdminRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve's background round fills the trigram index in chunks; a search finds the same
    certificates whether they are indexed yet or not, and ignoring case."""
    import fleetpki.wiring

    monkeypatch.setattr(fleetpki.wiring, "NAME_INDEX_CHUNK", 2)  # several chunks
    issued = [rig.issue(f"Pump-{i:02d}", "gateway",
                        sans=[x509.DNSName(f"pump-{i:02d}.gateways.fleet.internal")])
              for i in range(5)]
    auditor = rig.headers(Role.auditor)

    def search(**params: str) -> list[str]:
        reply = rig.client.get(API + "/certificates", params=params, headers=auditor)
        assert reply.status_code == 200, reply.text
        return sorted(c["device_id"] for c in reply.json()["items"])

    before = (search(subject="pump-0"), search(subject="PUMP-03"), search(san="P-04.GATE"))
    rig.fleet.background_round()
    assert rig.fleet.index_certificate_names() == 0  # caught up: nothing left to add
    late = rig.issue("Pump-05", "gateway",  # issued after the round: not indexed yet
                     sans=[x509.DNSName("pump-05.gateways.fleet.internal")])
    after = (search(subject="pump-0"), search(subject="PUMP-03"), search(san="p-05.gate"))
    names = [c.device_id for c in issued]
    assert before == (names, ["Pump-03"], ["Pump-04"])
    assert after == ([*names, late.device_id], ["Pump-03"], ["Pump-05"])


def test_certificate_search_filters_and_pages_by_cursor(rig: AdminRig) -> None:
    issued = [rig.issue(f"sensor-page-{i:02d}") for i in range(7)]
    gateway = rig.issue("gw-0001", "gateway", key="rsa-2048",
                        sans=[x509.DNSName("a.gateways.fleet.internal")])
    auditor = rig.headers(Role.auditor)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"profile": "sensor", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = rig.client.get(API + "/certificates", params=params, headers=auditor).json()
        seen += [c["serial"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(serial_hex(c.serial) for c in issued)
    assert len(seen) == len(set(seen)) == 7
    by_key = rig.client.get(API + "/certificates", params={"key_spec": "rsa-2048"},
                            headers=auditor).json()["items"]
    assert [c["device_id"] for c in by_key] == ["gw-0001"]
    by_san = rig.client.get(API + "/certificates", params={"san": "a.gateways"},
                            headers=auditor).json()["items"]
    assert [c["serial"] for c in by_san] == [serial_hex(gateway.serial)]
    prefix = serial_hex(gateway.serial)[:6]
    by_serial = rig.client.get(API + "/certificates", params={"serial": prefix},
                               headers=auditor).json()["items"]
    assert serial_hex(gateway.serial) in [c["serial"] for c in by_serial]
    detail = rig.client.get(f"{API}/certificates/{serial_hex(gateway.serial)}",
                            headers=auditor).json()
    assert detail["pem"].startswith("-----BEGIN CERTIFICATE-----")


def test_device_page_lists_its_history_newest_first(rig: AdminRig) -> None:
    first = rig.issue("sensor-history")
    second = rig.issue("sensor-history")
    auditor = rig.headers(Role.auditor)
    device = rig.client.get(API + "/devices/sensor-history", headers=auditor).json()
    assert device["certificates"] == 2 and device["valid"] == 2
    assert [c["serial"] for c in device["history"]] == [serial_hex(second.serial),
                                                        serial_hex(first.serial)]
    listed = rig.client.get(API + "/devices", params={"prefix": "sensor-hist"},
                            headers=auditor).json()["items"]
    assert [d["device_id"] for d in listed] == ["sensor-history"]
    assert rig.client.get(API + "/devices/nobody", headers=auditor).status_code == 404


def test_credentials_show_the_secret_once_and_store_only_its_hash(rig: AdminRig) -> None:
    operator = rig.headers(Role.operator)
    created = rig.client.post(API + "/credentials", json={"profile": "sensor", "max_uses": 5},
                              headers=operator)
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    stored = rig.fleet.store.get_credential(body["id"])
    assert stored is not None and secret not in stored.secret_hash
    listed = rig.client.get(API + "/credentials", headers=operator)
    assert secret not in listed.text and body["id"] in listed.text
    disabled = rig.client.post(f"{API}/credentials/{body['id']}/disable", headers=operator)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None


def test_tokens_made_through_the_api_work_and_die_when_revoked(rig: AdminRig) -> None:
    admin = rig.headers(Role.admin)
    made = rig.client.post(API + "/tokens", json={"name": "grafana", "role": "auditor",
                                                  "lifetime_days": 7}, headers=admin)
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    mine = {"Authorization": f"Bearer {token}"}
    assert rig.client.get(API + "/whoami", headers=mine).json()["role"] == "auditor"
    revoked = rig.client.post(f"{API}/tokens/{made.json()['id']}/revoke", headers=admin)
    assert revoked.status_code == 200
    refused = rig.client.get(API + "/whoami", headers=mine)
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), [
    ("post", "/credentials", {"profile": "sensor", "colour": "red"}, 422, "colour"),
    ("post", "/credentials", {"profile": "sensor", "max_uses": "many"}, 422, "max_uses"),
    ("post", "/credentials", {"profile": "nope"}, 404, "no profile named 'nope'"),
    ("post", "/tokens", {"name": "x", "role": "root"}, 422, "role"),
    ("get", "/certificates?limit=0", None, 422, "limit"),
    ("get", "/certificates?profil=sensor", None, 400, "unknown query parameter(s) profil"),
    ("get", "/certificates?limit=501", None, 422, "limit"),
    ("get", "/certificates?cursor=%%%", None, 400, "cursor"),
    ("get", "/certificates?status=lost", None, 422, "status"),
    ("get", "/certificates/zz", None, 422, "serial"),
    ("get", "/certificates/0", None, 400, "serial"),
    ("get", "/certificates/abcdef", None, 404, "no certificate"),
    ("post", "/certificates/abcdef/revoke", {"reason": "bored"}, 422, "reason"),
    ("post", "/approvals/nothing/approve", None, 404, "no pending enrollment"),
])
def test_bad_input_gets_a_precise_4xx(rig: AdminRig, method: str, path: str,
                                      body: dict[str, object] | None, status: int,
                                      says: str) -> None:
    before = rig.fleet.store.audit_head()
    reply = rig.client.request(method.upper(), API + path, json=body,
                               headers=rig.headers(Role.admin))
    assert reply.status_code == status, reply.text
    assert says in reply.json()["message"]
    assert rig.fleet.store.audit_head() == before


def test_invalid_json_and_oversized_bodies_are_refused(rig: AdminRig) -> None:
    headers = {**rig.headers(Role.admin), "Content-Type": "application/json"}
    broken = rig.client.post(API + "/credentials", content=b'{"profile": ', headers=headers)
    assert broken.status_code == 422 and "JSON" in broken.json()["message"]
    huge = rig.client.post(API + "/credentials", content=b"x" * (65 * 1024), headers=headers)
    assert huge.status_code == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          None])
def test_json_body_under_another_content_type_is_415(rig: AdminRig,
                                                      content_type: str | None) -> None:
    headers = rig.headers(Role.admin)
    if content_type is not None:
        headers["Content-Type"] = content_type
    before = rig.fleet.store.audit_head()
    reply = rig.client.post(API + "/credentials", content=b'{"profile": "sensor"}',
                            headers=headers)
    assert reply.status_code == 415, reply.text
    assert "Content-Type: application/json" in reply.json()["message"]
    assert rig.fleet.store.audit_head() == before


def test_summary_counts_the_fleet(rig: AdminRig) -> None:
    rig.issue("sensor-sum-1")
    rig.issue("gw-sum-1", "gateway", key="rsa-2048")
    operator = rig.headers(Role.operator)
    assert rig.client.get(API + "/summary", headers=operator).json()["summary"] is None
    summary = rig.client.post(API + "/summary/refresh", headers=operator).json()["summary"]
    assert summary["certificates"]["valid"] == 2
    assert summary["algorithms"] == {"ec-p256": 1, "rsa-2048": 1}
    assert sum(summary["expiry"]["per_week"]) == 2
    assert summary["devices"]["total"] == 2


def test_openapi_document_describes_the_api(rig: AdminRig) -> None:
    document = rig.client.get(API + "/openapi.json").json()
    assert "/api/v1/certificates" in document["paths"]
    assert "token" in document["components"]["securitySchemes"]


def test_discovered_certificates_are_listed_with_their_attribution(rig: AdminRig) -> None:
    cert = rig.issue("sensor-found-1")
    parsed = x509.load_der_x509_certificate(cert.der)
    found = DiscoveredCertificate(
        host="127.0.0.1", port=8883, fingerprint="ab" * 32, position=0,
        subject=parsed.subject.rfc4514_string(), issuer_name=parsed.issuer.rfc4514_string(),
        serial=cert.serial, not_before=cert.not_before, not_after=cert.not_after,
        key_spec=cert.key_spec, signature_algorithm="ecdsa-with-SHA256", issued_by_us="issuing",
        der=cert.der)
    now = rig.fleet.clock.now()
    rig.fleet.store.record_discovered([found], AuditEvent(actor="operator:test",
                                                          action="discovery.scanned",
                                                          subject="127.0.0.1:8883"), at=now)
    listed = rig.client.get(API + "/discovered", headers=rig.headers(Role.auditor)).json()
    assert [(d["endpoint"], d["issued_by_us"], d["serial"]) for d in listed] == [
        ("127.0.0.1:8883", "issuing", serial_hex(cert.serial))]
