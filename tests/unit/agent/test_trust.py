"""trust: a root offered by the server gets in only if the device was provisioned with its
fingerprint; intermediates are never anchors."""

from __future__ import annotations

import pytest

from fleetpki.agent import trust
from support.agent_fakes import make_ca


def test_pins_are_accepted_in_the_usual_spellings() -> None:
    digest = "ab" * 32
    colons = ":".join(["AB"] * 32)
    for text in (digest, digest.upper(), colons, f"sha256:{digest}", f"  {digest}\n"):
        assert trust.normalise_pin(text) == digest


@pytest.mark.parametrize("text", ["", "ab" * 31, "zz" * 32, "sha1:" + "ab" * 20, "ab" * 33])
def test_anything_else_is_not_a_pin(text: str) -> None:
    with pytest.raises(ValueError, match="SHA-256 fingerprint"):
        trust.normalise_pin(text)


def test_only_pinned_new_roots_are_added() -> None:
    old_root, new_root, rogue_root = make_ca("Old Root"), make_ca("New Root"), make_ca("Rogue")
    issuing = make_ca("Issuing", new_root)
    offered = [issuing.certificate, new_root.certificate, old_root.certificate,
               rogue_root.certificate]
    offer = trust.offered_roots(offered, [trust.fingerprint(old_root.certificate)],
                                [trust.fingerprint(new_root.certificate),
                                 trust.fingerprint(issuing.certificate)])
    assert offer.added == (new_root.certificate,)
    assert offer.refused == (trust.fingerprint(rogue_root.certificate),)


def test_a_certificate_claiming_to_be_self_issued_without_its_own_signature_is_no_root() -> None:
    issuing = make_ca("Issuing", make_ca("Root"))
    assert not trust.is_self_signed(issuing.certificate)
    assert trust.is_self_signed(make_ca("Root").certificate)
