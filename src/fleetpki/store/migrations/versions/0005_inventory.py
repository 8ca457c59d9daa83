"""Inventory: admin API tokens, fleet summaries, certificates found by discovery scans.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Only the hash of a token's secret is stored; the id is the public half of the token and
    # the key every request looks it up by.
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    # A fleet summary is one aggregate pass over every certificate, kept as JSON so that the
    # dashboard's overview reads one row whatever the size of the fleet. Old rows are pruned.
    op.create_table(
        "inventory_summaries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("computed_at", _TS, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
    )
    op.create_index("ix_inventory_summaries_computed_at", "inventory_summaries",
                    ["computed_at"])
    # One row per certificate seen at an endpoint; a certificate served at two endpoints is
    # two rows. Rescans update last_seen.
    op.create_table(
        "discovered_certificates",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("port", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),  # 0: the leaf the endpoint served
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("issuer_name", sa.Text, nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("not_before", _TS, nullable=False),
        sa.Column("not_after", _TS, nullable=False),
        sa.Column("key_spec", sa.String(16), nullable=False),
        sa.Column("signature_algorithm", sa.String(64), nullable=False),
        sa.Column("issued_by_us", sa.String(64), nullable=True),  # our CA's name, if ours
        sa.Column("first_seen", _TS, nullable=False),
        sa.Column("last_seen", _TS, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_discovered_not_after", "discovered_certificates", ["not_after"])
    # The inventory's device list walks devices in order and the search narrows by issue
    # time; neither has an index of its own yet.
    op.create_index("ix_certificates_issued_at", "certificates", ["issued_at"])
    # Every certificate list is in expiry order, (not_after, serial), a page at a time. With
    # 1,000,000 certificates (docs/benchmarks.md, "Inventory"): a filter on the key type or
    # the issuer is a range of these indexes read in list order, stopping after a page,
    # instead of every certificate of that key (RSA-2048: 190 ms) or of that issuer (one
    # issuing CA holds the whole fleet: 4 s) fetched and sorted.
    op.drop_index("ix_certificates_key_spec", "certificates")
    op.create_index("ix_certificates_key_spec", "certificates", ["key_spec", "not_after"])
    op.create_index("ix_certificates_issuer_expiry", "certificates", ["issuer", "not_after"])
    # The expiry index carries the list's tie-break (serial), so pages need no sort, and on
    # SQLite the subject and SANs too: a substring search, which no B-tree can seek, then
    # scans this index (130 MB per million) and not the table with its DER (2 GB): 0.3 s
    # instead of 4 s. PostgreSQL refuses index entries over 2.7 kB, which a long subject
    # with many SANs could pass, so there it stays (not_after, serial).
    wide = ["subject", "sans"] if op.get_bind().dialect.name == "sqlite" else []
    op.drop_index("ix_certificates_not_after", "certificates")
    op.create_index("ix_certificates_not_after", "certificates", ["not_after", "serial", *wide])
    # The audit log's filters, newest first. Without these, a filter matching few entries
    # (one serial, one device, a rare action) read the whole log: 300 ms per million.
    # The subject is unbounded text: a hash index on PostgreSQL, where B-tree entries are
    # limited in size (SQLite's B-tree is not, and orders by seq, its rowid, for free).
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"], postgresql_using="hash")
    op.create_index("ix_audit_log_actor", "audit_log", ["actor", "seq"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "seq"])


def downgrade() -> None:
    for name in ("ix_audit_log_action", "ix_audit_log_actor", "ix_audit_log_subject"):
        op.drop_index(name, "audit_log")
    op.drop_index("ix_certificates_not_after", "certificates")
    op.create_index("ix_certificates_not_after", "certificates", ["not_after"])
    op.drop_index("ix_certificates_issuer_expiry", "certificates")
    op.drop_index("ix_certificates_key_spec", "certificates")
    op.create_index("ix_certificates_key_spec", "certificates", ["key_spec"])
    op.drop_index("ix_certificates_issued_at", "certificates")
    op.drop_index("ix_discovered_not_after", "discovered_certificates")
    op.drop_table("discovered_certificates")
    op.drop_index("ix_inventory_summaries_computed_at", "inventory_summaries")
    op.drop_table("inventory_summaries")
    op.drop_table("api_tokens")
