"""The audit log's hash chain: each entry commits to the one before it.

hash_n = SHA-256(hash_{n-1} || canonical(entry_n)). Changing an entry changes its hash; removing
or moving one breaks the next entry's link. Removing entries from the *end* leaves a valid shorter
chain: only a head recorded elsewhere (`fleetpki audit head`, copied to a ticket, a SIEM, paper)
detects that, so `verify` accepts an expected head to compare against.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable

from fleetpki.core.errors import AuditChainBroken
from fleetpki.core.records import AuditEntry

GENESIS = "0" * 64


def canonical_details(details: dict[str, str]) -> str:
    """The one JSON form of an entry's details: stored as is and hashed as is."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, seq: int, at: dt.datetime, actor: str, action: str,
               subject: str, details_json: str) -> str:
    """SHA-256 over the previous hash and the canonical JSON array
    [seq, at, actor, action, subject, details]."""
    head = json.dumps([seq, at.astimezone(dt.UTC).isoformat(timespec="microseconds"), actor,
                       action, subject], separators=(",", ":"), ensure_ascii=False)
    canonical = f"{head[:-1]},{details_json}]"
    return hashlib.sha256(prev_hash.encode("ascii") + canonical.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class ChainReport:
    entries: int
    head_seq: int
    head_hash: str


def verify_chain(entries: Iterable[AuditEntry], *, expected_head: tuple[int, str] | None = None
                 ) -> ChainReport:
    """Walk the chain in sequence order; raise AuditChainBroken at the first bad link."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for entry in entries:
        if entry.seq != expected_seq:
            raise AuditChainBroken(
                f"audit entry {expected_seq} is missing or out of order (found {entry.seq} next)")
        if entry.prev_hash != prev_hash:
            raise AuditChainBroken(
                f"audit entry {entry.seq} does not link to entry {entry.seq - 1}: an entry was "
                "removed, inserted or reordered")
        recomputed = entry_hash(prev_hash, entry.seq, entry.at, entry.actor, entry.action,
                                entry.subject, canonical_details(entry.details))
        if recomputed != entry.hash:
            raise AuditChainBroken(f"audit entry {entry.seq} was modified after it was written")
        if expected_head is not None and entry.seq == expected_head[0] \
                and entry.hash != expected_head[1]:
            raise AuditChainBroken(f"audit entry {entry.seq} differs from the recorded head")
        prev_hash, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    report = ChainReport(entries=count, head_seq=expected_seq - 1, head_hash=prev_hash)
    if expected_head is not None and report.head_seq < expected_head[0]:
        raise AuditChainBroken(
            f"audit log ends at entry {report.head_seq} but the recorded head is entry "
            f"{expected_head[0]}: entries were removed from the end")
    return report
