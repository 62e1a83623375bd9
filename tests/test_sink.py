"""The upsert against a real PostgreSQL: exact decimals, idempotent re-polls, changed values updated."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Engine, text

from collector.records import Batch, OpenInterest
from collector.sink.postgres import PostgresSink, WriteResult

TS = datetime(2025, 12, 1, 10, 31, tzinfo=UTC)
COLLECTED = datetime(2025, 12, 1, 10, 31, 10, 123456, tzinfo=UTC)


def record(
    symbol: str = "BTC-251226-100000-C", oi: str = "4.01", usd: str = "4880.2985615624"
) -> OpenInterest:
    underlying, expiry, strike, side = symbol.split("-")
    return OpenInterest(
        venue="binance",
        symbol=symbol,
        ts=TS,
        underlying=underlying,
        expiry=date(2000 + int(expiry[:2]), int(expiry[2:4]), int(expiry[4:])),
        strike=Decimal(strike),
        side="call" if side == "C" else "put",
        open_interest=Decimal(oi),
        open_interest_usd=Decimal(usd),
        underlying_price=None,
        collected_at=COLLECTED,
    )


def stored(engine: Engine) -> list[tuple]:
    with engine.connect() as connection:
        columns = ", ".join(field.name for field in fields(OpenInterest))  # the record's order
        query = text(f"SELECT {columns} FROM open_interest ORDER BY symbol")
        return [tuple(row) for row in connection.execute(query)]


def test_write_stores_every_column_exactly(sink: PostgresSink, engine: Engine) -> None:
    rows = [
        record("DOGE-250131-0.005-P", "0", "0.000000000001"),
        record("XRP-231006-0.46-C", "123456789.12", "98765432109876.1234567890123"),
    ]
    assert sink.write(Batch([], rows)) == WriteResult(written=2, unchanged=0)
    assert stored(engine) == [
        ("binance", "DOGE-250131-0.005-P", TS, "DOGE", date(2025, 1, 31), Decimal("0.005"), "put",
         Decimal("0"), Decimal("0.000000000001"), None, COLLECTED),
        ("binance", "XRP-231006-0.46-C", TS, "XRP", date(2023, 10, 6), Decimal("0.46"), "call",
         Decimal("123456789.12"), Decimal("98765432109876.1234567890123"), None, COLLECTED),
    ]  # fmt: skip


def test_rewriting_unchanged_rows_writes_nothing(sink: PostgresSink, engine: Engine) -> None:
    rows = [record(), record("ETH-251226-3000-P")]
    sink.write(Batch([], rows))
    later = [replace(row, collected_at=datetime(2025, 12, 1, 10, 31, 40, tzinfo=UTC)) for row in rows]
    assert sink.write(Batch([], later)) == WriteResult(written=0, unchanged=2)
    assert [row[-1] for row in stored(engine)] == [COLLECTED, COLLECTED]  # not even collected_at moved
    with engine.connect() as connection:
        updates = connection.execute(
            text("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'open_interest'")
        ).scalar()
    assert updates == 0


def test_changed_values_of_the_same_minute_are_updated(sink: PostgresSink, engine: Engine) -> None:
    sink.write(Batch([], [record(oi="4.01")]))
    assert sink.write(Batch([], [record(oi="4.02")])) == WriteResult(written=1, unchanged=0)
    assert [(row[1], row[7]) for row in stored(engine)] == [("BTC-251226-100000-C", Decimal("4.02"))]


def test_duplicate_symbols_in_one_batch_keep_the_last(sink: PostgresSink, engine: Engine) -> None:
    assert sink.write(Batch([], [record(oi="1"), record(oi="2")])) == WriteResult(written=1, unchanged=0)
    assert [row[7] for row in stored(engine)] == [Decimal("2")]


def test_empty_write_is_a_no_op(sink: PostgresSink, engine: Engine) -> None:
    assert sink.write(Batch([], [])) == WriteResult(0, 0)
    assert stored(engine) == []
