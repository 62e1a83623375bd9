"""The README's promises: its SQL examples run on real collected data; every command and key is documented."""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy.engine import make_url

from collector.cli import build_parser
from collector.config import KEYS, Settings
from collector.cycle import collect_once
from collector.sink.store import Store
from collector.venues.gate import ExchangeGate
from tests.conftest import REPO
from tests.fake_exchange import FakeExchange, malformed_rows

README = (REPO / "README.md").read_text()
QUERIES = re.findall(r"```sql\n(.*?)```", README, re.DOTALL)
EXAMPLES = re.findall(r"```sql\n(.*?)```", README.split("## Example queries")[1].split("\n## ")[0], re.DOTALL)


@pytest.fixture
def collected(settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange) -> str:
    """Five snapshots spread over the last 80 minutes, as the daemon would have stored them, the last with one
    malformed row."""
    now_minute = int(time.time() // 60 * 60_000)
    for minutes_ago in (80, 65, 30, 5, 0):
        fake.minute_ms = now_minute - minutes_ago * 60_000
        if minutes_ago == 0:
            bad = {
                "symbol": "BTC-251226-X-C",
                "sumOpenInterest": "1",
                "sumOpenInterestUsd": "1",
                "timestamp": "1",
            }
            fake.inject(malformed_rows(bad), underlying="BTC", expiry="251226")
        # the BTC option with the most open interest, which the README's history examples pick
        fake.set_open_interest("BTC-251226-100000-C", str(10**6 - minutes_ago), "1000")
        assert asyncio.run(collect_once(settings, store, gate)).ok
    return make_url(settings.database.url).set(drivername="postgresql").render_as_string(hide_password=False)


def run(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()  # type: ignore[arg-type]


def test_the_readme_has_at_least_five_example_queries() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("number", range(len(QUERIES)))
def test_every_readme_query_returns_rows(collected: str, number: int) -> None:
    assert run(collected, QUERIES[number])


def test_oi_by_strike_at_the_latest_snapshot_matches_the_exchange(collected: str, fake: FakeExchange) -> None:
    rows = run(collected, EXAMPLES[0])
    expected: dict[Decimal, list[Decimal]] = {}
    for row in fake.rows_for("BTC", "251226"):
        strike, side = row["symbol"].split("-")[2:]
        overridden = row["symbol"] == "BTC-251226-100000-C"
        oi = Decimal(10**6) if overridden else Decimal(row["sumOpenInterest"])
        expected.setdefault(Decimal(strike), [Decimal(0), Decimal(0)])[side == "P"] += oi
    assert {strike: [call, put] for strike, call, put in rows} == expected


def test_one_symbols_history_has_every_snapshot(collected: str) -> None:
    rows = run(collected, EXAMPLES[1])
    assert [oi for _, oi, _ in rows] == [Decimal(10**6 - ago) for ago in (80, 65, 30, 5, 0)]


def test_every_command_and_config_key_is_documented() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in commands:
        assert f"`oi-collector {command}" in README
    for key in KEYS:
        assert f"`{key.section}.{key.name}`" in README
        assert f"`{key.env_var}`" in README


def test_every_test_the_readme_names_as_proof_exists() -> None:
    defined = set()
    for path in (REPO / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE))
    named = set(re.findall(r"\b(test_\w+)\b", README)) - {
        name for name in re.findall(r"\b(test_\w+)\.py", README)
    }
    assert named and named <= defined, sorted(named - defined)
