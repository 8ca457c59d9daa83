"""Subject and SAN substring search (CertificateQuery.subject_contains / san_contains).

`LIKE '%term%'` cannot use an ordinary index. Walking the expiry index in page order and
testing each row is fast when the term is common (a page fills within a few rows) and slow
when it is rare (every row is read to find one: 280-340 ms with a million certificates).

On SQLite a term of three characters or more is therefore looked up in the trigram index of
migration 0009, `certificate_names`. That index is filled in bulk by the background round
(`index_certificate_names`), not on the issuance path, so it lags the certificates table: a
search reads the index up to its watermark and the certificates past it (a short rowid range)
directly. When those together find PROBE_LIMIT rows the term is common and the walk wins.

The index rows carry the certificates' rowids, and a search fetches its hits by rowid: SQLite
seeks a primary key with `rowid IN (...)` but not with `(issuer, serial) IN (a compound
select)`, which it answers by reading every certificate (5 s for a million). Rowids are stable
here: certificates are never deleted, so they stay numbered 1..N in insertion order, which is
also what a VACUUM renumbering would give them. Should they move all the same, the watermark
records which certificate it points at, searches stop trusting the index, and the next round
rebuilds it.

On PostgreSQL the pg_trgm indexes of the same migration serve ILIKE directly and the planner
chooses. The match ignores case on both stores. Both paths give the same rows: the contract
tests run each query both ways, on both stores.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from fleetpki.store.sql.engine import translate_errors
from fleetpki.store.sql.schema import certificates, name_index

log = logging.getLogger(__name__)

PROBE_LIMIT = 2000
INDEX_CHUNK = 20_000  # certificates per transaction: about half a second of writer lock
_TRIGRAM = 3  # the trigram tokenizer finds nothing for shorter terms
_ROWID: sa.ColumnClause[int] = sa.literal_column("certificates.rowid", sa.Integer)
_COLUMNS = ("subject", "sans")


def contains(connection: sa.Connection, column: str, term: str) -> sa.ColumnElement[bool]:
    """The WHERE condition for certificates whose `column` ("subject" or "sans") contains
    `term` literally (no wildcards), ignoring case."""
    if column not in _COLUMNS:  # it is written into SQL below
        raise ValueError(f"no substring search on {column!r}")
    if "\x00" in term:
        # Stored names escape NUL (RFC 4514 writes it as \00), so nothing contains one; and
        # SQLite's LIKE stops reading a pattern at NUL, and FTS5 refuses it, so ask neither.
        return sa.false()
    like = certificates.c[column].icontains(term, autoescape=True)
    if connection.dialect.name != "sqlite" or len(term) < _TRIGRAM:
        return like
    watermark = _usable_watermark(connection)
    if watermark is None:
        return like
    phrase = '"' + term.replace('"', '""') + '"'  # an FTS5 string: the term, nothing else
    # Plain SQL: the compound select mentions `certificates` too, and SQLAlchemy would
    # correlate it with the outer query.
    hits = sa.text(
        f"SELECT rowid FROM certificate_names WHERE {column} MATCH :phrase "  # noqa: S608
        f"UNION ALL SELECT rowid FROM certificates WHERE rowid > :watermark "
        f"AND lower({column}) LIKE :pattern ESCAPE '/'"
    ).bindparams(phrase=phrase, watermark=watermark, pattern=_pattern(term)).columns(
        sa.column("rowid", sa.Integer))
    probe = sa.select(sa.literal(1)).select_from(hits.subquery()).limit(PROBE_LIMIT)
    found = connection.execute(sa.select(sa.func.count()).select_from(probe.subquery()))
    if found.scalar_one() >= PROBE_LIMIT:
        return like
    # A certificate both indexed and past a watermark read earlier appears twice in `hits`;
    # IN does not mind.
    return _ROWID.in_(hits)


def _pattern(term: str) -> str:
    """`term` as a LIKE pattern matching it anywhere, lower-cased, wildcards escaped."""
    escaped = term.lower().replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def _usable_watermark(connection: sa.Connection) -> int | None:
    """The certificates rowid up to which certificate_names is filled, or None when there
    is no index or the rowids have moved under it (until the next round rebuilds it)."""
    state = connection.execute(sa.select(name_index).where(name_index.c.id == 1)).first()
    if state is None:
        return None
    return int(state.last_rowid) if _still_in_place(connection, state) else None


def _still_in_place(connection: sa.Connection, state: Any) -> bool:
    """Certificates are never deleted, so their rowids do not move; but SQLite allows VACUUM
    to renumber a table without an INTEGER PRIMARY KEY. The certificate at the watermark
    must still be the one recorded there."""
    if state.last_rowid == 0:
        return True
    row = connection.execute(sa.text("SELECT issuer, serial FROM certificates WHERE rowid = :r"),
                             {"r": state.last_rowid}).first()
    return row is not None and tuple(row) == (state.last_issuer, state.last_serial)


class NameIndexTables:
    _writer: sa.Engine

    def index_certificate_names(self, *, limit: int = INDEX_CHUNK) -> int:
        """Add up to `limit` certificates past the watermark to the trigram index, in one
        transaction; how many were added. Nothing to do on PostgreSQL, whose indexes follow
        every insert, or on a SQLite without FTS5 trigrams."""
        if self._writer.dialect.name != "sqlite":
            return 0
        with translate_errors(), self._writer.begin() as c:
            state = c.execute(sa.select(name_index).where(name_index.c.id == 1)).first()
            if state is None:
                return 0
            start = int(state.last_rowid)
            if not _still_in_place(c, state):
                log.warning("certificate rowids moved (a VACUUM?): rebuilding the subject and "
                            "SAN search index")
                c.execute(sa.text("DELETE FROM certificate_names"))
                start = 0
            end = c.execute(sa.text(
                "SELECT max(rowid) FROM (SELECT rowid FROM certificates WHERE rowid > :start "
                "ORDER BY rowid LIMIT :limit)"), {"start": start, "limit": limit}).scalar()
            if end is None:
                if start != state.last_rowid:
                    _save_watermark(c, start)
                return 0
            added = c.execute(sa.text(
                "INSERT INTO certificate_names (rowid, subject, sans) "
                "SELECT rowid, subject, sans FROM certificates "
                "WHERE rowid > :start AND rowid <= :end"), {"start": start, "end": end})
            _save_watermark(c, int(end))
            return int(added.rowcount)


def _save_watermark(connection: sa.Connection, rowid: int) -> None:
    key = connection.execute(sa.text("SELECT issuer, serial FROM certificates WHERE rowid = :r"),
                             {"r": rowid}).first()
    connection.execute(name_index.update().where(name_index.c.id == 1).values(
        last_rowid=rowid, last_issuer=key[0] if key else None,
        last_serial=key[1] if key else None))
