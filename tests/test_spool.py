"""The durable spool and the store on top of it, on real files and a real database."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from collector.records import Batch, OpenInterest, PairRun
from collector.sink.postgres import PostgresSink
from collector.sink.spool import Spool, SpoolFull
from collector.sink.store import Store

START = datetime(2026, 11, 25, 12, 0, 10, 123456, tzinfo=UTC)
TS = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def batch(start: datetime = START, symbol: str = "BTC-251226-100000-C", oi: str = "4.01") -> Batch:
    run = PairRun(
        start, "binance", "BTC 251226", "BTC", date(2025, 12, 26), "ok", TS, 1, 0, None, None, None, 12
    )
    record = OpenInterest("binance", symbol, TS, "BTC", date(2025, 12, 26), Decimal("100000"), "call",
                          Decimal(oi), Decimal("0.00000001"), None, START)  # fmt: skip
    return Batch([run], [record])


def test_a_batch_round_trips_exactly(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000_000)
    path = spool.put(batch(oi="123456789.000000000001"))
    assert spool.read(path) == batch(oi="123456789.000000000001")
    assert spool.pending() == [path]


def test_batches_come_back_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000_000)
    later = spool.put(batch(START.replace(minute=5)))
    earlier = spool.put(batch(START.replace(minute=1)))
    assert spool.pending() == [earlier, later]


def test_a_full_spool_refuses_and_says_how_full(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 600)
    spool.put(batch())
    with pytest.raises(SpoolFull, match=r"is full: 0\.0 MB used of 0\.0 MB"):
        spool.put(batch(START.replace(minute=1)))
    assert len(spool.pending()) == 1


def test_a_write_cut_short_by_a_crash_is_not_taken_for_a_batch(tmp_path: Path) -> None:
    (tmp_path / "20261125T120010000000-1.batch.tmp").write_text('{"format": 1, "runs": [')
    spool = Spool(tmp_path, 10_000_000)
    assert spool.pending() == []
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_batch_is_moved_aside_not_deleted(
    tmp_path: Path, sink: PostgresSink, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, 10_000_000)
    broken = tmp_path / "20261125T115900000000-1.batch.json"
    broken.write_text("not json")
    with caplog.at_level(logging.ERROR):
        flushed = Store(sink, spool).flush()
    assert flushed.problem is None
    assert (tmp_path / "unreadable" / broken.name).read_text() == "not json"
    assert any("is unreadable" in r.getMessage() for r in caplog.records)


def test_commit_writes_the_batch_and_empties_the_spool(tmp_path: Path, sink: PostgresSink) -> None:
    store = Store(sink, Spool(tmp_path, 10_000_000))
    committed = store.commit(batch())
    assert committed.written is not None and committed.written.written == 1
    assert store.spool.pending() == []


def test_a_full_spool_with_the_database_up_writes_straight_through(
    tmp_path: Path, sink: PostgresSink, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(sink, Spool(tmp_path, 100))
    with caplog.at_level(logging.ERROR):
        committed = store.commit(batch())
    assert committed.written is not None and committed.lost_rows == 0
    assert any(
        "is full" in r.getMessage() and "straight to the database" in r.getMessage() for r in caplog.records
    )


def test_a_batch_spooled_before_venues_is_replayed_as_binances(tmp_path: Path, sink: PostgresSink) -> None:
    """A spool left by the version before revision 0007 (format 1: no venue, no underlying_price) is written,
    not set aside: every row in it was Binance's."""
    old = {
        "format": 1,
        "runs": [["2026-11-25T12:00:10.123456+00:00", "BTC", "2025-12-26", "ok", "2026-11-25T12:00:00+00:00",
                  1, 0, None, None, None, 12]],
        "records": [["BTC-251226-100000-C", "2026-11-25T12:00:00+00:00", "BTC", "2025-12-26", "100000",
                     "call", "4.01", "401.5", "2026-11-25T12:00:10.123456+00:00"]],
    }  # fmt: skip
    (tmp_path / "20261125T120010123456-1.batch.json").write_text(json.dumps(old))
    store = Store(sink, Spool(tmp_path, 10_000_000))
    assert store.flush().batches == 1 and store.spool.pending() == []
    with sink.engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT venue, symbol, open_interest, underlying_price FROM open_interest"
        ).one()
        run = connection.exec_driver_sql("SELECT venue, scope, status FROM collection_runs").one()
    assert tuple(row) == ("binance", "BTC-251226-100000-C", Decimal("4.01"), None)
    assert tuple(run) == ("binance", "BTC 251226", "spooled")
