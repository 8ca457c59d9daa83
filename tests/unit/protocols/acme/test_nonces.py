"""Stateless ACME nonces (RFC 8555 §6.5): minted by one process, checked by any other that
shares the key, refused once forged, garbled or expired."""

from __future__ import annotations

import base64
import hmac
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpki.protocols.acme import nonces
from fleetpki.protocols.acme.nonces import NONCE_LENGTH, NonceMint

KEY = bytes(range(32))
T0 = 1_750_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mint(clock: FakeClock | None = None, key: bytes = KEY, lifetime: float = 3600.0
         ) -> NonceMint:
    return NonceMint(key, lifetime=lifetime, clock=clock or FakeClock())


def test_nonce_is_base64url_without_padding_of_fixed_length() -> None:
    nonce = mint().new()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", nonce)  # RFC 8555 §6.5.1 ABNF: 1*base64url
    assert len(nonce) == NONCE_LENGTH


def test_nonces_at_the_same_instant_differ_by_128_random_bits() -> None:
    m = mint()
    seen = {m.new() for _ in range(2000)}
    assert len(seen) == 2000
    raw = [base64.urlsafe_b64decode(n + "==") for n in list(seen)[:2]]
    assert raw[0][:8] == raw[1][:8] and raw[0][8:24] != raw[1][8:24]


def test_expiry_is_issue_time_plus_lifetime() -> None:
    clock = FakeClock()
    m = mint(clock, lifetime=600)
    nonce = m.new()
    clock.now += 599
    assert m.expiry(nonce) == pytest.approx(T0 + 600)


def test_expired_nonce_is_refused_and_the_last_instant_accepted() -> None:
    clock = FakeClock()
    m = mint(clock, lifetime=60)
    nonce = m.new()
    clock.now = T0 + 60
    assert m.expiry(nonce) is not None
    clock.now = T0 + 60.001
    assert m.expiry(nonce) is None


def test_another_process_with_the_same_key_accepts_the_nonce() -> None:
    clock = FakeClock()
    assert mint(clock).expiry(mint(clock).new()) == pytest.approx(T0 + 3600)


def test_nonce_minted_under_another_key_is_refused() -> None:
    assert mint().expiry(mint(key=b"k" * 32).new()) is None


def test_tampered_nonce_is_refused() -> None:
    m = mint()
    nonce = m.new()
    for position in (0, 7, 20, len(nonce) - 1):
        flipped = "A" if nonce[position] != "A" else "B"
        assert m.expiry(nonce[:position] + flipped + nonce[position + 1:]) is None


def test_nonce_with_a_later_issue_time_is_refused() -> None:
    """The issue time is under the MAC: a client cannot extend a nonce's life."""
    m = mint()
    raw = bytearray(base64.urlsafe_b64decode(m.new() + "=="))
    raw[5] ^= 0x01
    assert m.expiry(base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()) is None


@pytest.mark.parametrize("garbage", [
    "", "abc", "=" * NONCE_LENGTH, "+" * NONCE_LENGTH, "é" * NONCE_LENGTH, "A" * NONCE_LENGTH,
    "A" * (NONCE_LENGTH + 2), None, 42, b"bytes",
])
def test_garbled_nonces_are_refused_without_raising(garbage: object) -> None:
    assert mint().expiry(garbage) is None  # type: ignore[arg-type]


def test_padded_form_of_a_real_nonce_is_refused() -> None:
    m = mint()
    nonce = m.new()
    assert m.expiry(nonce + "==") is None


def test_mac_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(nonces.hmac, "compare_digest", spy)
    m = mint()
    assert m.expiry(m.new()) is not None
    assert len(calls) == 1


def test_short_key_and_non_positive_lifetime_are_refused() -> None:
    with pytest.raises(ValueError, match="key"):
        NonceMint(b"short")
    with pytest.raises(ValueError, match="lifetime"):
        NonceMint(KEY, lifetime=0)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=NONCE_LENGTH + 4) | st.text(alphabet="ABCabc019-_",
                                                     min_size=NONCE_LENGTH,
                                                     max_size=NONCE_LENGTH))
def test_fuzz_expiry_never_raises_and_accepts_no_forgery(text: str) -> None:
    assert mint().expiry(text) is None
