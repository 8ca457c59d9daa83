"""SCEP: static enrollment challenges, protocol transactions, altered CSRs on hold.

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # One static challenge password per profile (RFC 8894 §2.3); only its hash is stored.
    op.create_table(
        "enrollment_challenges",
        sa.Column("profile", sa.String(64), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
    )
    # Requests a protocol names itself (SCEP transactionID, RFC 8894 §3.2.1.1): a retry finds
    # its outcome by the key, not a second certificate. Undecided while pending_id and serial
    # are both NULL; the serial is lower-case hex like every other serial column.
    op.create_table(
        "enrollment_transactions",
        sa.Column("protocol", sa.String(16), primary_key=True),
        sa.Column("transaction_id", sa.String(128), primary_key=True),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("key_fingerprint", sa.String(64), nullable=False),
        sa.Column("requester_fingerprint", sa.String(64), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("pending_id", sa.String(32), nullable=True),
        sa.Column("serial", sa.String(40), nullable=True),
        sa.Column("issuer", sa.String(64), nullable=True),
    )
    # Pruning deletes by age.
    op.create_index("ix_enrollment_transactions_created_at", "enrollment_transactions",
                    ["created_at"])
    # A held request whose stored CSR is not the bytes the device signed (its SCEP
    # challengePassword taken out, or its attributes put in DER order): the signature no
    # longer verifies, and approval must know not to check it again.
    op.add_column("pending_enrollments",
                  sa.Column("csr_altered", sa.Boolean, nullable=False,
                            server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("pending_enrollments") as batch:
        batch.drop_column("csr_altered")
    op.drop_index("ix_enrollment_transactions_created_at", "enrollment_transactions")
    op.drop_table("enrollment_transactions")
    op.drop_table("enrollment_challenges")
