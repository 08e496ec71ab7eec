"""Alembic script directory of the store; run through store.Store.migrate()."""
