"""What a device downloads to check one certificate, by revocation mechanism.

Run from the repository root:

    .venv/bin/python benchmarks/revocation_sizes.py [--issued 1000000] [--revoked 10000]
                                                     [--shards 64] [--delta 100] [--json]

A fleet of --issued certificates (default 1,000,000) of one profile, --revoked of them revoked
(default 10,000, 1%) with a reason, in a real fleetpki store (SQLite) with a real P-256 issuing
CA, published by the real pipeline (CrlPublisher: entries streamed from the store, signed,
written to files). Then --delta more revocations, as a day's worth, and the delta CRL that
follows. Printed side by side, in bytes:

- the complete CRL of the issuing CA;
- one shard of the same certificates spread over --shards partitions (the largest shard, and the
  mean), as a device checking one certificate fetches only the shard its certificate names;
- the delta CRL after --delta new revocations;
- one OCSP response from the real responder (pre-signed, P-256 delegated responder, responder
  certificate included as RFC 6960 §4.2.2.2 delegation requires), with and without a nonce.

The store is filled with plain SQL (one transaction) rather than a million issuances: the rows
are what `fleetpki batch` writes, minus the certificate bytes (a placeholder), which no
revocation mechanism reads. Signing times of the publisher are printed for scale; the
like-for-like timing against `openssl ca -gencrl` is benchmarks/crl_generation.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from rich.console import Console
from rich.table import Table
from store_rows import Row, fill

from fleetpki.ca.ceremony import ca_name, create_issuing, create_root
from fleetpki.core.clock import FakeClock
from fleetpki.core.keys import KeyPolicy, KeySpec
from fleetpki.core.names import SanPolicy, SubjectPolicy
from fleetpki.core.profile import Profile, Urls, Validity
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CARecord, CARole
from fleetpki.core.revocation_policy import CrlScope, RevocationPolicy
from fleetpki.core.serials import RandomSerials
from fleetpki.ocsp_identity import PROFILE_NAME as OCSP_PROFILE
from fleetpki.ocsp_identity import ensure_responder, load_responder, responder_profile
from fleetpki.ra.service import IssuanceService
from fleetpki.revocation.crl_publisher import CrlPublisher, CrlTiming
from fleetpki.revocation.ocsp_responder import OcspResponder
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
PASSPHRASE = b"benchmark passphrase"
BASE = "http://pki.fleet.example:8080/crl/issuing"
REASONS = [RevocationReason.key_compromise, RevocationReason.superseded,
           RevocationReason.cessation_of_operation, RevocationReason.unspecified]


class Signers:
    def __init__(self, signer: object) -> None:
        self._signer = signer

    def signer(self, name: str):  # type: ignore[no-untyped-def]
        return self._signer


def profiles(shards: int) -> dict[str, Profile]:
    def make(name: str, policy: RevocationPolicy, crl: str, delta: str) -> Profile:
        return Profile(
            name=name, issuer="issuing", keys=KeyPolicy(allowed=frozenset({"ec-p256"})),
            validity=Validity(default=365 * DAY, maximum=365 * DAY), subject=SubjectPolicy(),
            san=SanPolicy(), key_usage=frozenset({"digitalSignature"}), extended_key_usage=(),
            urls=Urls(crl_distribution_points=(crl,), freshest_crl=(delta,)),
            revocation=policy)

    # "plain" issues nothing here; it is what gives the CA's complete CRL its delta series.
    return {"sharded": make("sharded", RevocationPolicy(crl_shards=shards, delta_crl=True),
                            f"{BASE}/sharded-{{shard}}.crl",
                            f"{BASE}/sharded-{{shard}}-delta.crl"),
            "plain": make("plain", RevocationPolicy(delta_crl=True), f"{BASE}.crl",
                          f"{BASE}-delta.crl")}


def fleet_rows(issued: int, revoked: int, shards: int, seed: int) -> tuple[list[Row], list[int]]:
    """`issued` rows, `revoked` of them revoked with mixed reasons; and every serial."""
    rng = random.Random(seed)
    serials = [rng.getrandbits(159) | 1 << 158 for _ in range(issued)]
    chosen = dict.fromkeys(rng.sample(range(issued), revoked), True)
    not_after, revoked_at = NOW + 335 * DAY, NOW - 30 * DAY
    rows = [Row(serial, not_after, serial % shards,
                revoked_at if i in chosen else None,
                REASONS[i % len(REASONS)] if i in chosen else None)
            for i, serial in enumerate(serials)]
    return rows, serials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issued", type=int, default=1_000_000)
    parser.add_argument("--revoked", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--delta", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)

    with tempfile.TemporaryDirectory(prefix="fleetpki-revsize-") as tmp:
        work = Path(tmp)
        root = create_root("root", ca_name("Root", "Bench"), KeySpec.parse("ec-p256"),
                           now=NOW - 60 * DAY)
        issuing = create_issuing("issuing", ca_name("Issuing", "Bench"),
                                 KeySpec.parse("ec-p256"), root, now=NOW - 60 * DAY)
        store = SqlStore(f"sqlite:///{work / 'fleet.db'}")
        for signer, role, parent in ((root, CARole.root, None),
                                     (issuing, CARole.issuing, "root")):
            store.add_ca(CARecord(signer.name, role, signer.certificate.public_bytes(
                serialization.Encoding.DER), parent, "k", NOW - 60 * DAY),
                AuditEvent("bench", "ca.created", signer.name), at=NOW - 60 * DAY)
        rows, serials = fleet_rows(args.issued, args.revoked, args.shards, seed=7)
        fill(work / "fleet.db", "issuing", "sharded", rows, total=args.issued,
             issued_at=NOW - 30 * DAY)
        del rows
        clock = FakeClock(NOW)
        publisher = CrlPublisher(store, store, Signers(issuing), profiles(args.shards),
                                 work / "crl", clock, CrlTiming(7 * DAY, DAY), actor="bench")
        started = time.perf_counter()
        written = publisher.publish()
        publish_seconds = time.perf_counter() - started
        full = next(w for w in written if w.scope.profile is None and w.kind == "full")
        shard_sizes = [w.size for w in written if w.scope.profile and w.kind == "full"]

        clock.advance(dt.timedelta(hours=1))
        rng = random.Random(8)
        revoked_now = set()
        for serial in rng.sample(serials, args.delta * 2):
            record = store.get_certificate(serial, "issuing")
            if record is not None and record.revoked_at is None and len(revoked_now) < args.delta:
                store.revoke("issuing", record.serial, RevocationReason.key_compromise,
                             at=clock.now(), event=AuditEvent("bench", "certificate.revoked",
                                                              f"{serial:x}"))
                revoked_now.add(serial)
        deltas = publisher.publish()
        delta = next(w for w in deltas if w.scope == CrlScope("issuing") and w.kind == "delta")
        shard_deltas = [w.size for w in deltas if w.scope.profile and w.kind == "delta"]

        # The delegated responder exactly as `fleetpki serve` makes it.
        issuance = IssuanceService(store, {OCSP_PROFILE: responder_profile("issuing")},
                                   Signers(issuing), clock, RandomSerials())
        files = ensure_responder(work / "ocsp", "issuing", issuing.certificate, issuance,
                                 PASSPHRASE, clock.now(), answer_validity=DAY)
        ocsp_responder = OcspResponder(
            store, [load_responder(files, "issuing", issuing.certificate, PASSPHRASE)], clock)
        leaf_serial = serials[0]
        request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            *_cert_id(issuing.certificate), leaf_serial, hashes.SHA1()).build()  # noqa: S303
        nonced = (ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            *_cert_id(issuing.certificate), leaf_serial, hashes.SHA1())  # noqa: S303
            .add_extension(x509.OCSPNonce(b"\x01" * 16), critical=False).build())
        plain = ocsp_responder.respond(request.public_bytes(serialization.Encoding.DER))
        with_nonce = ocsp_responder.respond(nonced.public_bytes(serialization.Encoding.DER))
        store.close()

    rows = [
        ("complete CRL", full.size, f"{full.entries:,} entries"),
        (f"one of {args.shards} shards (largest)", max(shard_sizes),
         f"mean {statistics.mean(shard_sizes):,.0f} B"),
        (f"delta CRL after {args.delta} revocations", delta.size, f"{delta.entries} entries"),
        ("one shard's delta (largest)", max(shard_deltas),
         f"mean {statistics.mean(shard_deltas):,.0f} B"),
        ("one OCSP response", len(plain.der), "pre-signed, responder cert included"),
        ("one OCSP response with nonce", len(with_nonce.der), "signed per request"),
    ]
    figures = {"issued": args.issued, "revoked": args.revoked, "shards": args.shards,
               "delta_revocations": args.delta, "publish_seconds": round(publish_seconds, 2),
               "bytes": {name: size for name, size, _ in rows}}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    table = Table(title=f"bytes to check one certificate: {args.revoked:,} revoked of "
                        f"{args.issued:,} issued")
    for column in ("mechanism", "bytes", "note"):
        table.add_column(column)
    for name, size, note in rows:
        table.add_row(name, f"{size:,}", note)
    Console().print(table)
    console.print(f"first publication (complete CRL, {args.shards} shards and their deltas, "
                  f"streamed from the store and signed): {publish_seconds:.2f} s")
    return 0


def _cert_id(issuer: x509.Certificate) -> tuple[bytes, bytes]:
    """issuerNameHash and issuerKeyHash under SHA-1, the CertID devices send (RFC 5019)."""
    key = issuer.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    return (hashlib.sha1(issuer.subject.public_bytes(), usedforsecurity=False).digest(),
            hashlib.sha1(key, usedforsecurity=False).digest())


if __name__ == "__main__":
    sys.exit(main())
