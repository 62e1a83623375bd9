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
    venue, underlying, expiry, ts, call_oi, put_oi, ratio, usd_oi, usd_estimate = summary
    assert (venue, underlying, expiry, ts, call_oi, put_oi, usd_oi) == ("binance", "BTC", EXPIRY, T0, 3, 5, 6)
    assert usd_estimate == usd_oi  # Binance serves the USD value: the estimate is it
    assert abs(ratio - Decimal(5) / Decimal(3)) < Decimal("1e-15")


# ---- across venues: rows dated per row (Deribit, OKX) or per answer (Bybit), books and shares


def venue_row(
    venue: str,
    strike: int,
    side: str,
    oi: str,
    ts: datetime,
    usd: str | None = None,
    price: str | None = None,
) -> OpenInterest:
    symbol = f"{venue}-BTC-{strike}-{side[0].upper()}"
    return OpenInterest(
        venue, symbol, ts, "BTC", EXPIRY, Decimal(strike), side,  # type: ignore[arg-type]
        Decimal(oi), None if usd is None else Decimal(usd), None if price is None else Decimal(price), ts,
    )  # fmt: skip


def market(now: datetime) -> list[OpenInterest]:
    """The hand-computed book again, split over three venues whose rows carry their own milliseconds."""
    ms = timedelta(milliseconds=1)
    return [
        venue_row("binance", 90, "call", "1", now, usd="100"),
        venue_row("deribit", 100, "call", "1.5", now + 137 * ms, price="100"),
        venue_row("okx", 100, "call", "0.5", now + 912 * ms, usd="50"),
        venue_row("deribit", 100, "put", "1", now + 411 * ms, price="100"),
        venue_row("bybit", 110, "put", "4", now + 250 * ms, price="110"),
        venue_row("bybit", 90, "put", "0", now + 250 * ms, price="110"),
        venue_row("okx", 110, "call", "0", now + 3 * ms, usd="0"),
    ]


def test_max_pain_across_venues_adds_their_books_whatever_their_milliseconds(
    sink: PostgresSink, engine: Engine
) -> None:
    sink.write(Batch([], market(T0)))
    at = T0 + timedelta(minutes=1)
    assert query(engine, "SELECT * FROM oi_max_pain('BTC', :e, :at)", e=EXPIRY, at=at) == [
        (T0 + timedelta(milliseconds=912), Decimal(110), Decimal(40))
    ]
    only_bybit = query(
        engine, "SELECT strike, total_payout FROM oi_max_pain('BTC', :e, :at, 'bybit')", e=EXPIRY, at=at
    )
    assert only_bybit == [(Decimal(110), Decimal(0))]


def test_a_book_takes_each_symbols_newest_row_and_leaves_out_a_venue_silent_for_long(
    sink: PostgresSink, engine: Engine
) -> None:
    stale = venue_row("deribit", 120, "call", "9", T0 - timedelta(minutes=20), price="1")
    older = venue_row("okx", 100, "call", "7", T0 - timedelta(minutes=2), usd="1")
    sink.write(Batch([], [*market(T0), stale, older]))
    book = query(
        engine,
        "SELECT venue, strike, side, open_interest FROM oi_book('BTC', :e, :at) ORDER BY venue, strike, side",
        e=EXPIRY,
        at=T0 + timedelta(minutes=1),
    )
    assert ("okx", Decimal(100), "call", Decimal("0.5")) in book  # its newest row, not the one before
    assert all(strike != 120 for _, strike, _, _ in book)  # 20 minutes before the newest row: not in the book
    assert len(book) == 7


def test_usd_is_the_venues_own_or_open_interest_times_its_underlying_price(
    sink: PostgresSink, engine: Engine
) -> None:
    sink.write(Batch([], market(datetime.now(UTC) - timedelta(seconds=30))))
    rows = query(
        engine, "SELECT venue, strike, side, usd_estimate, usd_basis FROM oi_current ORDER BY 1, 2, 3"
    )
    assert ("deribit", Decimal(100), "call", Decimal("150.0"), "open_interest x underlying_price") in rows
    assert ("okx", Decimal(100), "call", Decimal(50), "venue") in rows
    assert ("bybit", Decimal(110), "put", Decimal(440), "open_interest x underlying_price") in rows


def test_strike_totals_add_every_venue(sink: PostgresSink, engine: Engine) -> None:
    sink.write(Batch([], market(datetime.now(UTC) - timedelta(seconds=30))))
    totals = query(
        engine,
        "SELECT strike, call_oi, put_oi, total_oi, usd_estimate, venues FROM oi_strike_totals ORDER BY 1",
    )
    assert totals[1] == (Decimal(100), Decimal(2), Decimal(1), Decimal(3), Decimal(300), ["deribit", "okx"])


def test_each_venues_share_of_an_underlying_and_of_the_whole_market(
    sink: PostgresSink, engine: Engine
) -> None:
    sink.write(Batch([], market(datetime.now(UTC) - timedelta(seconds=30))))
    shares = query(
        engine,
        "SELECT underlying, venue, open_interest, usd_estimate, oi_share, usd_share FROM oi_venue_share"
        " ORDER BY underlying NULLS LAST, venue",
    )
    by_venue = {(underlying, venue): rest for underlying, venue, *rest in shares}
    assert by_venue[("BTC", "bybit")][:2] == [Decimal(4), Decimal(440)]
    assert by_venue[("BTC", "bybit")][2] == Decimal(4) / Decimal(8)  # 4 of 8 BTC of open interest
    total_usd = Decimal(100) + Decimal(150) + Decimal(50) + Decimal(100) + Decimal(440)
    assert by_venue[(None, "bybit")][0] is None  # coins of different underlyings do not add up
    assert abs(by_venue[(None, "bybit")][3] - Decimal(440) / total_usd) < Decimal("1e-15")
