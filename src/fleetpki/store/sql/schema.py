"""Table definitions used by queries. Migrations (store/migrations) create and evolve them.

Serials are stored as lower-case hex text: they are up to 20 octets, which no integer column
holds (DESIGN.md §3). Timestamps are stored as UTC.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every dialect. SQLite's DateTime drops
    the offset and would store 14:00+02:00 as 14:00; we convert to UTC before it can."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect
                           ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect
                             ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = sa.MetaData()

cas = sa.Table(
    "cas", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("parent", sa.String(64), sa.ForeignKey("cas.name"), nullable=True),
    sa.Column("certificate_der", sa.LargeBinary, nullable=False),
    sa.Column("key_file", sa.Text, nullable=True),
    sa.Column("imported", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("crl_number", sa.Integer, nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.Column("revocation_reason", sa.String(32), nullable=True),
    sa.Column("revocation_seq", sa.Integer, nullable=False),
)

serials = sa.Table(
    "serials", metadata,
    sa.Column("issuer", sa.String(64), sa.ForeignKey("cas.name"), primary_key=True),
    sa.Column("serial", sa.String(40), primary_key=True),
    sa.Column("device_id", sa.String(256), nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("reserved_at", UtcDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # reserved | issued
)

certificates = sa.Table(
    "certificates", metadata,
    sa.Column("issuer", sa.String(64), primary_key=True),
    sa.Column("serial", sa.String(40), primary_key=True),
    sa.Column("device_id", sa.String(256), nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("sans", sa.Text, nullable=False),  # newline-separated "type:value"
    sa.Column("key_spec", sa.String(16), nullable=False),
    sa.Column("key_fingerprint", sa.String(64), nullable=False),
    sa.Column("not_before", UtcDateTime(), nullable=False),
    sa.Column("not_after", UtcDateTime(), nullable=False),
    sa.Column("issued_at", UtcDateTime(), nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.Column("revocation_reason", sa.String(32), nullable=True),
    sa.Column("crl_shard", sa.Integer, nullable=True),
    sa.Column("invalidity_date", UtcDateTime(), nullable=True),
    sa.Column("revocation_seq", sa.Integer, nullable=True),
    sa.ForeignKeyConstraint(["issuer", "serial"], ["serials.issuer", "serials.serial"]),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON object
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# One row. Appenders lock it (SELECT ... FOR UPDATE on PostgreSQL; SQLite writers are serialised
# by BEGIN IMMEDIATE) so that two processes never chain onto the same predecessor.
audit_head = sa.Table(
    "audit_head", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

bootstrap_credentials = sa.Table(
    "bootstrap_credentials", metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("device_id", sa.String(256), nullable=True),
    sa.Column("max_uses", sa.Integer, nullable=False),
    sa.Column("uses", sa.Integer, nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("disabled_at", UtcDateTime(), nullable=True),
)

manufacturer_cas = sa.Table(
    "manufacturer_cas", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("certificate_der", sa.LargeBinary, nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("device_id_from", sa.String(32), nullable=False),
    sa.Column("allow_list", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

manufacturer_devices = sa.Table(
    "manufacturer_devices", metadata,
    sa.Column("manufacturer", sa.String(64), sa.ForeignKey("manufacturer_cas.name"),
              primary_key=True),
    sa.Column("device_id", sa.String(256), primary_key=True),
)

pending_enrollments = sa.Table(
    "pending_enrollments", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("device_id", sa.String(256), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("key_fingerprint", sa.String(64), nullable=False),
    sa.Column("csr_der", sa.LargeBinary, nullable=False),
    sa.Column("requested_at", UtcDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(256), nullable=True),
    sa.Column("decided_at", UtcDateTime(), nullable=True),
    sa.Column("serial", sa.String(40), nullable=True),
    sa.Column("issuer", sa.String(64), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("csr_altered", sa.Boolean, nullable=False),
)

enrollment_challenges = sa.Table(
    "enrollment_challenges", metadata,
    sa.Column("profile", sa.String(64), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
)

enrollment_transactions = sa.Table(
    "enrollment_transactions", metadata,
    sa.Column("protocol", sa.String(16), primary_key=True),
    sa.Column("transaction_id", sa.String(128), primary_key=True),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("key_fingerprint", sa.String(64), nullable=False),
    sa.Column("requester_fingerprint", sa.String(64), nullable=False),
    sa.Column("request_fingerprint", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("pending_id", sa.String(32), nullable=True),
    sa.Column("serial", sa.String(40), nullable=True),
    sa.Column("issuer", sa.String(64), nullable=True),
)

crl_publications = sa.Table(
    "crl_publications", metadata,
    sa.Column("issuer", sa.String(64), primary_key=True),
    sa.Column("scope", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("this_update", UtcDateTime(), nullable=False),
    sa.Column("next_update", UtcDateTime(), nullable=False),
    sa.Column("watermark", sa.Integer, nullable=False),
    sa.Column("base_number", sa.Integer, nullable=True),
    sa.Column("base_watermark", sa.Integer, nullable=True),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
)

# How far the SQLite trigram index of subjects and SANs (certificate_names, migration 0009;
# a virtual table, so not declared here) is filled: store/sql/name_search.py.
name_index = sa.Table(
    "name_index", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_rowid", sa.BigInteger, nullable=False),
    sa.Column("last_issuer", sa.String(64), nullable=True),
    sa.Column("last_serial", sa.String(40), nullable=True),
)

renewal_advisories = sa.Table(
    "renewal_advisories", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("issued_before", UtcDateTime(), nullable=False),
    sa.Column("start", UtcDateTime(), nullable=False),
    sa.Column("end", UtcDateTime(), nullable=False),
    sa.Column("explanation", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("withdrawn_at", UtcDateTime(), nullable=True),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
)

inventory_summaries = sa.Table(
    "inventory_summaries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
)

discovered_certificates = sa.Table(
    "discovered_certificates", metadata,
    sa.Column("host", sa.String(255), primary_key=True),
    sa.Column("port", sa.Integer, primary_key=True),
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("issuer_name", sa.Text, nullable=False),
    sa.Column("serial", sa.String(40), nullable=False),
    sa.Column("not_before", UtcDateTime(), nullable=False),
    sa.Column("not_after", UtcDateTime(), nullable=False),
    sa.Column("key_spec", sa.String(16), nullable=False),
    sa.Column("signature_algorithm", sa.String(64), nullable=False),
    sa.Column("issued_by_us", sa.String(64), nullable=True),
    sa.Column("first_seen", UtcDateTime(), nullable=False),
    sa.Column("last_seen", UtcDateTime(), nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
)

operator_certificates = sa.Table(
    "operator_certificates", metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("not_after", UtcDateTime(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
)

# -- ACME (RFC 8555): migration 0008. Unlike the tables above, these declare their indexes
# too, so that a contract test can hold the migration to this file.

acme_eab_keys = sa.Table(
    "acme_eab_keys", metadata,
    sa.Column("key_id", sa.String(128), primary_key=True),
    sa.Column("profile", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=True),
    sa.Column("disabled_at", UtcDateTime(), nullable=True),
)

acme_accounts = sa.Table(
    "acme_accounts", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_thumbprint", sa.String(64), nullable=False),
    sa.Column("key_jwk", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("contact", sa.Text, nullable=False),  # JSON array of URLs
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("eab_key_id", sa.String(128), sa.ForeignKey("acme_eab_keys.key_id"),
              nullable=True),
    sa.Column("profile", sa.String(64), nullable=True),
    sa.Index("ix_acme_accounts_key_thumbprint", "key_thumbprint", unique=True),
    sa.Index("ix_acme_accounts_eab_key_id", "eab_key_id", unique=True),
)

acme_orders = sa.Table(
    "acme_orders", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("acme_accounts.id"), nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("identifiers", sa.Text, nullable=False),  # JSON array of {"type", "value"}
    sa.Column("expires", UtcDateTime(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("serial", sa.String(40), nullable=True),
    sa.Column("issuer", sa.String(64), nullable=True),
    sa.Column("replaces", sa.Text, nullable=True),
    sa.Index("ix_acme_orders_account", "account_id", "id"),
    sa.Index("ix_acme_orders_certificate", "issuer", "serial"),
    sa.Index("ix_acme_orders_expires", "expires"),
)

acme_authorizations = sa.Table(
    "acme_authorizations", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("acme_accounts.id"), nullable=False),
    sa.Column("identifier_type", sa.String(16), nullable=False),
    sa.Column("identifier_value", sa.String(255), nullable=False),
    sa.Column("wildcard", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires", UtcDateTime(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_acme_authorizations_reuse", "account_id", "identifier_type",
             "identifier_value", "wildcard", "status", "expires"),
)

# Which authorizations an order needs, in the order of its identifiers. A table rather than
# a list in the order row, so that the database itself keeps every reference pointing at an
# authorization that exists, and pruning asks "used by no order" with an index.
acme_order_authorizations = sa.Table(
    "acme_order_authorizations", metadata,
    sa.Column("order_id", sa.String(64), sa.ForeignKey("acme_orders.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("authorization_id", sa.String(64), sa.ForeignKey("acme_authorizations.id"),
              nullable=False),
    sa.Index("ix_acme_order_authorizations_authorization", "authorization_id"),
)

acme_challenges = sa.Table(
    "acme_challenges", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("authorization_id", sa.String(64), sa.ForeignKey("acme_authorizations.id"),
              nullable=False),
    sa.Column("position", sa.Integer, nullable=False),  # in its authorization's list
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("token", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("validated_at", UtcDateTime(), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_acme_challenges_authorization", "authorization_id"),
)

acme_nonces = sa.Table(
    "acme_nonces", metadata,
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("expires", UtcDateTime(), nullable=False),
    sa.Index("ix_acme_nonces_expires", "expires"),
)
