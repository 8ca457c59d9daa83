"""SQLAlchemy Core implementation of store.api, for SQLite (default) and PostgreSQL."""
