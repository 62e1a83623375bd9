"""Bring the database schema to the newest Alembic revision (what ``oi-collector migrate`` runs)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError

import collector.migrations
from collector.config import Settings
from collector.errors import SinkError
from collector.sink import timescale
from collector.sink.postgres import make_engine

MIGRATIONS_DIR = Path(collector.migrations.__file__).parent


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    return config


def migrate(settings: Settings, revision: str = "head") -> None:
    """Upgrade to ``revision``; safe to run again, and safe while another collector does the same."""
    try:
        command.upgrade(alembic_config(settings), revision)
        _sync_policies(settings)
    except DBAPIError as error:
        raise SinkError(f"migration failed on {settings.database.masked_url()}: {error.orig}") from error


def _sync_policies(settings: Settings) -> None:
    """TimescaleDB policies follow the configuration at every migrate, not only when a revision runs."""
    engine = make_engine(settings.database.url)
    try:
        with engine.begin() as connection:
            if timescale.is_hypertable(connection, "open_interest"):
                timescale.sync_columnstore_policy(
                    connection, "open_interest", settings.database.compress_after_days
                )
    finally:
        engine.dispose()
