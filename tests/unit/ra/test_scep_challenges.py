"""SCEP challenge passwords (ra/challenges.py): the profile's static challenge, then its
challenge callback; each refusal worded alike, so that nobody learns which kinds exist.

The callback is a fake here; tests/unit/test_challenge_callback.py runs the HTTP one against
a small server. The last tests go through the enrollment service, to show that a device id
the callback names constrains the certificate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fleetpki.core.enrollment_records import EnrollmentChallenge
from fleetpki.core.errors import NotAuthenticated, NotAuthorized, NotFound
from fleetpki.core.profile import Profile
from fleetpki.profiles_loader import load_profiles
from fleetpki.ra.api import Authorization, Enrolled, EnrollmentKind, EnrollmentRequest
from fleetpki.ra.challenges import (
    MAX_CHALLENGE_LENGTH,
    ChallengeAdmin,
    ChallengeQuery,
    ChallengeVerdict,
    static_or_callback,
)
from fleetpki.ra.credentials import hash_secret
from fleetpki.ra.enrollment import EnrollmentLimits, EnrollmentService
from support.csrs import make_csr
from support.enrollment_rig import enrollment_parts

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
STATIC = "static-secret-0001"
URL = "https://mdm.example/scep/verify"
_PROFILE = """
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
"""
PROFILES = f"""
[profiles.mdm]{_PROFILE}enrollment = {{ scep = true, challenge_callback = "{URL}" }}

[profiles.plain]{_PROFILE}enrollment = {{ scep = true }}
"""


class FakeCallback:
    """Answers with a fixed verdict and remembers what it was asked."""

    def __init__(self, verdict: ChallengeVerdict) -> None:
        self.verdict = verdict
        self.asked: list[tuple[str, ChallengeQuery]] = []

    def verify(self, url: str, query: ChallengeQuery) -> ChallengeVerdict:
        self.asked.append((url, query))
        return self.verdict


class Challenges:
    """The ChallengeStore: the static challenges by profile."""

    def __init__(self, **secrets: str) -> None:
        self._stored = {profile: EnrollmentChallenge(profile, hash_secret(secret), START, "op")
                        for profile, secret in secrets.items()}

    def get_challenge(self, profile: str) -> EnrollmentChallenge | None:
        return self._stored.get(profile)


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Profile]:
    path = tmp_path_factory.mktemp("profiles") / "profiles.toml"
    path.write_text(PROFILES)
    return load_profiles(path, known_issuers={"issuing"})


def query(password: str, profile: str = "mdm") -> ChallengeQuery:
    return ChallengeQuery(password, profile, b"\x30\x00csr", "192.0.2.9", "tx-1")


def allow(device_id: str | None = None) -> FakeCallback:
    return FakeCallback(ChallengeVerdict(True, device_id=device_id))


DENY = ChallengeVerdict(False, reason="challenge expired")


# -- the static challenge ----------------------------------------------------------------------

def test_the_static_challenge_authorizes_its_profile(profiles: dict[str, Profile]) -> None:
    callback = allow("ignored")
    authorization = static_or_callback(STATIC, profiles["mdm"], query(STATIC),
                                       Challenges(mdm=STATIC), callback)
    assert authorization == Authorization(actor="challenge:mdm", profiles=frozenset({"mdm"}))
    assert callback.asked == []  # a matching static challenge decides alone


def test_a_wrong_static_challenge_without_a_callback_is_refused(
        profiles: dict[str, Profile]) -> None:
    with pytest.raises(NotAuthenticated, match="wrong challenge password for profile 'plain'"):
        static_or_callback("guess", profiles["plain"], query("guess", "plain"),
                           Challenges(plain=STATIC), None)


def test_another_profiles_static_challenge_is_refused(profiles: dict[str, Profile]) -> None:
    with pytest.raises(NotAuthenticated):
        static_or_callback(STATIC, profiles["plain"], query(STATIC, "plain"),
                           Challenges(mdm=STATIC), None)


# -- the callback ------------------------------------------------------------------------------

def test_an_allowing_callback_with_a_device_id_constrains_the_device(
        profiles: dict[str, Profile]) -> None:
    callback = allow("router-0042")
    asked = query("dynamic-1")
    authorization = static_or_callback("dynamic-1", profiles["mdm"], asked,
                                       Challenges(mdm=STATIC), callback)
    assert authorization == Authorization(actor="callback:mdm:router-0042",
                                          profiles=frozenset({"mdm"}), device_id="router-0042")
    assert callback.asked == [(URL, asked)]


def test_an_allowing_callback_without_a_device_id(profiles: dict[str, Profile]) -> None:
    authorization = static_or_callback("dynamic-1", profiles["mdm"], query("dynamic-1"),
                                       Challenges(), allow())
    assert authorization == Authorization(actor="callback:mdm", profiles=frozenset({"mdm"}))
    assert authorization.device_id is None


def test_a_refusing_callback_is_refused_like_a_wrong_static_challenge(
        profiles: dict[str, Profile]) -> None:
    with pytest.raises(NotAuthenticated) as by_callback:
        static_or_callback("dynamic-1", profiles["mdm"], query("dynamic-1"),
                           Challenges(mdm=STATIC), FakeCallback(DENY))
    with pytest.raises(NotAuthenticated) as by_static:
        static_or_callback("dynamic-1", profiles["mdm"], query("dynamic-1"),
                           Challenges(mdm=STATIC), None)
    assert str(by_callback.value) == str(by_static.value)
    assert "challenge expired" not in str(by_callback.value)  # the reason is only logged


def test_a_profile_without_a_callback_url_never_asks_one(profiles: dict[str, Profile]) -> None:
    callback = allow("router-0042")
    with pytest.raises(NotAuthenticated):
        static_or_callback("dynamic-1", profiles["plain"], query("dynamic-1", "plain"),
                           Challenges(), callback)
    assert callback.asked == []


def test_a_callback_url_without_a_callback_refuses(profiles: dict[str, Profile]) -> None:
    with pytest.raises(NotAuthenticated):
        static_or_callback("dynamic-1", profiles["mdm"], query("dynamic-1"), Challenges(), None)


@pytest.mark.parametrize("password", ["", "x" * (MAX_CHALLENGE_LENGTH + 1)])
def test_an_empty_or_overlong_password_is_refused_before_anyone_is_asked(
        profiles: dict[str, Profile], password: str) -> None:
    callback = allow()
    with pytest.raises(NotAuthenticated, match="empty or too long"):
        static_or_callback(password, profiles["mdm"], query(password),
                           Challenges(mdm=password or "x"), callback)
    assert callback.asked == []


def test_a_password_of_the_maximum_length_is_judged(profiles: dict[str, Profile]) -> None:
    longest = "y" * MAX_CHALLENGE_LENGTH
    assert static_or_callback(longest, profiles["mdm"], query(longest), Challenges(mdm=longest),
                              None).actor == "challenge:mdm"


def test_the_query_hides_the_challenge_in_its_repr() -> None:
    assert "dynamic-secret" not in repr(query("dynamic-secret"))


# -- ChallengeAdmin ----------------------------------------------------------------------------

def test_a_set_challenge_is_random_shown_once_and_stored_as_a_hash(tmp_path: Path) -> None:
    parts = enrollment_parts(tmp_path, PROFILES, START, default_profile="plain")
    admin = ChallengeAdmin(parts.store, parts.profiles, parts.clock, "operator:test")
    first, second = admin.set("plain"), admin.set("plain")
    assert first.secret != second.secret and len(first.secret) >= 32
    stored = parts.store.get_challenge("plain")
    assert stored == second.challenge
    assert stored.secret_hash == hash_secret(second.secret) and second.secret not in repr(second)
    assert admin.list() == [second.challenge]
    admin.clear("plain")
    assert parts.store.get_challenge("plain") is None
    with pytest.raises(NotFound, match="no profile named 'nothing'"):
        admin.set("nothing")


# -- through the enrollment service ------------------------------------------------------------

def scep_request(cn: str, password: str, profile: str = "mdm") -> EnrollmentRequest:
    csr = make_csr(cn)[0].public_bytes(serialization.Encoding.DER)
    return EnrollmentRequest(csr=csr, kind=EnrollmentKind.enroll, client_address="192.0.2.9",
                             label=profile, challenge_password=password, protocol="scep")


def service_with(tmp_path: Path, callback: FakeCallback) -> EnrollmentService:
    parts = enrollment_parts(tmp_path, PROFILES, START, default_profile="plain")
    return EnrollmentService(parts.issuance, parts.store, parts.profiles, parts.clock,
                             EnrollmentLimits(), "plain", challenge_callback=callback)


def test_the_callbacks_device_id_must_be_the_certificates(tmp_path: Path) -> None:
    callback = allow("router-0042")
    service = service_with(tmp_path, callback)
    outcome = service.enroll(scep_request("router-0042", "dynamic-1"))
    assert isinstance(outcome, Enrolled) and outcome.certificate.device_id == "router-0042"
    with pytest.raises(NotAuthorized, match="credential is for 'router-0042'"):
        service.enroll(scep_request("router-0043", "dynamic-2"))


def test_a_refusing_callback_refuses_the_enrollment(tmp_path: Path) -> None:
    service = service_with(tmp_path, FakeCallback(DENY))
    with pytest.raises(NotAuthenticated):
        service.enroll(scep_request("router-0042", "dynamic-1"))


def test_the_callback_is_told_the_request(tmp_path: Path) -> None:
    callback = allow()
    service = service_with(tmp_path, callback)
    request = scep_request("router-0042", "dynamic-1")
    service.enroll(request)
    [(url, asked)] = callback.asked
    assert url == URL
    assert dataclasses.astuple(asked)[:4] == ("dynamic-1", "mdm", request.csr, "192.0.2.9")
