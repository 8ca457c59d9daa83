"""The hash chain detects a modified, removed, inserted or reordered entry."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from fleetpki.core.audit_chain import GENESIS, canonical_details, entry_hash, verify_chain
from fleetpki.core.errors import AuditChainBroken
from fleetpki.core.records import AuditEntry

T0 = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)


def chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS
    for seq in range(1, n + 1):
        at = T0 + dt.timedelta(seconds=seq)
        details = {"n": str(seq), "note": "é"}
        digest = entry_hash(prev, seq, at, "operator:alice", "certificate.issued", f"s{seq}",
                            canonical_details(details))
        entries.append(AuditEntry(seq, at, "operator:alice", "certificate.issued", f"s{seq}",
                                  details, prev, digest))
        prev = digest
    return entries


def test_intact_chain_verifies_and_reports_head() -> None:
    entries = chain(5)
    report = verify_chain(entries)
    assert (report.entries, report.head_seq, report.head_hash) == (5, 5, entries[-1].hash)


def test_modified_entry_detected() -> None:
    entries = chain(5)
    entries[2] = dataclasses.replace(entries[2], details={"n": "999", "note": "é"})
    with pytest.raises(AuditChainBroken, match="entry 3 was modified"):
        verify_chain(entries)


def test_deleted_entry_detected() -> None:
    entries = chain(5)
    del entries[1]
    with pytest.raises(AuditChainBroken, match="missing or out of order"):
        verify_chain(entries)


def test_reordered_entries_detected() -> None:
    entries = chain(5)
    entries[1], entries[2] = entries[2], entries[1]
    with pytest.raises(AuditChainBroken):
        verify_chain(entries)


def test_renumbered_after_deletion_detected() -> None:
    entries = chain(5)
    del entries[1]
    entries = [dataclasses.replace(e, seq=i) for i, e in enumerate(entries, start=1)]
    with pytest.raises(AuditChainBroken):
        verify_chain(entries)


def test_truncated_tail_detected_only_against_recorded_head() -> None:
    entries = chain(5)
    verify_chain(entries[:3])  # a shorter chain is self-consistent...
    with pytest.raises(AuditChainBroken, match="removed from the end"):
        verify_chain(entries[:3], expected_head=(5, entries[4].hash))


def test_recorded_head_mismatch_detected() -> None:
    entries = chain(5)
    with pytest.raises(AuditChainBroken, match="differs from the recorded head"):
        verify_chain(entries, expected_head=(4, "0" * 64))
