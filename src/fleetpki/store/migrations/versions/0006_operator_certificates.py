"""Operator client certificates: TLS client certificates admitted to the admin API.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Pinned by the SHA-256 of the certificate: the TLS handshake proves the key, the pin says
    # which certificate (not merely which CA) an operator holds.
    op.create_table(
        "operator_certificates",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("not_after", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("operator_certificates")
