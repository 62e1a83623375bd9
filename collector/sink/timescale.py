"""Whether this server can give us TimescaleDB, decided before anything is tried.

``CREATE EXTENSION timescaledb`` on a server that has the files but does not preload the library fails with
FATAL and drops the connection (see docs), so we look first: pg_extension, pg_available_extensions and
shared_preload_libraries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, text

from collector.config import TimescaleMode
from collector.errors import SchemaError

log = logging.getLogger("collector.migrate")


@dataclass(frozen=True, slots=True)
class TimescaleSupport:
    usable: bool
    created: bool
    reason: str


def detect(connection: Connection) -> TimescaleSupport:
    row = connection.execute(
        text(
            """
            SELECT
                (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS created_version,
                (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb')
                    AS available_version,
                current_setting('shared_preload_libraries') AS preload,
                current_setting('server_version') AS server_version
            """
        )
    ).one()
    preloaded = "timescaledb" in [name.strip() for name in row.preload.split(",")]
    server = f"PostgreSQL {row.server_version}"
    if row.available_version is None and row.created_version is None:
        return TimescaleSupport(False, False, f"the timescaledb extension is not installed on {server}")
    if not preloaded:
        return TimescaleSupport(
            False,
            row.created_version is not None,
            f"timescaledb is installed on {server} but not in shared_preload_libraries"
            " (add it there and restart the server to use it)",
        )
    if row.created_version is not None:
        return TimescaleSupport(True, True, f"timescaledb {row.created_version} is enabled")
    return TimescaleSupport(True, False, f"timescaledb {row.available_version} is available")


def enable(connection: Connection, mode: TimescaleMode) -> bool:
    """Make sure the extension exists when ``mode`` allows it; True when TimescaleDB is to be used."""
    if mode == "off":
        log.info('timescaledb = "off": open_interest stays a plain PostgreSQL table')
        return False
    support = detect(connection)
    if not support.usable:
        if mode == "require":
            raise SchemaError(f'timescaledb = "require", but {support.reason}')
        log.warning("open_interest stays a plain PostgreSQL table: %s", support.reason)
        return False
    if not support.created:
        try:
            with connection.begin_nested():
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
        except Exception as error:
            if mode == "require":
                raise SchemaError(f"CREATE EXTENSION timescaledb failed: {error}") from error
            log.warning("open_interest stays a plain PostgreSQL table: CREATE EXTENSION failed: %s", error)
            return False
    return True


def is_hypertable(connection: Connection, table: str) -> bool:
    """True when ``table`` is a TimescaleDB hypertable: later revisions branch on this, not on config."""
    return _listed(connection, "hypertables", "hypertable_name", table)


def is_continuous_aggregate(connection: Connection, view: str) -> bool:
    return _listed(connection, "continuous_aggregates", "view_name", view)


def _listed(connection: Connection, catalog: str, column: str, name: str) -> bool:
    """Whether ``timescaledb_information.<catalog>`` lists ``name``; False where the extension is absent."""
    relation = f"timescaledb_information.{catalog}"
    if connection.execute(text("SELECT to_regclass(:relation)"), {"relation": relation}).scalar() is None:
        return False
    query = text(f"SELECT 1 FROM {relation} WHERE {column} = :name")
    return connection.execute(query, {"name": name}).first() is not None


def has_columnstore_api(connection: Connection) -> bool:
    """2.18 renamed compression to columnstore (and made the policy calls procedures)."""
    version = connection.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"))
    major, minor = (int(part) for part in str(version.scalar()).split(".")[:2])
    return (major, minor) >= (2, 18)


def sync_columnstore_policy(connection: Connection, table: str, after_days: float) -> None:
    """Chunks older than ``after_days`` go to the columnstore; set again at every migrate (config rules)."""
    after = {"after": timedelta(days=after_days)}
    if has_columnstore_api(connection):
        connection.execute(text(f"CALL remove_columnstore_policy('{table}', if_exists => true)"))
        connection.execute(text(f"CALL add_columnstore_policy('{table}', after => :after)"), after)
    else:
        connection.execute(text(f"SELECT remove_compression_policy('{table}', if_exists => true)"))
        connection.execute(text(f"SELECT add_compression_policy('{table}', compress_after => :after)"), after)
    log.info("%s: chunks older than %g days move to the columnstore (compressed)", table, after_days)


def sync_refresh_policy(connection: Connection, view: str, drop_raw_after_days: float | None) -> None:
    """Materialise ``view`` every 30 minutes, up to 10 minutes ago.

    The window reaches back to the first row, so rows that arrive late (a spool written after an outage) are
    picked up whatever their age; only invalidated hours are recomputed, so a long window costs nothing. When
    raw rows are dropped it stops a day short of the drop age: a refresh over dropped rows would delete those
    hours from the aggregate as well, and keeping them is the point of the aggregate.
    """
    start = None if drop_raw_after_days is None else timedelta(days=drop_raw_after_days - 1)
    connection.execute(text(f"SELECT remove_continuous_aggregate_policy('{view}', if_exists => true)"))
    connection.execute(
        text(
            f"SELECT add_continuous_aggregate_policy('{view}', start_offset => CAST(:start AS interval),"
            " end_offset => INTERVAL '10 minutes', schedule_interval => INTERVAL '30 minutes')"
        ),
        {"start": start},
    )


def sync_retention_policy(connection: Connection, table: str, drop_after_days: float | None) -> None:
    """Drop chunks of ``table`` older than ``drop_after_days``, or nothing when it is None."""
    connection.execute(text(f"SELECT remove_retention_policy('{table}', if_exists => true)"))
    if drop_after_days is None:
        return
    connection.execute(
        text(f"SELECT add_retention_policy('{table}', drop_after => :after)"),
        {"after": timedelta(days=drop_after_days)},
    )
    log.info("%s: rows older than %g days are dropped (retention policy)", table, drop_after_days)
