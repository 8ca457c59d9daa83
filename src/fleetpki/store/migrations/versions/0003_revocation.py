"""Revocation: CRL partitions, invalidity dates, a change sequence for delta CRLs, and the
state of every published CRL series.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("certificates", sa.Column("crl_shard", sa.Integer, nullable=True))
    op.add_column("certificates", sa.Column("invalidity_date", _TS, nullable=True))
    # Set from the issuer's counter whenever a revocation is made or a hold lifted: a delta
    # CRL lists the rows changed after its base CRL's watermark.
    op.add_column("certificates", sa.Column("revocation_seq", sa.Integer, nullable=True))
    changed = sa.text("revocation_seq IS NOT NULL")
    op.create_index("ix_certificates_revocation_seq", "certificates",
                    ["issuer", "revocation_seq"], sqlite_where=changed, postgresql_where=changed)
    # What a full CRL reads: the revoked rows of one CA, or of one profile's shard. Partial, so
    # issuing pays nothing for it, and it holds all three columns so that no query planner
    # prefers walking a whole profile through (profile, not_after).
    revoked = sa.text("revoked_at IS NOT NULL")
    op.create_index("ix_certificates_crl_scope", "certificates",
                    ["issuer", "profile", "crl_shard"], sqlite_where=revoked,
                    postgresql_where=revoked)
    op.add_column("cas", sa.Column("revocation_seq", sa.Integer, nullable=False,
                                   server_default="0"))
    op.create_table(
        "crl_publications",
        sa.Column("issuer", sa.String(64), sa.ForeignKey("cas.name"), primary_key=True),
        sa.Column("scope", sa.String(80), primary_key=True),  # "" or "profile/shard"
        sa.Column("kind", sa.String(8), primary_key=True),  # full | delta
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("this_update", _TS, nullable=False),
        sa.Column("next_update", _TS, nullable=False),
        sa.Column("watermark", sa.Integer, nullable=False),
        sa.Column("base_number", sa.Integer, nullable=True),
        sa.Column("base_watermark", sa.Integer, nullable=True),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("crl_publications")
    op.drop_index("ix_certificates_crl_scope", "certificates")
    op.drop_index("ix_certificates_revocation_seq", "certificates")
    with op.batch_alter_table("certificates") as batch:
        for column in ("revocation_seq", "invalidity_date", "crl_shard"):
            batch.drop_column(column)
    with op.batch_alter_table("cas") as batch:
        batch.drop_column("revocation_seq")
