"""Renewal advisories: operators pulling renewals forward for a profile's certificates.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # No index beyond the key: a fleet has a handful of advisories, not thousands, and every
    # read wants the whole (small) list of a profile.
    op.create_table(
        "renewal_advisories",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("issued_before", _TS, nullable=False),
        sa.Column("start", _TS, nullable=False),
        sa.Column("end", _TS, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("withdrawn_at", _TS, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("renewal_advisories")
