"""ACME throughput of `fleetpki serve`: nonces, and orders finalized with pre-validated
authorizations.

    .venv/bin/python benchmarks/acme_orders.py [--orders 400] [--clients 8] [--workers 2]

Untimed set-up: a fresh `fleetpki init` home with the default `edge` profile, rate limits
off; one account per client (external account binding), each with an authorization for its
own name proven over http-01 (served by this script), so that every timed order reuses it
(RFC 8555 §7.4) and is ready at once. P-256 certificate keys and CSRs are made beforehand.
Timed phases, over HTTPS with keep-alive from forked clients, each request signed (ES256) with
the nonce of the previous reply, as ACME clients do:
  nonces    HEAD newNonce
  orders    newOrder (ready at once) + finalize + certificate download: one certificate each
Reference, measured in the same run: `openssl speed ecdsap256` signatures per second; the
server signs once per certificate (with the issuing CA key) and verifies two client JWS, so
that rate per worker bounds what finalization could reach. Always exits 0: not a test.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from cmp_enroll import openssl_ecdsa_p256_signs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from est_enroll import bench_home, fleet_server, fleetpki
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, thumbprint
from joserfc.jws import JWSRegistry

DOMAIN = "edge.fleet.internal"
SETTINGS = """
[server]
workers = {workers}
[acme.rate_limits]
per_account = "off"
orders_per_identifier = "off"
[acme.validation]
hosts = {{ {hosts} }}
http_port = {http_port}
"""
_REGISTRY = JWSRegistry(algorithms=["ES256", "HS256"], strict_check_header=False)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Client:
    """Just enough ACME to order: signs with the previous reply's nonce."""

    def __init__(self, directory_url: str, ca_file: str, key: ECKey,
                 account: str | None = None) -> None:
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=ca_file),
                                 timeout=60.0, trust_env=False)
        self.directory = self.http.get(directory_url).json()
        self.key = key
        self.account = account
        self.nonce = self.http.head(self.directory["newNonce"]).headers["Replay-Nonce"]

    def post(self, url: str, payload: Any | None) -> httpx.Response:
        header: dict[str, Any] = {"alg": "ES256", "url": url, "nonce": self.nonce}
        if self.account:
            header["kid"] = self.account
        else:
            header["jwk"] = dict(self.key.as_dict(private=False))
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = jws.serialize_json({"protected": header}, body, self.key,
                                    algorithms=["ES256"], registry=_REGISTRY)
        reply = self.http.post(url, content=json.dumps(signed).encode(),
                               headers={"Content-Type": "application/jose+json"})
        self.nonce = reply.headers.get("Replay-Nonce", self.nonce)
        return reply

    def register(self, key_id: str, mac_key: str) -> None:
        mac = OctKey.import_key(base64.urlsafe_b64decode(mac_key + "=" * (-len(mac_key) % 4)))
        eab = jws.serialize_json(
            {"protected": {"alg": "HS256", "kid": key_id, "url": self.directory["newAccount"]}},
            json.dumps(self.key.as_dict(private=False)).encode(), mac,
            algorithms=["HS256"], registry=_REGISTRY)
        reply = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True,
                                                         "externalAccountBinding": dict(eab)})
        reply.raise_for_status()
        self.account = reply.headers["Location"]

    def order(self, name: str) -> dict[str, Any]:
        reply = self.post(self.directory["newOrder"],
                          {"identifiers": [{"type": "dns", "value": name}]})
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result


def _answers() -> tuple[dict[str, bytes], ThreadingHTTPServer]:
    answers: dict[str, bytes] = {}

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path.rsplit("/", 1)[-1], b"")
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return answers, ThreadingHTTPServer(("127.0.0.1", 0), Answer)


def _csr(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(key, hashes.SHA256()))
    return b64url(csr.public_bytes(serialization.Encoding.DER))


def _orders(directory: str, ca_file: str, key: dict[str, Any], account: str, name: str,
            csrs: list[str], queue: Any) -> None:
    client = Client(directory, ca_file, ECKey.import_key(key), account)
    latencies, errors = [], 0
    for csr in csrs:
        started = time.perf_counter()
        try:
            order = client.order(name)
            done = client.post(order["finalize"], {"csr": csr}).json()
            chain = client.post(done["certificate"], None)
            if chain.status_code != 200 or b"BEGIN CERTIFICATE" not in chain.content:
                errors += 1
        except (httpx.HTTPError, KeyError, ValueError):
            errors += 1
        latencies.append(time.perf_counter() - started)
    queue.put((latencies, errors))


def _nonces(url: str, ca_file: str, count: int, queue: Any) -> None:
    latencies = []
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_file), trust_env=False) as http:
        for _ in range(count):
            started = time.perf_counter()
            http.head(url).headers["Replay-Nonce"]
            latencies.append(time.perf_counter() - started)
    queue.put((latencies, 0))


def _phase(target: Any, jobs: list[tuple[Any, ...]]) -> dict[str, float]:
    queue: Any = multiprocessing.get_context("fork").Queue()
    processes = [multiprocessing.get_context("fork").Process(target=target, args=(*job, queue))
                 for job in jobs]
    started = time.perf_counter()
    for process in processes:
        process.start()
    results = [queue.get(timeout=600) for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join(timeout=30)
    latencies = sorted(x for found, _ in results for x in found)
    return {"count": len(latencies), "seconds": elapsed, "rate": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "errors": sum(e for _, e in results)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ACME nonces/s and orders finalized/s.")
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--nonces", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [f"bench{i}.{DOMAIN}" for i in range(args.clients)]
    answers, answer_server = _answers()
    threading.Thread(target=answer_server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="fleetpki-acme-bench-") as tmp:
        home = Path(tmp) / "home"
        hosts = ", ".join(f'"{n}" = "127.0.0.1"' for n in names)
        bench_home(home, "", SETTINGS.format(workers=args.workers, hosts=hosts,
                                             http_port=answer_server.server_address[1]))
        chain = subprocess.run(fleetpki(home, "ca", "export-chain", "issuing"),
                               capture_output=True, text=True, check=True, timeout=60).stdout
        ca_file = str(Path(tmp) / "chain.pem")
        Path(ca_file).write_text(chain)
        per_client = args.orders // args.clients
        print(f"making {per_client * args.clients} CSRs (untimed) ...", file=sys.stderr)
        csrs = [[_csr(name) for _ in range(per_client)] for name in names]
        reference = openssl_ecdsa_p256_signs()
        with fleet_server(home, args.workers) as (port, _):
            directory = f"https://127.0.0.1:{port}/acme/directory"
            accounts = []
            for name in names:  # untimed: accounts and validated authorizations
                made = json.loads(subprocess.run(
                    fleetpki(home, "acme", "eab", "create", "--json"), capture_output=True,
                    check=True, timeout=60).stdout)
                key = ECKey.generate_key("P-256")
                client = Client(directory, ca_file, key)
                client.register(made["key_id"], made["hmac_key"])
                order = client.order(name)
                authz = client.post(order["authorizations"][0], None).json()
                challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
                answers[challenge["token"]] = \
                    f"{challenge['token']}.{thumbprint(key.as_dict(private=False))}".encode()
                assert client.post(challenge["url"], {}).json()["status"] == "valid"
                accounts.append((dict(key.as_dict(private=True)), client.account))
            nonce_url = f"https://127.0.0.1:{port}/acme/new-nonce"
            _phase(_nonces, [(nonce_url, ca_file, 50)] * args.clients)  # warm-up
            nonces = _phase(_nonces, [(nonce_url, ca_file, args.nonces // args.clients)]
                            * args.clients)
            orders = _phase(_orders, [(directory, ca_file, key, account, name, batch)
                                      for (key, account), name, batch
                                      in zip(accounts, names, csrs, strict=True)])
    answer_server.shutdown()
    cores = min(args.workers, os.cpu_count() or 1)
    bound = reference * cores
    summary = {"nonces": nonces, "orders": orders, "openssl_ecdsa_p256_signs_per_core": reference,
               "orders_vs_openssl_signs": orders["rate"] / bound}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{'phase':<8} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, figures in (("nonces", nonces), ("orders", orders)):
        print(f"{name:<8} {figures['rate']:>8.1f} {figures['p50_ms']:>8.1f} "
              f"{figures['p99_ms']:>8.1f} {int(figures['errors']):>7}")
    print(f"reference: openssl ECDSA P-256 {reference:.0f} signatures/s per core, "
          f"{bound:.0f}/s on {cores} cores; orders / that = "
          f"{summary['orders_vs_openssl_signs']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
