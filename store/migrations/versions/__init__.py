"""Alembic revisions, frozen once released: change the schema by adding one."""
