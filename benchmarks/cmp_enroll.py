"""CMP throughput of `fleetpki serve`: ir with MAC protection, then kur signed with the
certificate the ir gave.

    .venv/bin/python benchmarks/cmp_enroll.py [--enrollments 600] [--clients 8] [--workers 2]

Untimed set-up: a fresh `fleetpki init` home, a `bench` profile (P-256, renew at any time,
rate limits off), one group bootstrap credential; P-256 device keys and every ir message
(PasswordBasedMac, 500 iterations as OpenSSL 3.0 makes them, signature proof of possession)
are made before any clock runs. Timed phases, over plain HTTP from forked clients, a fresh
connection per message, implicit confirmation asked (one round trip per certificate):
  ir-mac     initial registration, MAC-protected with the bootstrap secret
  kur-sig    key update signed with the current certificate (built from the ir replies)
Reference, measured in the same run: `openssl speed ecdsap256` signatures per second. The
server signs twice per certificate (the certificate with the CA key, the response with the
CMP server key), so half that rate per worker bounds what CMP could reach. Every reply is
checked to carry a certificate. Always exits 0: not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from est_enroll import bench_home, fleet_server, fleetpki, free_port
from pyasn1_alt_modules import rfc9810  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.protocols.cmp.asn1 import (
    IT_IMPLICIT_CONFIRM,
    PASSWORD_BASED_MAC,
    algorithm_identifier,
    bit_string,
    decode,
    directory_name,
    encode,
    itav,
)

PROFILE = """
[profiles.bench]
issuer = "issuing"
device_id_from = "CN"
keys = { allowed = ["ec-p256"] }
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 1.0 }
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
_FORK = multiprocessing.get_context("fork")
_SHA256 = "2.16.840.1.101.3.4.2.1"
_HMAC_SHA256 = "1.2.840.113549.2.9"
_ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def _cert_request(cn: str, key: ec.EllipticCurvePrivateKey, body_tag: int) -> bytes:
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]).public_bytes()
    request = der.sequence(der.integer(0), der.sequence(der.context(5, name),
                                                        b"\xa6" + spki[1:]))
    pop = der.context(1, algorithm_identifier(_ECDSA_SHA256)
                      + bit_string(key.sign(request, ec.ECDSA(hashes.SHA256()))))
    return der.context(body_tag, der.sequence(der.sequence(request, pop)))


def _header(protection: bytes, kid: bytes) -> bytes:
    return der.sequence(
        der.integer(2), directory_name(der.sequence()), directory_name(der.sequence()),
        der.context(0, der.generalized_time(dt.datetime.now(dt.UTC))),
        der.context(1, protection), der.context(2, der.octet_string(kid)),
        der.context(4, der.octet_string(os.urandom(16))),
        der.context(5, der.octet_string(os.urandom(16))),
        der.context(8, der.sequence(itav(IT_IMPLICIT_CONFIRM, der.tlv(der.NULL, b"")))))


def ir_message(cn: str, key: ec.EllipticCurvePrivateKey, kid: str, secret: str) -> bytes:
    salt, iterations = os.urandom(16), 500
    protection = algorithm_identifier(PASSWORD_BASED_MAC, der.sequence(
        der.octet_string(salt), algorithm_identifier(_SHA256), der.integer(iterations),
        algorithm_identifier(_HMAC_SHA256)))
    header, body = _header(protection, kid.encode()), _cert_request(cn, key, 0)
    mac_key = hashlib.sha256(secret.encode() + salt).digest()
    for _ in range(iterations - 1):
        mac_key = hashlib.sha256(mac_key).digest()
    tag = hmac.new(mac_key, der.sequence(header, body), hashlib.sha256).digest()
    return der.sequence(header, body, der.context(0, bit_string(tag)))


def kur_message(cn: str, old_key: ec.EllipticCurvePrivateKey, old_cert: bytes,
                new_key: ec.EllipticCurvePrivateKey) -> bytes:
    ski = x509.SubjectKeyIdentifier.from_public_key(old_key.public_key()).digest
    header = _header(algorithm_identifier(_ECDSA_SHA256), ski)
    name = x509.load_der_x509_certificate(old_cert).subject.public_bytes()
    header = der.sequence(*[directory_name(name) if i == 1 else part
                            for i, part in enumerate(der.elements(header))])
    body = _cert_request(cn, new_key, 7)
    signature = old_key.sign(der.sequence(header, body), ec.ECDSA(hashes.SHA256()))
    return der.sequence(header, body, der.context(0, bit_string(signature)),
                        der.context(1, der.sequence(old_cert)))


def _issued(reply: bytes) -> bytes | None:
    """The certificate DER of an ip/kup, None for anything else."""
    message = decode(reply, rfc9810.PKIMessage(), "reply")
    if message["body"].getName() not in ("ip", "kup"):
        return None
    pair = message["body"].getComponent()["response"][0]["certifiedKeyPair"]
    if not pair.isValue:
        return None
    # certOrEncCert.certificate is [0] EXPLICIT: its content is the certificate.
    return der.content(encode(pair["certOrEncCert"]["certificate"]))


def _client(index: int, port: int, bodies: list[bytes], queue: object) -> None:
    latencies, issued = [], []
    for body in bodies:
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("POST", "/.well-known/cmp/p/bench", body,
                               {"Content-Type": "application/pkixcmp"})
            response = connection.getresponse()
            reply = response.read()
            issued.append(_issued(reply) if response.status == 200 else None)
        except (OSError, http.client.HTTPException, ValueError):
            issued.append(None)
        finally:
            connection.close()
        latencies.append(time.perf_counter() - started)
    queue.put((index, latencies, issued))  # type: ignore[attr-defined]


def run_phase(port: int, bodies: list[bytes], clients: int
              ) -> tuple[dict[str, float], list[bytes | None]]:
    queue = _FORK.Queue()
    processes = [_FORK.Process(target=_client, args=(i, port, bodies[i::clients], queue))
                 for i in range(clients)]
    started = time.perf_counter()
    for process in processes:
        process.start()
    results = sorted(queue.get(timeout=600) for _ in processes)  # by client index
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join(timeout=30)
    latencies = sorted(v for result in results for v in result[1])
    issued = [cert for result in results for cert in result[2]]
    return ({"requests": len(latencies), "errors": sum(c is None for c in issued),
             "rate": len(latencies) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
             "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}, issued)


def openssl_ecdsa_p256_signs() -> float:
    output = subprocess.run(["openssl", "speed", "-seconds", "3", "ecdsap256"],
                            capture_output=True, text=True, timeout=120).stdout
    match = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)", output)
    return float(match.group(1)) if match else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CMP ir (MAC) and kur (signature) per second.")
    parser.add_argument("--enrollments", type=int, default=600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleetpki-cmp-bench-") as tmp:
        home = Path(tmp) / "home"
        http_port = free_port()
        bench_home(home, PROFILE, SETTINGS.format(workers=args.workers, http_port=http_port))
        made = json.loads(subprocess.run(
            fleetpki(home, "bootstrap", "create", "--profile", "bench", "--uses",
                     str(args.enrollments + 100), "--json"),
            capture_output=True, check=True, timeout=60).stdout)
        print(f"making {args.enrollments + 50} P-256 keys and ir messages (untimed) ...",
              file=sys.stderr)
        keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(args.enrollments)]
        names = [f"c-{i:06d}" for i in range(args.enrollments)]
        irs = [ir_message(n, k, made["id"], made["secret"]) for n, k in zip(names, keys,
                                                                          strict=True)]
        warm = [ir_message(f"w-{i}", ec.generate_private_key(ec.SECP256R1()), made["id"],
                           made["secret"]) for i in range(50)]
        reference = openssl_ecdsa_p256_signs()
        with fleet_server(home, args.workers):
            run_phase(http_port, warm, args.clients)
            # Clients take every clients-th message: keep the order to match certificates.
            ir_figures, issued_shuffled = run_phase(http_port, irs, args.clients)
            order = [i for c in range(args.clients) for i in range(c, len(irs), args.clients)]
            issued: list[bytes | None] = [None] * len(irs)
            for position, index in enumerate(order):
                issued[index] = issued_shuffled[position]
            kurs = [kur_message(n, k, c, ec.generate_private_key(ec.SECP256R1()))
                    for n, k, c in zip(names, keys, issued, strict=True) if c is not None]
            kur_figures, _ = run_phase(http_port, kurs, args.clients)
    bound = reference / 2 * min(args.workers, os.cpu_count() or 1)
    phases = {"ir-mac": ir_figures, "kur-sig": kur_figures}
    summary = {"phases": phases, "openssl_ecdsa_p256_signs_per_core": reference,
               "bound_per_s": bound, "ir_vs_bound": ir_figures["rate"] / bound,
               "kur_vs_bound": kur_figures["rate"] / bound}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{'phase':<8} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, figures in phases.items():
        print(f"{name:<8} {figures['rate']:>8.1f} {figures['p50_ms']:>8.1f} "
              f"{figures['p99_ms']:>8.1f} {int(figures['errors']):>7}")
    print(f"reference: openssl ECDSA P-256 {reference:.0f} signatures/s per core; two per "
          f"certificate -> at most {bound:.0f}/s on {min(args.workers, os.cpu_count() or 1)} "
          "cores")
    print(f"ir / bound = {summary['ir_vs_bound']:.4f}; kur / bound = "
          f"{summary['kur_vs_bound']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
