"""Enrollment: bootstrap credentials, manufacturer CAs with allow lists, enrollments on hold.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bootstrap_credentials",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(256), nullable=True),
        sa.Column("max_uses", sa.Integer, nullable=False),
        sa.Column("uses", sa.Integer, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("disabled_at", _TS, nullable=True),
    )
    op.create_table(
        "manufacturer_cas",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("certificate_der", sa.LargeBinary, nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("device_id_from", sa.String(32), nullable=False),
        sa.Column("allow_list", sa.Boolean, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "manufacturer_devices",
        sa.Column("manufacturer", sa.String(64), sa.ForeignKey("manufacturer_cas.name"),
                  primary_key=True),
        sa.Column("device_id", sa.String(256), primary_key=True),
    )
    op.create_table(
        "pending_enrollments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(256), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("key_fingerprint", sa.String(64), nullable=False),
        sa.Column("csr_der", sa.LargeBinary, nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(256), nullable=True),
        sa.Column("decided_at", _TS, nullable=True),
        sa.Column("serial", sa.String(40), nullable=True),
        sa.Column("issuer", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
    )
    # A retrying device is found by the key it asks a certificate for.
    op.create_index("ix_pending_key", "pending_enrollments", ["profile", "key_fingerprint"])
    op.create_index("ix_pending_state", "pending_enrollments", ["state"])


def downgrade() -> None:
    for table in ("pending_enrollments", "manufacturer_devices", "manufacturer_cas",
                  "bootstrap_credentials"):
        op.drop_table(table)
