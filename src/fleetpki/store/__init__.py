"""Persistence. Consumers depend on the Protocols in store.api, never on store.sql."""
