"""Bring the database schema to the newest Alembic revision (what ``oi-collector migrate`` runs)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError

import collector.migrations
from collector.config import Settings
from collector.errors import SinkError

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
    except DBAPIError as error:
        raise SinkError(f"migration failed on {settings.database.masked_url()}: {error.orig}") from error
