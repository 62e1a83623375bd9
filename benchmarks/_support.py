"""What every benchmark needs: the repository on sys.path, a database of its own, and plain output."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.pg_server import throwaway_server  # noqa: E402


@contextlib.contextmanager
def database(prefix: str) -> Iterator[str]:
    """A new database (libpq URL) on BENCH_DATABASE_URL's server, or on a throwaway server; dropped after."""
    admin = os.environ.get("BENCH_DATABASE_URL")
    with contextlib.nullcontext(admin) if admin else throwaway_server() as url:
        plain = make_url(url).set(drivername="postgresql")
        name = f"{prefix}_{os.getpid()}"
        admin_url = plain.render_as_string(hide_password=False)
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name}")
            connection.execute(f"CREATE DATABASE {name}")
        try:
            yield plain.set(database=name).render_as_string(hide_password=False)
        finally:
            with psycopg.connect(admin_url, autocommit=True) as connection:
                connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def migrated(url: str, timescaledb: str = "auto") -> None:
    from collector.config import DatabaseSettings, Settings
    from collector.migrate import migrate

    migrate(Settings(database=DatabaseSettings(url=url, timescaledb=timescaledb)))  # type: ignore[arg-type]
