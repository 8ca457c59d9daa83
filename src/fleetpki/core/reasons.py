"""Revocation reasons (RFC 5280 §5.3.1), by the names operators type."""

from __future__ import annotations

import enum

from cryptography import x509


class RevocationReason(enum.Enum):
    unspecified = "unspecified"
    key_compromise = "keyCompromise"
    ca_compromise = "cACompromise"
    affiliation_changed = "affiliationChanged"
    superseded = "superseded"
    cessation_of_operation = "cessationOfOperation"
    certificate_hold = "certificateHold"
    privilege_withdrawn = "privilegeWithdrawn"
    aa_compromise = "aACompromise"

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        key = text.replace("-", "").replace("_", "").lower()
        for reason in cls:
            if reason.value.lower() == key:
                return reason
        names = ", ".join(r.value for r in cls)
        raise ValueError(f"unknown revocation reason {text!r}; use one of: {names}")

    @property
    def x509_flag(self) -> x509.ReasonFlags:
        return x509.ReasonFlags[self.name]
