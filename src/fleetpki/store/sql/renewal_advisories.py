"""The renewal advisories table: operators pulling renewals forward (core/renewal_window.py).

A mixin of SqlStore, so that one store object serves every Protocol of store/api.py. Each
change is written in one transaction with its audit entry: an advisory that devices act on
is never missing from the audit log, and a refused change leaves no trace in either.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from fleetpki.core.errors import Conflict, NotFound
from fleetpki.core.renewal_window import RenewalAdvisory
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.audit_append import append_events
from fleetpki.store.sql.engine import translate_errors
from fleetpki.store.sql.schema import renewal_advisories


class RenewalAdvisoryTables:
    _writer: sa.Engine
    _reader: sa.Engine

    def add_advisory(self, advisory: RenewalAdvisory, event: AuditEvent, *, at: dt.datetime
                     ) -> None:
        t = renewal_advisories
        with translate_errors(), self._writer.begin() as c:
            if c.execute(sa.select(t.c.id).where(t.c.id == advisory.id)).first():
                raise Conflict(f"a renewal advisory with id '{advisory.id}' already exists")
            # Timestamps go through the UtcDateTime column type, as in the other mixins.
            c.execute(t.insert().values(
                id=advisory.id, profile=advisory.profile, issued_before=advisory.issued_before,
                start=advisory.start, end=advisory.end, explanation=advisory.explanation,
                created_at=advisory.created_at, created_by=advisory.created_by,
                withdrawn_at=advisory.withdrawn_at))
            append_events(c, [event], at)

    def list_advisories(self, *, profile: str | None = None, include_withdrawn: bool = False
                        ) -> list[RenewalAdvisory]:
        t = renewal_advisories
        query = sa.select(t).order_by(t.c.created_at, t.c.id)
        if profile is not None:
            query = query.where(t.c.profile == profile)
        if not include_withdrawn:
            query = query.where(t.c.withdrawn_at.is_(None))
        with translate_errors(), self._reader.connect() as c:
            return [_advisory(r) for r in c.execute(query)]

    def withdraw_advisory(self, advisory_id: str, event: AuditEvent, *, at: dt.datetime
                          ) -> RenewalAdvisory:
        t = renewal_advisories
        with translate_errors(), self._writer.begin() as c:
            row = c.execute(sa.select(t.c.withdrawn_at).where(t.c.id == advisory_id)).first()
            if row is None:
                raise NotFound(f"no renewal advisory with id '{advisory_id}' "
                               "(`fleetpki renewal list --all` shows them)")
            if row.withdrawn_at is not None:
                raise Conflict(f"renewal advisory '{advisory_id}' was already withdrawn on "
                               f"{row.withdrawn_at:%Y-%m-%d %H:%M} UTC; nothing changed")
            c.execute(t.update().where(t.c.id == advisory_id).values(withdrawn_at=at))
            append_events(c, [event], at)
            return _advisory(c.execute(sa.select(t).where(t.c.id == advisory_id)).one())


def _advisory(row: Any) -> RenewalAdvisory:
    return RenewalAdvisory(
        id=row.id, profile=row.profile, issued_before=row.issued_before, start=row.start,
        end=row.end, explanation=row.explanation, created_at=row.created_at,
        created_by=row.created_by, withdrawn_at=row.withdrawn_at)
