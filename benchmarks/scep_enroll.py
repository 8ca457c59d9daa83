"""SCEP enrollment throughput of `fleetpki serve`, beside EST in the same run.

    .venv/bin/python benchmarks/scep_enroll.py [--enrollments 1500] [--clients 8] [--workers 2]

Every request is a first enrollment on a fresh connection, as devices of a manufacturing run
or a router fleet send them. Untimed set-up: a fresh `fleetpki init` home, a `bench` profile
(RSA keys, SCEP on, rate limits off), a static SCEP challenge and a group bootstrap credential;
RSA-2048 device keys, CSRs and the SCEP PKCSReq messages are made before any clock runs (they
are the device's work, not the server's). Timed phases, each from the same forked client
processes, one request after the other per client:
  scep-http   PKIOperation POST over plain HTTP (where SCEP is usually served)
  scep-https  the same over HTTPS, server authentication only (TLS 1.3)
  est-https   EST simpleenroll with the bootstrap secret (HTTP Basic), HTTPS, TLS 1.3
Reference, measured in the same run: `openssl speed` RSA-3072 private-key operations. A SCEP
enrollment costs the server two of them (decrypting the request's key transport and signing
the reply with the RA key), so half that rate per worker is the most SCEP could reach if
nothing else cost anything. Every response is checked (SUCCESS, a certificate in the envelope
for SCEP; 200 for EST). Always exits 0: not a test.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import multiprocessing
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from est_enroll import bench_home, fleet_server, fleetpki, free_port

from fleetpki.core import der
from fleetpki.protocols.scep.cms import attribute, open_signed, seal_envelope, sign

PROFILE = """
[profiles.bench]
issuer = "issuing"
keys = { allowed = ["rsa"], rsa_min_bits = 2048 }
validity = { default = "365d", maximum = "365d" }
subject.attributes.CN = { required = true }
extensions.key_usage = ["digitalSignature", "keyEncipherment"]
extensions.extended_key_usage = ["clientAuth"]
enrollment = { scep = true }
"""
SETTINGS = """
[server]
workers = {workers}
[est]
default_profile = "bench"
rate_limits = {{ per_credential = "off", per_address = "off" }}
[revocation]
listen = "127.0.0.1:{http_port}"
[admin]
listen = "off"
"""
_PKI_STATUS = "2.16.840.1.113733.1.9.3"
_FORK = multiprocessing.get_context("fork")


def scep_message(cn: str, challenge: str, ra: x509.Certificate) -> bytes:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(name)
           .add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    now = dt.datetime.now(dt.UTC)
    signer = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
              .sign(key, hashes.SHA256()))
    attributes = [attribute("2.16.840.1.113733.1.9.2", der.tlv(0x13, b"19")),
                  attribute("2.16.840.1.113733.1.9.7", der.tlv(0x13, cn.encode())),
                  attribute("2.16.840.1.113733.1.9.5", der.octet_string(os.urandom(16)))]
    return sign(seal_envelope(csr, ra), attributes, signer, key, hashes.SHA256(), [signer])


def est_csr(cn: str) -> bytes:
    key = rsa.generate_private_key(65537, 2048)
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER))


def _client(kind: str, port: int, bodies: list[bytes], basic: str, queue: object) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's identity is not what is measured
    latencies, errors = [], 0
    for body in bodies:
        started = time.perf_counter()
        if kind == "scep-http":
            connection: http.client.HTTPConnection = http.client.HTTPConnection(
                "127.0.0.1", port, timeout=30)
        else:
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                                     context=context)
        try:
            if kind == "est-https":
                connection.request("POST", "/.well-known/est/simpleenroll", body, {
                    "Content-Type": "application/pkcs10", "Authorization": basic})
                response = connection.getresponse()
                ok = response.status == 200 and bool(response.read())
            else:
                connection.request("POST", "/scep/bench?operation=PKIOperation", body,
                                   {"Content-Type": "application/x-pki-message"})
                response = connection.getresponse()
                reply = response.read()
                status = open_signed(reply).attributes.get(_PKI_STATUS, (b"",))[0]
                ok = response.status == 200 and status == der.tlv(0x13, b"0")
        except (OSError, http.client.HTTPException, ValueError):
            ok = False
        finally:
            connection.close()
        latencies.append(time.perf_counter() - started)
        errors += not ok
    queue.put((latencies, errors))  # type: ignore[attr-defined]


def run_phase(kind: str, port: int, bodies: list[bytes], clients: int, basic: str
              ) -> dict[str, float]:
    queue = _FORK.Queue()
    shares = [bodies[i::clients] for i in range(clients)]
    processes = [_FORK.Process(target=_client, args=(kind, port, share, basic, queue))
                 for share in shares]
    started = time.perf_counter()
    for process in processes:
        process.start()
    results = [queue.get(timeout=600) for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join(timeout=30)
    latencies = sorted(value for result in results for value in result[0])
    return {"requests": len(latencies), "errors": sum(r[1] for r in results),
            "rate": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def openssl_rsa3072_private_ops() -> float:
    """Private-key operations per second of one core (openssl speed rsa3072, 'sign/s')."""
    output = subprocess.run(["openssl", "speed", "-seconds", "3", "rsa3072"],
                            capture_output=True, text=True, timeout=120).stdout
    match = re.search(r"^rsa 3072 bits\s+\S+s\s+\S+s\s+([\d.]+)", output, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SCEP and EST enrollments per second.")
    parser.add_argument("--enrollments", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleetpki-scep-bench-") as tmp:
        home = Path(tmp) / "home"
        http_port = free_port()
        bench_home(home, PROFILE, SETTINGS.format(workers=args.workers, http_port=http_port))
        challenge = subprocess.run(fleetpki(home, "scep", "challenge", "set", "bench"),
                                   capture_output=True, text=True, check=True,
                                   timeout=60).stdout.strip()
        made = json.loads(subprocess.run(
            fleetpki(home, "bootstrap", "create", "--profile", "bench", "--uses",
                     str(args.enrollments * 2), "--json"),
            capture_output=True, check=True, timeout=60).stdout)
        basic = "Basic " + base64.b64encode(f"{made['id']}:{made['secret']}".encode()).decode()
        ra_file = json.loads(subprocess.run(fleetpki(home, "scep", "ra", "--json"),
                                            capture_output=True, check=True,
                                            timeout=120).stdout)[0]["certificate"]
        ra = x509.load_pem_x509_certificate(Path(ra_file).read_bytes())
        print(f"making {3 * args.enrollments} RSA-2048 keys and requests (untimed) ...",
              file=sys.stderr)
        scep_http = [scep_message(f"h-{i:06d}", challenge, ra) for i in range(args.enrollments)]
        scep_https = [scep_message(f"s-{i:06d}", challenge, ra) for i in range(args.enrollments)]
        est = [est_csr(f"e-{i:06d}") for i in range(args.enrollments)]
        reference = openssl_rsa3072_private_ops()
        with fleet_server(home, args.workers) as (https_port, _pid):
            run_phase("scep-http", http_port, scep_http[:100], args.clients, basic)  # warm-up
            phases = {
                "scep-http": run_phase("scep-http", http_port, scep_http[100:], args.clients,
                                       basic),
                "scep-https": run_phase("scep-https", https_port, scep_https, args.clients,
                                        basic),
                "est-https": run_phase("est-https", https_port, est, args.clients, basic),
            }
    bound = reference / 2 * min(args.workers, os.cpu_count() or 1)
    summary = {"phases": phases, "openssl_rsa3072_private_ops_per_core": reference,
               "scep_bound_per_s": bound,
               "scep_http_vs_bound": phases["scep-http"]["rate"] / bound,
               "scep_https_vs_est_https": phases["scep-https"]["rate"]
               / phases["est-https"]["rate"]}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{'phase':<11} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, figures in phases.items():
        print(f"{name:<11} {figures['rate']:>8.1f} {figures['p50_ms']:>8.1f} "
              f"{figures['p99_ms']:>8.1f} {int(figures['errors']):>7}")
    print(f"reference: openssl RSA-3072 private ops {reference:.0f}/s per core; two per SCEP "
          f"enrollment -> at most {bound:.0f}/s on {min(args.workers, os.cpu_count() or 1)} "
          "cores")
    print(f"scep-http / bound = {summary['scep_http_vs_bound']:.2f}; "
          f"scep-https / est-https = {summary['scep_https_vs_est_https']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
