"""Alembic environment: one connection, one transaction, one migrator at a time."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from collector.config import load_settings
from collector.sink.postgres import make_engine, metadata

# Any number below 2**63 that no other application on the database uses for an advisory lock.
_MIGRATION_LOCK = 0x6F69_636F_6C6C


def run_migrations_online() -> None:
    config = context.config
    settings = config.attributes.get("settings") or load_settings()
    config.attributes.setdefault("settings", settings)
    engine = make_engine(settings.database.url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata)
            with context.begin_transaction():
                # Two collectors starting together (a rolling upgrade) must not both create the table.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: they cannot detect TimescaleDB")
run_migrations_online()
