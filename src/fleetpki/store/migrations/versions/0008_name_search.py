"""Substring search of certificate subjects and SANs without reading every row.

SQLite: an FTS5 table with the trigram tokenizer (SQLite 3.34+) holding each certificate's
subject and SANs, keyed by issuer and serial (the certificates table's rowid is not stable
across VACUUM, so it is not used), kept current by a trigger. PostgreSQL: pg_trgm GIN indexes,
which LIKE '%...%' uses directly; the extension needs a privileged role, so without it the
indexes are skipped (searches stay correct, only slower) and the migration says so.

Revision ID: 0008
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

log = logging.getLogger(__name__)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE certificate_names USING fts5("
                   "subject, sans, issuer UNINDEXED, serial UNINDEXED, tokenize = 'trigram')")
        op.execute("INSERT INTO certificate_names (subject, sans, issuer, serial) "
                   "SELECT subject, sans, issuer, serial FROM certificates")
        # Certificates are written once and never renamed or deleted: inserts are all there is
        # to follow.
        op.execute("CREATE TRIGGER certificate_names_insert AFTER INSERT ON certificates BEGIN "
                   "INSERT INTO certificate_names (subject, sans, issuer, serial) "
                   "VALUES (new.subject, new.sans, new.issuer, new.serial); END")
        return
    if bind.dialect.name == "postgresql":
        savepoint = bind.begin_nested()
        try:
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        except sa.exc.DBAPIError as error:
            savepoint.rollback()
            log.warning("pg_trgm is not available (%s): subject and SAN substring searches "
                        "will read every certificate; run CREATE EXTENSION pg_trgm as a "
                        "superuser and re-create the indexes of migration 0008",
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
        op.execute("DROP TRIGGER IF EXISTS certificate_names_insert")
        op.execute("DROP TABLE IF EXISTS certificate_names")
    elif bind.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_certificates_sans_trgm")
        op.execute("DROP INDEX IF EXISTS ix_certificates_subject_trgm")
