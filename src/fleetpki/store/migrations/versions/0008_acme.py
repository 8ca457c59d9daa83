"""ACME (RFC 8555): external account binding keys, accounts, orders, authorizations,
challenges and spent nonces.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    _accounts()
    _orders()
    # RFC 8555 §6.5: a nonce is accepted once. Spent nonces are kept until they would be
    # refused as expired anyway; pruning deletes by expiry.
    op.create_table(
        "acme_nonces",
        sa.Column("nonce", sa.String(128), primary_key=True),
        sa.Column("expires", _TS, nullable=False),
    )
    op.create_index("ix_acme_nonces_expires", "acme_nonces", ["expires"])


def _accounts() -> None:
    # RFC 8555 §7.3.4. The MAC key is derived from the RA's secret and the key id, never
    # stored. account_id is set once, by a conditional UPDATE, when an account binds it.
    op.create_table(
        "acme_eab_keys",
        sa.Column("key_id", sa.String(128), primary_key=True),
        sa.Column("profile", sa.String(64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("disabled_at", _TS, nullable=True),
    )
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_thumbprint", sa.String(64), nullable=False),
        sa.Column("key_jwk", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("contact", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("eab_key_id", sa.String(128), sa.ForeignKey("acme_eab_keys.key_id"),
                  nullable=True),
        sa.Column("profile", sa.String(64), nullable=True),
    )
    # RFC 8555 §7.3.1/§7.3.5: a key names one account; requests signed with a `jwk` find
    # their account by its thumbprint. An EAB key binds at most one account (NULLs repeat).
    op.create_index("ix_acme_accounts_key_thumbprint", "acme_accounts", ["key_thumbprint"],
                    unique=True)
    op.create_index("ix_acme_accounts_eab_key_id", "acme_accounts", ["eab_key_id"],
                    unique=True)


def _orders() -> None:
    # Identifiers are a JSON array; the serial is lower-case hex like every serial column.
    op.create_table(
        "acme_orders",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("acme_accounts.id"),
                  nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("identifiers", sa.Text, nullable=False),
        sa.Column("expires", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("serial", sa.String(40), nullable=True),
        sa.Column("issuer", sa.String(64), nullable=True),
        sa.Column("replaces", sa.Text, nullable=True),
    )
    # RFC 8555 §7.1.2.1: an account's orders list, paged by id.
    op.create_index("ix_acme_orders_account", "acme_orders", ["account_id", "id"])
    # RFC 8555 §7.6: revocation finds the order (and its account) of a certificate.
    op.create_index("ix_acme_orders_certificate", "acme_orders", ["issuer", "serial"])
    op.create_index("ix_acme_orders_expires", "acme_orders", ["expires"])
    # Reuse (RFC 8555 §7.4) looks up an account's valid authorization of one identifier,
    # the one expiring last: a single index seek.
    op.create_table(
        "acme_authorizations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("acme_accounts.id"),
                  nullable=False),
        sa.Column("identifier_type", sa.String(16), nullable=False),
        sa.Column("identifier_value", sa.String(255), nullable=False),
        sa.Column("wildcard", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_acme_authorizations_reuse", "acme_authorizations",
                    ["account_id", "identifier_type", "identifier_value", "wildcard", "status",
                     "expires"])
    # An order's authorizations, in the order of its identifiers. Foreign keys keep every
    # reference valid even when an order reuses an authorization that pruning is deleting.
    op.create_table(
        "acme_order_authorizations",
        sa.Column("order_id", sa.String(64), sa.ForeignKey("acme_orders.id"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("authorization_id", sa.String(64), sa.ForeignKey("acme_authorizations.id"),
                  nullable=False),
    )
    op.create_index("ix_acme_order_authorizations_authorization",
                    "acme_order_authorizations", ["authorization_id"])
    op.create_table(
        "acme_challenges",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("authorization_id", sa.String(64), sa.ForeignKey("acme_authorizations.id"),
                  nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("token", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("validated_at", _TS, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_acme_challenges_authorization", "acme_challenges",
                    ["authorization_id"])


def downgrade() -> None:
    # Children before parents: the foreign keys are enforced on both dialects.
    op.drop_index("ix_acme_nonces_expires", "acme_nonces")
    op.drop_table("acme_nonces")
    op.drop_index("ix_acme_challenges_authorization", "acme_challenges")
    op.drop_table("acme_challenges")
    op.drop_index("ix_acme_order_authorizations_authorization", "acme_order_authorizations")
    op.drop_table("acme_order_authorizations")
    op.drop_index("ix_acme_authorizations_reuse", "acme_authorizations")
    op.drop_table("acme_authorizations")
    for name in ("ix_acme_orders_expires", "ix_acme_orders_certificate",
                 "ix_acme_orders_account"):
        op.drop_index(name, "acme_orders")
    op.drop_table("acme_orders")
    op.drop_index("ix_acme_accounts_eab_key_id", "acme_accounts")
    op.drop_index("ix_acme_accounts_key_thumbprint", "acme_accounts")
    op.drop_table("acme_accounts")
    op.drop_table("acme_eab_keys")
