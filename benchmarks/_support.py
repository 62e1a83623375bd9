"""What every benchmark needs: the repository on sys.path, a database of its own, and plain output."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import date, datetime
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


def migrated(url: str, timescaledb: str = "auto", revision: str = "head") -> None:
    from collector.config import DatabaseSettings, Settings
    from collector.migrate import migrate

    settings = Settings(database=DatabaseSettings(url=url, timescaledb=timescaledb))  # type: ignore[arg-type]
    migrate(settings, revision)


def fill(
    url: str,
    rows: int,
    symbols: int,
    start: datetime,
    first_expiry: date = date(2026, 3, 1),
    first_strike: int = 50_000,
    venue: bool = True,
) -> None:
    """``rows`` rows of open_interest, ``symbols`` BTC options a minute from ``start``, written in SQL (the
    sink is not what is measured when this is used), then VACUUM ANALYZE. Expiries are weekly from
    ``first_expiry`` (800 symbols each), strikes 500 apart from ``first_strike``. ``venue`` False: the table
    has no venue column yet (revision 0006)."""
    columns, value = ("venue, ", "'binance', ") if venue else ("", "")
    with psycopg.connect(url) as connection:
        connection.execute(
            f"""
            INSERT INTO open_interest ({columns}symbol, ts, underlying, expiry, strike, side, open_interest,
                                       open_interest_usd, collected_at)
            SELECT {value}'BTC-' || to_char(e, 'YYMMDD') || '-' || s || '-' || side_letter,
                   %(start)s + make_interval(mins => m), 'BTC', e, s,
                   CASE side_letter WHEN 'C' THEN 'call' ELSE 'put' END,
                   mod(k * 7 + m, 9973) / 100.0, mod(k * 7 + m, 9973) * 1234.5678901234, now()
            FROM generate_series(0, %(minutes)s - 1) AS m, generate_series(0, %(symbols)s - 1) AS k,
                 LATERAL (SELECT %(expiry)s + 7 * (k / 800) AS e, %(strike)s + 500 * mod(k / 2, 400) AS s,
                                 CASE mod(k, 2) WHEN 0 THEN 'C' ELSE 'P' END AS side_letter) AS x
            ORDER BY m, k
            """,
            {
                "start": start,
                "minutes": rows // symbols,
                "symbols": symbols,
                "expiry": first_expiry,
                "strike": first_strike,
            },
        )
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE open_interest")
