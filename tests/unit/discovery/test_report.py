"""What a served chain becomes: records with the right fields, our certificates told apart
from impostors by signature, and findings for expiry, weak keys and signatures, RFC 5280
breaches and, for our certificates, the store's record and the profile's key policy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import warnings
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from fleetpki.core.keys import KeyPolicy
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.discovery.chain import ServedChain, describe_chain
from fleetpki.discovery.ownership import OurCAs
from fleetpki.discovery.report import (
    Classifier,
    FindingKind,
    summarize,
)
from fleetpki.discovery.scanner import ScanResult
from fleetpki.discovery.targets import Endpoint
from support.tls_endpoints import (
    Made,
    PrivateKey,
    legacy_certificate,
    make_certificate,
    rsa_key,
)

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
# Reports are made a little after NOW: certificates the openssl command line makes during a
# test start at the second it runs, which must not count as "not yet valid".
CHECKED_AT = NOW + dt.timedelta(hours=1)
HERE = Endpoint("127.0.0.1", 4433)
ROOT = make_certificate("Fleet Root", ca=True, days=3650)
ISSUING = make_certificate("Fleet Issuing", issuer=ROOT, ca=True, days=1825)
OURS = OurCAs([("root", ROOT.cert.public_bytes(Encoding.DER)),
               ("issuing", ISSUING.cert.public_bytes(Encoding.DER))])
SENSOR = KeyPolicy(allowed=frozenset({"ec-p256", "ec-p384"}))


def der(made: Made) -> bytes:
    return made.cert.public_bytes(Encoding.DER)


def served(*chain: Made, endpoint: Endpoint = HERE) -> ServedChain:
    return describe_chain(ScanResult(endpoint, tuple(der(m) for m in chain)), OURS)


class Store:
    """The store's record of what we issued, by (issuer, serial); a CA lookup is a bug."""

    def __init__(self, *issued: IssuedCertificate) -> None:
        self.issued = {(c.issuer, c.serial): c for c in issued}

    def get_certificate(self, serial: int, issuer: str | None = None
                        ) -> IssuedCertificate | None:
        assert issuer == "issuing", "only end-entity certificates are looked up"
        return self.issued.get((issuer, serial))


def issued(made: Made, profile: str = "sensor", **changes: object) -> IssuedCertificate:
    record = IssuedCertificate(
        serial=made.cert.serial_number, issuer="issuing", device_id="gw-1", profile=profile,
        subject=made.cert.subject.rfc4514_string(), sans=(), key_spec="ec-p256",
        key_fingerprint="00", not_before=made.cert.not_valid_before_utc,
        not_after=made.cert.not_valid_after_utc, issued_at=NOW, der=der(made))
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def kinds_and_messages(chain: ServedChain, store: Store | None = None,
                       policies: dict[str, KeyPolicy] | None = None
                       ) -> list[list[tuple[str, str]]]:
    classifier = Classifier(store or Store(), {"sensor": SENSOR} if policies is None else policies,
                            now=CHECKED_AT, ours=OURS)
    report = classifier.endpoint(chain)
    return [[(f.kind.value, f.message) for f in c.findings] for c in report.certificates]


# -- records and ownership -------------------------------------------------------------------

def test_a_served_chain_becomes_one_record_per_certificate() -> None:
    leaf = make_certificate("gw-1", issuer=ISSUING)
    chain = served(leaf, ISSUING)
    assert chain.error is None and chain.unparsable == ()
    first, second = (c.record for c in chain.certificates)
    assert (first.host, first.port, first.position, second.position) == ("127.0.0.1", 4433, 0, 1)
    assert first.fingerprint == hashlib.sha256(der(leaf)).hexdigest()
    assert first.subject == "CN=gw-1" and first.issuer_name == "CN=Fleet Issuing"
    assert first.serial == leaf.cert.serial_number
    assert (first.not_before, first.not_after) == (leaf.cert.not_valid_before_utc,
                                                   leaf.cert.not_valid_after_utc)
    assert (first.key_spec, first.signature_algorithm) == ("ec-p256", "ecdsa-with-SHA256")
    assert (first.issued_by_us, second.issued_by_us) == ("issuing", "root")
    assert first.der == der(leaf) and first.first_seen is None


@pytest.mark.parametrize(("key", "text"), [
    (lambda: rsa_key(1024), "rsa-1024"),
    (lambda: rsa_key(2048), "rsa-2048"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "ec-p384"),
    (lambda: ec.generate_private_key(ec.SECP224R1()), "ec-secp224r1"),
    (lambda: ec.generate_private_key(ec.SECP256K1()), "ec-secp256k1"),
])
def test_keys_are_named_as_issued_certificates_name_theirs(key: Callable[[], PrivateKey],
                                                           text: str) -> None:
    [cert] = served(make_certificate("k", key=key())).certificates
    assert cert.record.key_spec == text


def test_a_certificate_naming_our_ca_but_signed_by_another_key_is_not_ours() -> None:
    impostor_ca = make_certificate("Fleet Issuing", ca=True)  # same name, another key
    leaf = make_certificate("gw-1", issuer=impostor_ca)
    [cert] = served(leaf).certificates
    assert cert.record.issuer_name == "CN=Fleet Issuing"
    assert cert.record.issued_by_us is None


def test_an_unparsable_certificate_is_reported_and_the_rest_recorded() -> None:
    leaf = make_certificate("gw-1", issuer=ISSUING)
    chain = describe_chain(ScanResult(HERE, (der(leaf), b"\x30\x03\x02\x01\x01")), OURS)
    assert [c.record.position for c in chain.certificates] == [0]
    [why] = chain.unparsable
    assert why.startswith("certificate 1: cannot be parsed (")


# -- findings --------------------------------------------------------------------------------

def test_expired_and_expiring_and_fine() -> None:
    expired = make_certificate("old", not_before=NOW - 10 * DAY, days=7)
    expiring = make_certificate("soon", not_before=NOW - DAY, days=11.5)
    fine = make_certificate("fine", not_before=NOW - DAY, days=90)
    future = make_certificate("later", not_before=NOW + 2 * DAY, days=90)
    assert kinds_and_messages(served(expired)) == [[("expired", f"expired on "
                              f"{expired.cert.not_valid_after_utc:%Y-%m-%d} (3 days ago)")]]
    assert kinds_and_messages(served(expiring)) == [[("expiring", f"expires on "
                              f"{expiring.cert.not_valid_after_utc:%Y-%m-%d} (in 10 days)")]]
    assert kinds_and_messages(served(fine)) == [[]]
    [[(kind, message)]] = kinds_and_messages(served(future))
    assert kind == "info" and message.startswith("not valid before ")


def test_the_warning_period_is_the_callers() -> None:
    soon = make_certificate("soon", not_before=NOW - DAY, days=11.5)
    report = Classifier(Store(), {}, now=CHECKED_AT, warn_within=7 * DAY).endpoint(served(soon))
    assert report.certificates[0].findings == ()


@pytest.mark.parametrize(("key", "says"), [
    (lambda: rsa_key(1024), "weak key: RSA 1024 bits (minimum 2048)"),
    (lambda: ec.generate_private_key(ec.SECP224R1()), "weak key: EC secp224r1, 224 bits"),
])
def test_weak_keys_break_policy(key: Callable[[], PrivateKey], says: str) -> None:
    assert kinds_and_messages(served(make_certificate("weak", key=key()))) == [
        [("policy", says + ("" if "RSA" in says else " (minimum 256)"))]]


def test_strong_keys_do_not() -> None:
    for key in (rsa_key(2048), ec.generate_private_key(ec.SECP256K1())):
        assert kinds_and_messages(served(make_certificate("ok", key=key))) == [[]]


def test_sha1_and_md5_signatures_break_policy_except_a_self_signature() -> None:
    external_ca = make_certificate("External CA", ca=True, key=rsa_key(2048))
    sha1 = legacy_certificate("sha1", rsa_key(2048), issuer=external_ca)
    md5 = legacy_certificate("md5", rsa_key(2048), digest="md5", issuer=external_ca)
    self_signed = legacy_certificate("self", rsa_key(2048))
    assert kinds_and_messages(served(sha1)) == [[("policy", "weak signature: "
        "sha1WithRSAEncryption (SHA-1 and MD5 collisions are practical)")]]
    assert kinds_and_messages(served(md5)) == [[("policy", "weak signature: "
        "md5WithRSAEncryption (SHA-1 and MD5 collisions are practical)")]]
    assert self_signed.cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.5"
    assert kinds_and_messages(served(self_signed)) == [[]]


def test_non_conforming_serials_break_policy() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography warns on every load of it
        negative = legacy_certificate("neg", rsa_key(2048), digest="sha256", serial="-5")
    too_long = legacy_certificate("long", rsa_key(2048), digest="sha256",
                                  serial="0x" + "ab" * 21)
    [[(kind, message)]] = kinds_and_messages(served(negative))
    assert kind == "policy" and message.startswith("non-conforming: Parsed a serial number")
    assert kinds_and_messages(served(too_long)) == [[(
        "policy", "non-conforming: serial number longer than 20 octets (RFC 5280 §4.1.2.2)")]]


def test_a_long_lived_external_leaf_is_noted_not_a_breach() -> None:
    leaf = make_certificate("appliance", days=825)
    assert kinds_and_messages(served(leaf)) == [[(
        "info", "valid for 825 days, more than the 398 browsers accept for TLS servers")]]
    ca_leaf = make_certificate("appliance-ca", days=825, ca=True)
    assert kinds_and_messages(served(ca_leaf)) == [[]]


# -- our certificates ------------------------------------------------------------------------

def test_ours_in_the_store_and_within_its_profile_is_fine() -> None:
    leaf = make_certificate("gw-1", issuer=ISSUING, days=825)  # long: the profile decides
    assert kinds_and_messages(served(leaf, ISSUING, ROOT), Store(issued(leaf))) == [[], [], []]


def test_ours_but_unknown_to_the_store_breaks_policy() -> None:
    leaf = make_certificate("gw-1", issuer=ISSUING)
    [[(kind, message)]] = kinds_and_messages(served(leaf), Store())
    assert kind == "policy"
    assert message.startswith("signed by our CA 'issuing' but unknown to the store")


def test_ours_and_revoked_breaks_policy() -> None:
    leaf = make_certificate("gw-1", issuer=ISSUING)
    record = issued(leaf, revoked_at=NOW - DAY, revocation_reason=RevocationReason.superseded)
    assert kinds_and_messages(served(leaf), Store(record)) == [[(
        "policy", f"revoked on {NOW - DAY:%Y-%m-%d} (superseded) and still served")]]


def test_ours_with_a_key_its_profile_no_longer_allows_breaks_policy() -> None:
    leaf = make_certificate("gw-1", issuer=ISSUING)
    tightened = {"sensor": KeyPolicy(allowed=frozenset({"ec-p384"}))}
    [[(kind, message)]] = kinds_and_messages(served(leaf), Store(issued(leaf)), tightened)
    assert kind == "policy"
    assert message.startswith("profile 'sensor' no longer allows its key: ec-p256 keys are "
                              "not allowed")


def test_ours_under_a_profile_no_longer_defined_is_noted() -> None:
    leaf = make_certificate("gw-1", issuer=ISSUING)
    assert kinds_and_messages(served(leaf), Store(issued(leaf, profile="retired"))) == [[(
        "info", "issued under profile 'retired', which profiles.toml does not define: key "
                "not checked")]]


# -- the summary -----------------------------------------------------------------------------

def test_the_summary_counts_endpoints_and_certificates_once_each() -> None:
    expired = make_certificate("old", not_before=NOW - 10 * DAY, days=7, key=rsa_key(1024))
    soon = make_certificate("soon", not_before=NOW - DAY, days=5)
    classifier = Classifier(Store(), {}, now=CHECKED_AT, ours=OURS)
    reports = [
        classifier.endpoint(served(expired, expired)),  # a chain that repeats its leaf
        classifier.endpoint(served(soon, endpoint=Endpoint("127.0.0.1", 1))),
        classifier.endpoint(describe_chain(ScanResult(Endpoint("127.0.0.1", 2),
                                                      error="refused"), OURS)),
    ]
    summary = summarize(reports)
    assert (summary.endpoints, summary.answered, summary.recorded) == (3, 2, 2)
    assert (summary.expired, summary.expiring, summary.policy) == (1, 1, 1)
    assert reports[0].certificates[0].has(FindingKind.policy)
