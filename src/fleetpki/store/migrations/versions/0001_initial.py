"""Initial schema: CAs, serial ledger, certificates, hash-chained audit log.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cas",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("parent", sa.String(64), sa.ForeignKey("cas.name"), nullable=True),
        sa.Column("certificate_der", sa.LargeBinary, nullable=False),
        sa.Column("key_file", sa.Text, nullable=True),
        sa.Column("imported", sa.Boolean, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("crl_number", sa.Integer, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
    )
    op.create_table(
        "serials",
        sa.Column("issuer", sa.String(64), sa.ForeignKey("cas.name"), primary_key=True),
        sa.Column("serial", sa.String(40), primary_key=True),
        sa.Column("device_id", sa.String(256), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("reserved_at", _TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.create_index("ix_serials_state", "serials", ["state"])
    op.create_table(
        "certificates",
        sa.Column("issuer", sa.String(64), primary_key=True),
        sa.Column("serial", sa.String(40), primary_key=True),
        sa.Column("device_id", sa.String(256), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("sans", sa.Text, nullable=False),
        sa.Column("key_spec", sa.String(16), nullable=False),
        sa.Column("key_fingerprint", sa.String(64), nullable=False),
        sa.Column("not_before", _TS, nullable=False),
        sa.Column("not_after", _TS, nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(["issuer", "serial"], ["serials.issuer", "serials.serial"]),
    )
    # What the inventory searches by (issue: CLI list/search; later the REST API and dashboard).
    op.create_index("ix_certificates_device", "certificates", ["device_id", "profile"])
    op.create_index("ix_certificates_profile_expiry", "certificates", ["profile", "not_after"])
    op.create_index("ix_certificates_not_after", "certificates", ["not_after"])
    # Partial: only revoked rows are indexed, so issuing does not pay for this index.
    revoked = sa.text("revoked_at IS NOT NULL")
    op.create_index("ix_certificates_revoked_at", "certificates", ["revoked_at"],
                    sqlite_where=revoked, postgresql_where=revoked)
    op.create_index("ix_certificates_serial", "certificates", ["serial"])
    op.create_index("ix_certificates_key_spec", "certificates", ["key_spec"])
    op.create_index("ix_certificates_key_fingerprint", "certificates", ["key_fingerprint"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.execute(sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :genesis)")
               .bindparams(genesis="0" * 64))


def downgrade() -> None:
    for table in ("audit_head", "audit_log", "certificates", "serials", "cas"):
        op.drop_table(table)
