"""Bring the database schema to the newest Alembic revision (what ``oi-collector migrate`` runs)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError

import collector.migrations
from collector.config import Settings
from collector.errors import SinkError
from collector.sink import timescale
from collector.sink.postgres import make_engine

log = logging.getLogger("collector.migrate")
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
    database = settings.database
    engine = make_engine(database.url)
    try:
        with engine.begin() as connection:
            if not timescale.is_hypertable(connection, "open_interest"):
                if database.drop_raw_after_days is not None:
                    log.warning(
                        "database.drop_raw_after_days is %g, but open_interest is a plain PostgreSQL table:"
                        " nothing is dropped (retention needs TimescaleDB)",
                        database.drop_raw_after_days,
                    )
                return
            timescale.sync_columnstore_policy(connection, "open_interest", database.compress_after_days)
            if timescale.is_continuous_aggregate(connection, "open_interest_hourly"):
                timescale.sync_refresh_policy(
                    connection, "open_interest_hourly", database.drop_raw_after_days
                )
            timescale.sync_retention_policy(connection, "open_interest", database.drop_raw_after_days)
    finally:
        engine.dispose()
