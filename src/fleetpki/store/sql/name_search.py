"""Subject and SAN substring searches (CertificateQuery.subject_contains / san_contains).

`LIKE '%term%'` cannot use an ordinary index. Walking the expiry index in page order and
testing each row is fast when the term is common (a page fills within a few rows) and slow
when it is rare (every row is read to find one). So, on SQLite, a term of three characters or
more is first looked up in the trigram index of migration 0008, which finds rare terms at
once; when that finds at least PROBE_LIMIT rows the term is common and the walk wins. On
PostgreSQL the pg_trgm indexes of the same migration serve ILIKE directly and the planner
chooses. The match ignores case everywhere, as the trigram tokenizer does. Both paths give the
same rows: the contract tests run each query both ways, on both stores.
"""

from __future__ import annotations

import sqlalchemy as sa

from fleetpki.store.sql.schema import certificates

PROBE_LIMIT = 2000
_NAMES = sa.table("certificate_names", sa.column("issuer"), sa.column("serial"))
_TRIGRAM = 3  # the trigram tokenizer finds nothing for shorter terms


def contains(connection: sa.Connection, column: str, term: str) -> sa.ColumnElement[bool]:
    """The WHERE condition for certificates whose `column` ("subject" or "sans") contains
    `term` literally (no wildcards), ignoring case, on every store."""
    like = certificates.c[column].icontains(term, autoescape=True)
    if connection.dialect.name != "sqlite" or len(term) < _TRIGRAM:
        return like
    phrase = '"' + term.replace('"', '""') + '"'  # an FTS5 string: the term, nothing else
    match = sa.literal_column(f"certificate_names.{column}").op("MATCH")(phrase)
    probe = sa.select(sa.literal(1)).select_from(_NAMES).where(match).limit(PROBE_LIMIT)
    found = connection.execute(sa.select(sa.func.count()).select_from(probe.subquery()))
    if found.scalar_one() >= PROBE_LIMIT:
        return like
    return sa.tuple_(certificates.c.issuer, certificates.c.serial).in_(
        sa.select(_NAMES.c.issuer, _NAMES.c.serial).where(match))
