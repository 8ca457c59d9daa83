"""Subject and SAN substring search without reading every certificate.

SQLite: an FTS5 table with the trigram tokenizer (SQLite 3.34 or later), `certificate_names`,
holding each certificate's subject and SANs under the certificate's rowid. It is filled in bulk
by the background round (store/sql/name_search.py), never by a trigger: a per-row trigger
cost batch issuance 39 % (docs/benchmarks.md). `name_index` records how far the filling has
got, so that a search can read the rest directly. The migration creates both empty, so that
upgrading a store with millions of certificates is instant; the first rounds fill the index.

PostgreSQL: pg_trgm GIN indexes, which ILIKE '%...%' uses directly and PostgreSQL keeps
current itself. pg_trgm is a trusted extension from PostgreSQL 13, so a database owner may
create it; where it cannot be created the indexes are skipped (searches stay correct, only
slower) and the migration says what to run.

Revision ID: 0009
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

log = logging.getLogger(__name__)


def upgrade() -> None:
    # One row: the certificates rowid up to which certificate_names is filled, and the key of
    # the certificate at that rowid (a check that rowids have not moved since).
    op.create_table(
        "name_index",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_rowid", sa.BigInteger, nullable=False),
        sa.Column("last_issuer", sa.String(64), nullable=True),
        sa.Column("last_serial", sa.String(40), nullable=True),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _sqlite(bind)
    elif bind.dialect.name == "postgresql":
        _postgresql(bind)


def _sqlite(bind: sa.Connection) -> None:
    try:
        bind.execute(sa.text(
            "CREATE VIRTUAL TABLE certificate_names USING fts5("
            "subject, sans, tokenize = 'trigram')"))
    except sa.exc.OperationalError as error:
        log.warning("this SQLite has no FTS5 trigram tokenizer (%s; SQLite 3.34 or later has "
                    "it): subject and SAN substring searches will read every certificate",
                    str(error.orig).splitlines()[0])
        return
    bind.execute(sa.text("INSERT INTO name_index (id, last_rowid) VALUES (1, 0)"))


def _postgresql(bind: sa.Connection) -> None:
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as error:
        savepoint.rollback()
        log.warning("pg_trgm is not available (%s): subject and SAN substring searches will "
                    "read every certificate; run CREATE EXTENSION pg_trgm as the database "
                    "owner, then CREATE INDEX ix_certificates_subject_trgm ON certificates "
                    "USING gin (subject gin_trgm_ops) and the same for sans",
                    str(error.orig).splitlines()[0])
        return
    savepoint.commit()
    op.execute("CREATE INDEX ix_certificates_subject_trgm ON certificates "
               "USING gin (subject gin_trgm_ops)")
    op.execute("CREATE INDEX ix_certificates_sans_trgm ON certificates "
               "USING gin (sans gin_trgm_ops)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS certificate_names")
    elif bind.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_certificates_sans_trgm")
        op.execute("DROP INDEX IF EXISTS ix_certificates_subject_trgm")
    op.drop_table("name_index")
