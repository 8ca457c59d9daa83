"""A minimal ACME client for the tests that certbot and lego cannot drive: requests signed
exactly as RFC 8555 §6.2 says, or broken on purpose (alg none, HS256, a wrong url, a reused
nonce, an oversized key). JWS are made with joserfc, independently of the server's parser."""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, RSAKey
from joserfc.jws import JWSRegistry

_REGISTRY = JWSRegistry(algorithms=["ES256", "RS256", "HS256"], strict_check_header=False)
_REGISTRY.max_header_length = 16384


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem(self) -> str:
        """The problem type's last part, e.g. "badNonce"."""
        document = self.json()
        return str(document["type"]).rsplit(":", 1)[-1]


@dataclass
class AcmeTestClient:
    directory_url: str
    ca_file: Path
    key: ECKey | RSAKey = field(default_factory=lambda: ECKey.generate_key("P-256"))
    account_url: str | None = None

    def __post_init__(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        self.http = httpx.Client(verify=context, timeout=60.0, trust_env=False)
        self.directory = self.http.get(self.directory_url).json()

    def close(self) -> None:
        self.http.close()

    def nonce(self) -> str:
        return self.http.head(self.directory["newNonce"]).headers["Replay-Nonce"]

    def jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=False))

    def sign(self, url: str, payload: bytes, *, alg: str = "ES256", nonce: str | None = None,
             use_jwk: bool | None = None, key: Any = None, extra: dict[str, Any] | None = None
             ) -> dict[str, Any]:
        protected: dict[str, Any] = {"alg": alg, "url": url,
                                     "nonce": nonce if nonce is not None else self.nonce()}
        if use_jwk or (use_jwk is None and self.account_url is None):
            protected["jwk"] = self.jwk()
        else:
            protected["kid"] = self.account_url
        protected.update(extra or {})
        signed = jws.serialize_json({"protected": protected}, payload, key or self.key,
                                    algorithms=[alg], registry=_REGISTRY)
        return dict(signed)

    def post_raw(self, url: str, body: bytes,
                 content_type: str = "application/jose+json") -> Reply:
        response = self.http.post(url, content=body, headers={"Content-Type": content_type})
        return Reply(response.status_code, response.headers, response.content)

    def post(self, url: str, payload: Any | None, **sign: Any) -> Reply:
        data = b"" if payload is None else json.dumps(payload).encode()
        return self.post_raw(url, json.dumps(self.sign(url, data, **sign)).encode())

    def eab(self, key_id: str, mac_key: str, alg: str = "HS256") -> dict[str, Any]:
        """RFC 8555 §7.3.4: the account key, MACed with the EAB key."""
        mac = OctKey.import_key(base64.urlsafe_b64decode(mac_key + "=" * (-len(mac_key) % 4)))
        payload = json.dumps(self.jwk()).encode()
        return dict(jws.serialize_json(
            {"protected": {"alg": alg, "kid": key_id, "url": self.directory["newAccount"]}},
            payload, mac, algorithms=[alg], registry=_REGISTRY))

    def key_change(self, new_key: ECKey) -> dict[str, Any]:
        """RFC 8555 §7.3.5: the inner JWS, signed by the new key, naming the old one."""
        url = self.directory["keyChange"]
        payload = json.dumps({"account": self.account_url, "oldKey": self.jwk()}).encode()
        return dict(jws.serialize_json(
            {"protected": {"alg": "ES256", "jwk": dict(new_key.as_dict(private=False)),
                           "url": url}}, payload, new_key, algorithms=["ES256"],
            registry=_REGISTRY))

    def register(self, key_id: str, mac_key: str) -> Reply:
        reply = self.post(self.directory["newAccount"], {
            "termsOfServiceAgreed": True, "contact": ["mailto:ops@example.com"],
            "externalAccountBinding": self.eab(key_id, mac_key)})
        if reply.status in (200, 201):
            self.account_url = reply.headers["Location"]
        return reply
