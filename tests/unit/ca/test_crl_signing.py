"""sign_crl's DER is byte-identical to cryptography's CertificateRevocationListBuilder, and
independent tools accept it.

Differential test first: for each issuer key type and shape of CRL, build the same CRL with the
builder (the reference encoder) and compare TBSCertList bytes (ECDSA signatures are random), then
check our signature with the issuer's public key. expiredCertsOnCRL, which the builder cannot
write, is decoded with pyasn1 instead. Then openssl (parse, verify a chain with -crl_check) and
pkilint (RFC 5280 lints) judge the output, and the entries are shown to stream.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder
from pyasn1.type import useful
from pyasn1_alt_modules import rfc5280

from fleetpki.ca.ceremony import ca_name, create_issuing, create_root
from fleetpki.ca.crl_signing import CrlFields, sign_crl
from fleetpki.ca.signer import Signer
from fleetpki.core.keys import KeySpec
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import RevokedEntry
from support.csrs import make_key
from support.lint import lint_crl, require_tool

NOW = dt.datetime(2026, 11, 21, 10, 30, 15, 654321, tzinfo=dt.UTC)  # microseconds: truncated
DAY = dt.timedelta(days=1)
PEM = serialization.Encoding.PEM
DP_URL = "http://pki.test/issuing.crl"
DELTA_URL = "http://pki.test/issuing-delta.crl"
EXPIRED_CERTS_ON_CRL = x509.ObjectIdentifier("2.5.29.60")


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    root: Signer
    issuing: Signer


@pytest.fixture(scope="module", params=["ec-p256", "ec-p384", "ed25519", "rsa-2048"])
def hierarchy(request: pytest.FixtureRequest) -> Hierarchy:
    # Created at the real time: openssl verify checks validity against the system clock.
    spec, now = KeySpec.parse(request.param), dt.datetime.now(dt.UTC)
    root = create_root("root", ca_name("CRL Root", "Test"), spec, now=now)
    return Hierarchy(root, create_issuing("issuing", ca_name("CRL Issuing", "Test"), spec, root,
                                         now=now))


def entry(serial: int, reason: RevocationReason | None = None, *, days_ago: float = 3,
          invalidity_days_ago: float | None = None, removed: bool = False) -> RevokedEntry:
    return RevokedEntry(serial, NOW - days_ago * DAY, reason,
                        None if invalidity_days_ago is None else NOW - invalidity_days_ago * DAY,
                        removed)


EVERY_REASON = [entry(100 + i, reason, days_ago=i / 7) for i, reason in enumerate(RevocationReason)]
SERIAL_SHAPES = [
    entry(1),
    entry(0x7F),
    entry(0x80),  # top bit set: a leading zero octet
    entry((1 << 127) | 0xFF),
    entry((1 << 158) | 0x1234),  # 20 octets, the RFC 5280 §4.1.2.2 maximum
    entry(0x1234_5678_9ABC_DEF0_1234, RevocationReason.superseded, days_ago=0),  # same instant
    entry(0x1234_5678_9ABC_DEF0_1235, RevocationReason.superseded, days_ago=0),  # as NOW
]
FULL = CrlFields(number=7, this_update=NOW, next_update=NOW + 7 * DAY)

CASES: dict[str, tuple[CrlFields, list[RevokedEntry]]] = {
    "no-entries": (FULL, []),
    "reasons-none-and-unspecified": (FULL, [*EVERY_REASON, *SERIAL_SHAPES]),
    "invalidity-date": (FULL, [
        entry(11, RevocationReason.key_compromise, invalidity_days_ago=9.5),
        entry(12, None, invalidity_days_ago=4),
        entry(13, RevocationReason.unspecified, invalidity_days_ago=4),
        entry(14, RevocationReason.ca_compromise, invalidity_days_ago=365 * 30),  # 2050+: still GT
    ]),
    "remove-from-crl-in-delta": (dataclasses.replace(FULL, number=8, delta_of=7), [
        entry(21, RevocationReason.certificate_hold, removed=True),
        entry(22, None, removed=True),
        entry(23, RevocationReason.certificate_hold, invalidity_days_ago=5, removed=True),
        entry(24, RevocationReason.key_compromise),
    ]),
    "idp-only-user-certs": (dataclasses.replace(FULL, distribution_point=DP_URL,
                                                only_user_certs=True), SERIAL_SHAPES),
    "idp": (dataclasses.replace(FULL, distribution_point=DP_URL), SERIAL_SHAPES),
    "freshest": (dataclasses.replace(FULL, freshest=DELTA_URL), EVERY_REASON),
    "delta-with-idp": (dataclasses.replace(FULL, number=9, delta_of=7, distribution_point=DP_URL,
                                           only_user_certs=True), EVERY_REASON),
    "utc-time-then-generalized-time": (
        CrlFields(number=1, this_update=dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
                  next_update=dt.datetime(2050, 1, 1, tzinfo=dt.UTC)),
        [RevokedEntry(5, dt.datetime(2049, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)),
         RevokedEntry(6, dt.datetime(2050, 1, 1, tzinfo=dt.UTC))]),
    "every-builder-feature": (dataclasses.replace(
        FULL, distribution_point=DP_URL, only_user_certs=True, freshest=DELTA_URL),
        [*EVERY_REASON, *SERIAL_SHAPES, entry(31, RevocationReason.key_compromise,
                                              invalidity_days_ago=6)]),
}


def reference(signer: Signer, fields: CrlFields, entries: Iterable[RevokedEntry]
              ) -> x509.CertificateRevocationList:
    """The same CRL from cryptography's builder (without expiredCertsOnCRL, which it lacks)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.certificate.subject)
        .last_update(fields.this_update)
        .next_update(fields.next_update)
        .add_extension(signer.authority_key_identifier(), critical=False)
        .add_extension(x509.CRLNumber(fields.number), critical=False)
    )
    if fields.distribution_point is not None:
        builder = builder.add_extension(x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(fields.distribution_point)],
            relative_name=None, only_contains_user_certs=fields.only_user_certs,
            only_contains_ca_certs=False, only_some_reasons=None, indirect_crl=False,
            only_contains_attribute_certs=False), critical=True)
    if fields.delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(fields.delta_of), critical=True)
    if fields.freshest is not None:
        builder = builder.add_extension(x509.FreshestCRL([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(fields.freshest)], None, None, None)]),
            critical=False)
    for e in entries:
        revoked = (x509.RevokedCertificateBuilder().serial_number(e.serial)
                   .revocation_date(e.revoked_at))
        if e.removed:
            revoked = revoked.add_extension(x509.CRLReason(x509.ReasonFlags.remove_from_crl),
                                            critical=False)
        elif e.reason is not None and e.reason is not RevocationReason.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(e.reason.x509_flag), critical=False)
        if e.invalidity_date is not None:
            revoked = revoked.add_extension(x509.InvalidityDate(e.invalidity_date),
                                            critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(signer.private_key, signer.hash_algorithm)


def signed(signer: Signer, fields: CrlFields, entries: Iterable[RevokedEntry]
           ) -> x509.CertificateRevocationList:
    crl = x509.load_der_x509_crl(sign_crl(signer, fields, entries))
    assert crl.is_signature_valid(signer.certificate.public_key())  # type: ignore[arg-type]
    return crl


# -- byte for byte against the builder -------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_tbs_cert_list_matches_cryptography_builder(hierarchy: Hierarchy, case: str) -> None:
    fields, entries = CASES[case]
    ours = signed(hierarchy.issuing, fields, entries)
    theirs = reference(hierarchy.issuing, fields, entries)
    assert ours.tbs_certlist_bytes == theirs.tbs_certlist_bytes
    assert ours.signature_algorithm_oid == theirs.signature_algorithm_oid


def test_empty_crl_has_no_revoked_certificates_field(hierarchy: Hierarchy) -> None:
    crl = signed(hierarchy.issuing, FULL, [])
    assert len(crl) == 0
    # RFC 5280 §5.1.2.6: absent, not an empty SEQUENCE (decoded by pyasn1, not by us).
    tbs, rest = decoder.decode(crl.tbs_certlist_bytes, asn1Spec=rfc5280.TBSCertList())
    assert rest == b""
    assert not tbs["revokedCertificates"].isValue
    assert tbs["crlExtensions"].isValue


def test_reason_absent_for_none_and_unspecified_and_remove_from_crl_wins(
        hierarchy: Hierarchy) -> None:
    crl = signed(hierarchy.issuing, dataclasses.replace(FULL, number=8, delta_of=7), [
        entry(1, None), entry(2, RevocationReason.unspecified),
        entry(3, RevocationReason.key_compromise, removed=True)])
    reasons = {r.serial_number: [e.value for e in r.extensions] for r in crl}
    assert reasons[1] == [] and reasons[2] == []
    assert reasons[3] == [x509.CRLReason(x509.ReasonFlags.remove_from_crl)]


def test_extension_order_and_criticality_with_every_feature(hierarchy: Hierarchy) -> None:
    fields = dataclasses.replace(FULL, number=8, delta_of=7, distribution_point=DP_URL,
                                 only_user_certs=True, freshest=DELTA_URL,
                                 expired_certs_since=NOW - 400 * DAY)
    crl = signed(hierarchy.issuing, fields, EVERY_REASON)
    assert [(e.oid.dotted_string, e.critical) for e in crl.extensions] == [
        ("2.5.29.35", False), ("2.5.29.20", False), ("2.5.29.28", True), ("2.5.29.27", True),
        ("2.5.29.46", False), ("2.5.29.60", False)]


def test_expired_certs_on_crl_is_a_generalized_time(hierarchy: Hierarchy) -> None:
    since = dt.datetime(2021, 3, 4, 5, 6, 7, 890, tzinfo=dt.UTC)  # 2021: UTCTime elsewhere
    crl = signed(hierarchy.issuing, dataclasses.replace(FULL, expired_certs_since=since),
                 SERIAL_SHAPES)
    extension = crl.extensions.get_extension_for_oid(EXPIRED_CERTS_ON_CRL)
    assert not extension.critical
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    value, rest = decoder.decode(extension.value.value, asn1Spec=useful.GeneralizedTime())
    assert rest == b""
    assert str(value) == "20210304050607Z"
    assert value.asDateTime == since.replace(microsecond=0)
    # Everything else is what the builder writes for the same fields without the extension.
    without = signed(hierarchy.issuing, FULL, SERIAL_SHAPES)
    assert list(crl)[-1].serial_number == list(without)[-1].serial_number
    assert [e for e in crl.extensions if e.oid != EXPIRED_CERTS_ON_CRL] == list(without.extensions)


# -- misuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    (dict(number=-1), "cRLNumber"),
    (dict(number=1 << 159), "20 octets"),
    (dict(next_update=NOW), "nextUpdate"),
    (dict(only_user_certs=True), "distribution_point"),
    (dict(delta_of=7), "base CRL number"),
    (dict(delta_of=8), "base CRL number"),
    (dict(distribution_point="http://pki.test/ümlaut.crl"), "ASCII URI"),
    (dict(freshest=""), "ASCII URI"),
])
def test_fields_refuse_what_rfc_5280_forbids(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(FULL, **change)  # type: ignore[arg-type]


def test_serial_longer_than_rfc_5280_allows_is_still_listed(hierarchy: Hierarchy) -> None:
    """A CRL lists what was issued, conforming or not (an imported CA's 30-octet serial; the
    builder refuses these, so the check is a parse): the entry takes the long-length path."""
    serials = [(1 << 239) | 5, (1 << 1000) | 7, 0x80]
    crl = signed(hierarchy.issuing, FULL, [entry(s, RevocationReason.superseded)
                                           for s in serials])
    assert [r.serial_number for r in crl] == serials


def test_negative_serial_is_refused(hierarchy: Hierarchy) -> None:
    with pytest.raises(ValueError, match="negative"):
        sign_crl(hierarchy.issuing, FULL, [entry(5), entry(-5)])


# -- independent tools -----------------------------------------------------------------------


def every_feature(now: dt.datetime) -> CrlFields:
    return CrlFields(number=12, this_update=now - dt.timedelta(hours=1),
                     next_update=now + 7 * DAY, distribution_point=DP_URL, only_user_certs=True,
                     freshest=DELTA_URL, expired_certs_since=now - 400 * DAY)


def test_openssl_parses_every_feature_and_checks_the_signature(hierarchy: Hierarchy,
                                                                tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    entries = [*EVERY_REASON, *SERIAL_SHAPES,
               entry(41, RevocationReason.key_compromise, invalidity_days_ago=2),
               entry(42, RevocationReason.certificate_hold, removed=True)]
    crl_path, ca_path = tmp_path / "issuing.crl", tmp_path / "issuing.pem"
    fields = dataclasses.replace(every_feature(NOW), delta_of=11)
    crl_path.write_bytes(sign_crl(hierarchy.issuing, fields, entries))
    ca_path.write_bytes(hierarchy.issuing.certificate.public_bytes(PEM))
    shown = subprocess.run([openssl, "crl", "-inform", "DER", "-in", str(crl_path), "-noout",
                            "-text", "-CAfile", str(ca_path)],
                           capture_output=True, text=True, timeout=60, check=False)
    output = shown.stdout + shown.stderr
    assert shown.returncode == 0, output
    assert "verify OK" in output
    for expected in ("X509v3 Authority Key Identifier", "X509v3 CRL Number", "12",
                     "X509v3 Issuing Distribution Point: critical", DP_URL,
                     "Only User Certificates", "X509v3 Delta CRL Indicator: critical",
                     "X509v3 Freshest CRL", DELTA_URL, "2.5.29.60", "Key Compromise",
                     "Remove From CRL", "Invalidity Date", "Certificate Hold",
                     "Last Update: Nov 21 09:30:15 2026 GMT"):
        assert expected in output, f"{expected!r} missing from:\n{output}"
    assert output.count("Serial Number:") == len(entries)


def leaf(issuing: Signer, cn: str, serial: int, now: dt.datetime) -> x509.Certificate:
    """An end-entity certificate pointing at the CRL's distribution point (openssl matches the
    CRL's issuingDistributionPoint against it)."""
    key = make_key("ec-p256")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(issuing.certificate.subject).public_key(key.public_key())
        .serial_number(serial).not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(issuing.authority_key_identifier(), critical=False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(DP_URL)], None, None, None)]), critical=False)
        .sign(issuing.private_key, issuing.hash_algorithm)
    )


def test_openssl_verify_crl_check_accepts_good_and_rejects_revoked_leaf(
        hierarchy: Hierarchy, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    now = dt.datetime.now(dt.UTC)
    good = leaf(hierarchy.issuing, "device-good", 0x5EED_0001, now)
    revoked = leaf(hierarchy.issuing, "device-revoked", 0x5EED_0002, now)
    entries = [*SERIAL_SHAPES, RevokedEntry(revoked.serial_number, now - DAY,
                                            RevocationReason.key_compromise, now - 2 * DAY)]
    crl = x509.load_der_x509_crl(sign_crl(hierarchy.issuing, every_feature(now), entries))
    files = {"root.pem": hierarchy.root.certificate, "issuing.pem": hierarchy.issuing.certificate,
             "good.pem": good, "revoked.pem": revoked}
    for name, certificate in files.items():
        (tmp_path / name).write_bytes(certificate.public_bytes(PEM))
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(PEM))

    def verify(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [openssl, "verify", "-crl_check", "-CAfile", str(tmp_path / "root.pem"),
             "-untrusted", str(tmp_path / "issuing.pem"), "-CRLfile", str(tmp_path / "crl.pem"),
             str(tmp_path / name)], capture_output=True, text=True, timeout=60, check=False)

    accepted = verify("good.pem")
    assert accepted.returncode == 0 and ": OK" in accepted.stdout, accepted.stdout + accepted.stderr
    refused = verify("revoked.pem")
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr


def test_pkilint_accepts_full_crl_with_entries(hierarchy: Hierarchy) -> None:
    entries = [*EVERY_REASON, *SERIAL_SHAPES,
               entry(51, RevocationReason.key_compromise, invalidity_days_ago=2)]
    der = sign_crl(hierarchy.issuing, every_feature(NOW), entries)
    assert lint_crl(der) == []


def test_pkilint_accepts_delta_crl(hierarchy: Hierarchy) -> None:
    entries = [entry(61, RevocationReason.certificate_hold, removed=True),
               entry(62, RevocationReason.superseded),
               entry(63, RevocationReason.key_compromise, invalidity_days_ago=1)]
    fields = CrlFields(number=13, this_update=NOW, next_update=NOW + DAY, delta_of=12,
                       distribution_point=DP_URL, only_user_certs=True)
    assert lint_crl(sign_crl(hierarchy.issuing, fields, entries)) == []


# -- streaming -------------------------------------------------------------------------------


def many(count: int, *, start: int = 1 << 126) -> Iterator[RevokedEntry]:
    """Distinct serials, one revocation a second (distinct instants: no Time cache hits)."""
    reasons = [None, RevocationReason.superseded, RevocationReason.cessation_of_operation,
               RevocationReason.key_compromise]
    first = NOW - 400 * DAY
    for i in range(count):
        yield RevokedEntry(start + i * 7919, first + dt.timedelta(seconds=i), reasons[i % 4])


class OnePass:
    """An iterable that fails the test when iterated twice."""

    def __init__(self, entries: Iterable[RevokedEntry]) -> None:
        self._entries = entries
        self.passes = 0

    def __iter__(self) -> Iterator[RevokedEntry]:
        self.passes += 1
        assert self.passes == 1, "entries iterated more than once"
        return iter(self._entries)


def test_a_generator_is_consumed_exactly_once(hierarchy: Hierarchy) -> None:
    pulled = 0

    def stream() -> Iterator[RevokedEntry]:
        nonlocal pulled
        for item in many(500):
            pulled += 1
            yield item

    generator = stream()
    source = OnePass(generator)
    crl = signed(hierarchy.issuing, FULL, source)
    assert source.passes == 1 and pulled == 500
    assert next(generator, None) is None
    assert len(crl) == 500


def test_entries_are_not_held_in_memory(hierarchy: Hierarchy) -> None:
    """Peak memory is about two copies of the output (the entries' buffer, then the TBS), not
    the entries: an entry object with its serial and datetime is several times the ~45 bytes it
    becomes, and holding all 20,000 of them makes the peak about six times the output."""
    tracemalloc.start()
    try:
        der = sign_crl(hierarchy.issuing, FULL, many(20_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3.5 * len(der) + 1_000_000, f"peak {peak:,} B for {len(der):,} B of CRL"


def test_100k_entries_encode_quickly(hierarchy: Hierarchy) -> None:
    """A sanity bound, not a benchmark (benchmarks/crl_generation.py is one)."""
    count = 100_000
    started = time.perf_counter()
    der = sign_crl(hierarchy.issuing, FULL, many(count))
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"{count:,} entries took {elapsed:.2f} s"
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == count
    last = crl.get_revoked_certificate_by_serial_number((1 << 126) + (count - 1) * 7919)
    assert last is not None
    assert last.revocation_date_utc == (NOW - 400 * DAY).replace(microsecond=0) + dt.timedelta(
        seconds=count - 1)
