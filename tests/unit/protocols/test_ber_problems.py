"""Decoding failures of CMP and SCEP messages are told in words, never in pyasn1's reprs."""

from __future__ import annotations

import pytest
from pyasn1.codec.ber import decoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.type import univ  # type: ignore[import-untyped, unused-ignore]

from fleetpki.protocols.ber_problems import ber_problem


@pytest.mark.parametrize(("data", "says"), [
    (b"", "the body is empty; expected a DER-encoded PKIMessage"),
    (b"\x30\x10abc", "ends before the PKIMessage does"),
    (b"\x02\x01\x05", "this is not a PKIMessage"),
    (b"garbage here", "ends before the PKIMessage does"),
])
def test_each_failure_is_described_without_internals(data: bytes, says: str) -> None:
    with pytest.raises(Exception) as failed:
        decoder.decode(data, asn1Spec=univ.Sequence())
    problem = ber_problem(data, failed.value, "PKIMessage")
    assert says in problem
    assert "<" not in problem and "object" not in problem
