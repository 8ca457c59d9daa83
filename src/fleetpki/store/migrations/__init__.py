"""Alembic migrations for the SQL store. Run automatically when a store is opened."""
