"""Alembic environment: runs on the connection Store.migrate() hands over, never on its own URL.

Store.migrate() opens the transaction and holds the migration lock, so alembic must not commit.
"""

from alembic import context
from alembic.autogenerate.api import AutogenContext

from store.schema import UTCDateTime, metadata


def render_item(type_: str, obj: object, autogen_context: AutogenContext) -> str | bool:
    """Write UTCDateTime as its column type, so revisions stay frozen and free of store imports."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through store.Store.migrate(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_item=render_item,
    # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
