"""Alembic migrations for the SQL store. Run automatically when a store is opened."""

# The newest revision in versions/. Checked against Alembic's own view by a unit test, so that
# opening an up-to-date store needs no Alembic import.
SCHEMA_HEAD = "0009"
