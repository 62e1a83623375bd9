"""The analysis views and functions, on real rows written by the sink."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, text

from collector.records import Batch, OpenInterest
from collector.sink.postgres import PostgresSink

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EXPIRY = date(2026, 12, 25)


def row(strike: int, side: str, oi: str, ts: datetime = T0, usd: str = "1") -> OpenInterest:
    symbol = f"BTC-261225-{strike}-{side[0].upper()}"
    return OpenInterest(
        "binance", symbol, ts, "BTC", EXPIRY, Decimal(strike), side, Decimal(oi), Decimal(usd), None, ts
    )  # type: ignore[arg-type]


# The hand-computed case. Strikes 90, 100, 110; calls OI 1, 2, 0; puts OI 0, 1, 4. Payout if BTC settles at K:
#   K =  90: calls 0                     + puts (100-90)x1 + (110-90)x4 = 10 + 80 = 90
#   K = 100: calls (100-90)x1 = 10       + puts (110-100)x4 = 40              = 50
#   K = 110: calls (110-90)x1 + (110-100)x2 = 20 + 20 = 40 + puts 0            = 40   <- max pain
BOOK = [
    row(90, "call", "1"), row(100, "call", "2"), row(110, "call", "0"),
    row(90, "put", "0"), row(100, "put", "1"), row(110, "put", "4"),
]  # fmt: skip
# An hour earlier the book was all puts at 110 (OI 3): any K below 110 pays; K = 110 pays nothing.
EARLIER = [row(90, "put", "0", T0 - timedelta(hours=1)), row(110, "put", "3", T0 - timedelta(hours=1))]


def query(engine: Engine, sql: str, **params: object) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(sql), params)]


def test_max_pain_matches_the_hand_computed_case(sink: PostgresSink, engine: Engine) -> None:
    sink.write(Batch([], BOOK + EARLIER))
    assert query(
        engine, "SELECT * FROM oi_max_pain('BTC', :e, :at)", e=EXPIRY, at=T0 + timedelta(minutes=5)
    ) == [(T0, Decimal(110), Decimal(40))]


def test_max_pain_uses_the_snapshot_at_or_before_the_time_asked(sink: PostgresSink, engine: Engine) -> None:
    sink.write(Batch([], BOOK + EARLIER))
    at = T0 - timedelta(minutes=30)
    assert query(engine, "SELECT * FROM oi_max_pain('BTC', :e, :at)", e=EXPIRY, at=at) == [
        (T0 - timedelta(hours=1), Decimal(110), Decimal(0))
    ]


def test_oi_latest_is_the_newest_row_of_every_symbol(sink: PostgresSink, engine: Engine) -> None:
    sink.write(Batch([], BOOK + EARLIER))
    latest = query(engine, "SELECT symbol, ts, open_interest FROM oi_latest ORDER BY symbol")
    assert len(latest) == 6
    assert ("BTC-261225-110-P", T0, Decimal(4)) in latest
    assert {ts for _, ts, _ in latest} == {T0}


def test_oi_expiry_summary_sums_calls_and_puts_per_snapshot(sink: PostgresSink, engine: Engine) -> None:
    sink.write(Batch([], BOOK))
    [summary] = query(engine, "SELECT * FROM oi_expiry_summary")
    venue, underlying, expiry, ts, call_oi, put_oi, ratio, usd_oi = summary
    assert (venue, underlying, expiry, ts, call_oi, put_oi, usd_oi) == ("binance", "BTC", EXPIRY, T0, 3, 5, 6)
    assert abs(ratio - Decimal(5) / Decimal(3)) < Decimal("1e-15")
