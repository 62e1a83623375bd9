"""What the database refuses costs only itself: poison rows are found and set aside, the rest is stored, and
the spool always drains. On a real PostgreSQL, through a real TCP proxy for the outages."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from collector.records import Batch, OpenInterest, PairRun, RejectedRow
from collector.sink.postgres import PostgresSink, make_engine
from collector.sink.spool import Spool
from collector.sink.store import Store
from tests.tcp_proxy import TcpProxy

START = datetime.now(UTC).replace(microsecond=0)
TS = START.replace(second=0) - timedelta(minutes=1)
EXPIRY = date(2026, 12, 25)


def record(symbol: str, oi: str = "4.01", usd: str = "480.5") -> OpenInterest:
    return OpenInterest(
        "binance",
        symbol,
        TS,
        "BTC",
        EXPIRY,
        Decimal("100000"),
        "call",
        Decimal(oi),
        Decimal(usd),
        None,
        START,
    )


def good_records(count: int) -> list[OpenInterest]:
    return [record(f"BTC-261225-{100000 + 1000 * n}-C", oi=f"{n}.5") for n in range(count)]


def run(start: datetime = START, message: str | None = None, code: int | None = None) -> PairRun:
    return PairRun(start, "binance", "BTC 261225", "BTC", EXPIRY, "ok", TS, 1, 0, 400, code, message, 12)


def query(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.exec_driver_sql(sql)]


def stored(engine: Engine) -> dict[str, Decimal]:
    return dict(query(engine, "SELECT symbol, open_interest FROM open_interest"))  # type: ignore[arg-type]


POISON = {
    "a NUL in the symbol": record("BTC-261225-1\x00-C"),
    "a lone surrogate in the symbol": record("BTC-261225-\ud800-C"),
    "a value past numeric's 131,072 digits": record("BTC-261225-1-P", oi="9" * 140_000),
}


@pytest.mark.parametrize("poison", POISON.values(), ids=POISON.keys())
def test_a_row_the_database_refuses_is_set_aside_and_every_other_row_is_stored(
    tmp_path: Path, sink: PostgresSink, engine: Engine, poison: OpenInterest, caplog: pytest.LogCaptureFixture
) -> None:
    good = good_records(40)
    store = Store(sink, Spool(tmp_path, 100_000_000))
    with caplog.at_level(logging.ERROR):
        committed = store.commit(Batch([run()], [*good[:20], poison, *good[20:]]))
    assert committed.problem is None and committed.refused_rows == 1
    assert stored(engine) == {r.symbol: r.open_interest for r in good}
    assert query(engine, "SELECT count(*) FROM collection_runs") == [(1,)]
    assert store.spool.pending() == []
    [kept] = (tmp_path / "refused").glob("*.refused.jsonl")
    [line] = kept.read_text().splitlines()
    assert json.loads(line)["kind"] == "OpenInterest"
    [(stage, reason)] = query(engine, "SELECT stage, reason FROM rejected_rows")
    assert stage == "database"
    assert str(reason).startswith(("database refused the rows", "the rows cannot be sent"))
    assert any("the database refused" in r.getMessage() for r in caplog.records)


def test_a_spooled_poison_batch_does_not_block_the_batches_behind_it(
    tmp_path: Path, sink: PostgresSink, engine: Engine
) -> None:
    spool = Spool(tmp_path, 100_000_000)
    older = START - timedelta(minutes=2)
    spool.put(Batch([run(older)], [*good_records(3), POISON["a NUL in the symbol"]]))
    spool.put(Batch([run(older + timedelta(minutes=1))], [record("BTC-261225-5-C")]))
    flushed = Store(sink, spool).flush()
    assert (flushed.batches, flushed.problem, spool.pending()) == (2, None, [])
    assert set(stored(engine)) == {r.symbol for r in good_records(3)} | {"BTC-261225-5-C"}


def test_every_row_of_a_batch_refused_still_drains_the_spool(
    tmp_path: Path, sink: PostgresSink, engine: Engine
) -> None:
    store = Store(sink, Spool(tmp_path, 100_000_000))
    committed = store.commit(Batch([], list(POISON.values())))
    assert committed.refused_rows == 3 and committed.problem is None
    assert store.spool.pending() == [] and stored(engine) == {}
    assert query(engine, "SELECT count(*) FROM rejected_rows WHERE stage = 'database'") == [(3,)]


def test_a_venues_hostile_error_text_and_code_reach_the_journal_safely(
    tmp_path: Path, sink: PostgresSink, engine: Engine
) -> None:
    store = Store(sink, Spool(tmp_path, 100_000_000))
    hostile = run(message="bad\x00\ud800" + "x" * 100_000, code=10**30)
    assert store.commit(Batch([hostile], [])).problem is None
    [(message, code)] = query(engine, "SELECT error_message, error_code FROM collection_runs")
    assert code is None
    assert isinstance(message, str) and message.startswith("bad\\x00\\ud800x") and len(message) < 700


def test_a_batch_written_twice_journals_its_rejections_once(sink: PostgresSink, engine: Engine) -> None:
    rejections = [
        RejectedRow(
            START, "binance", "BTC", EXPIRY, "normalise", 0, "BTC-261225-X-C", "symbol", "not a symbol"
        ),
        RejectedRow(START, None, None, None, "spool", 0, None, "file", "x.batch.json: checksum mismatch"),
    ]
    for _ in range(2):  # killed between the commit and the spool file's removal, then replayed
        sink.write(Batch([run()], [], rejections))
    assert query(engine, "SELECT count(*) FROM rejected_rows") == [(2,)]


# ---- the database away, not refusing


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    url = make_url(database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture
def proxied_sink(database_url: str, proxy: TcpProxy) -> Iterator[PostgresSink]:
    url = make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)
    engine = make_engine(url)
    yield PostgresSink(engine)
    engine.dispose()


def test_a_database_away_keeps_the_batch_whole_in_the_spool_and_says_away(
    tmp_path: Path, proxied_sink: PostgresSink, proxy: TcpProxy, engine: Engine
) -> None:
    store = Store(proxied_sink, Spool(tmp_path, 100_000_000))
    proxy.cut()
    committed = store.commit(Batch([run()], good_records(5)))
    assert committed.problem is not None and committed.problem.startswith("database unreachable or failing")
    assert committed.refused_rows == 0 and not (tmp_path / "refused").exists()
    assert len(store.spool.pending()) == 1
    proxy.restore()
    assert store.flush().batches == 1 and store.spool.pending() == []
    assert len(stored(engine)) == 5


def test_after_an_outage_that_filled_the_spool_the_backlog_drains_at_the_next_cycle(
    tmp_path: Path, proxied_sink: PostgresSink, proxy: TcpProxy, engine: Engine
) -> None:
    one_batch = len(Spool(tmp_path / "measure", 10**9).put(Batch([run()], good_records(5))).read_bytes())
    store = Store(proxied_sink, Spool(tmp_path / "spool", int(one_batch * 2.5)))
    proxy.cut()
    minutes = [START + timedelta(minutes=n) for n in range(3)]
    for n, start in enumerate(minutes[:2]):
        store.commit(Batch([run(start)], [record(f"BTC-261225-{n}-C")]))
    assert len(store.spool.pending()) == 2
    proxy.restore()
    full = store.commit(Batch([run(minutes[2])], [record("BTC-261225-2-C")] * 40))  # too big for the spool
    assert not full.spooled and full.written is not None and full.replayed.batches == 2
    assert store.spool.pending() == []
    assert set(stored(engine)) == {"BTC-261225-0-C", "BTC-261225-1-C", "BTC-261225-2-C"}


def test_a_column_dropped_and_added_back_takes_writes_again_without_a_restart(
    tmp_path: Path, sink: PostgresSink, engine: Engine, database_url: str
) -> None:
    store = Store(sink, Spool(tmp_path, 100_000_000))
    assert store.commit(Batch([run()], [record("BTC-261225-1-C")])).problem is None  # staging table exists
    admin = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute("ALTER TABLE open_interest DROP COLUMN open_interest_usd CASCADE")  # and its views
    away = store.commit(Batch([run(START + timedelta(minutes=1))], [record("BTC-261225-2-C", usd="7.25")]))
    assert away.problem is not None and away.refused_rows == 0 and len(store.spool.pending()) == 1
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute("ALTER TABLE open_interest ADD COLUMN open_interest_usd numeric")  # now the last
    back = store.commit(Batch([run(START + timedelta(minutes=2))], [record("BTC-261225-3-C", usd="8.5")]))
    assert back.problem is None and store.spool.pending() == []
    rows = query(
        engine, "SELECT symbol, open_interest_usd FROM open_interest WHERE symbol <> 'BTC-261225-1-C'"
    )
    assert sorted(rows) == [("BTC-261225-2-C", Decimal("7.25")), ("BTC-261225-3-C", Decimal("8.5"))]
