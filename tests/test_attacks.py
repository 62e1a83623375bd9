"""Property-based attacks (hypothesis): arbitrary JSON, strings, numbers, headers, status codes and bytes at
every boundary. The rule under test: no exception escapes; good rows are kept; bad ones are counted.

Figures per property: ``pytest tests/test_attacks.py --hypothesis-show-statistics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from collector.config import Settings
from collector.cycle import collect_once
from collector.errors import ExchangeError
from collector.normalise import keep_rows
from collector.records import INT32, Batch, OpenInterest, PairRun, clean_text
from collector.sink.postgres import PostgresSink
from collector.sink.spool import Spool, SpoolFileError, decode, encode
from collector.sink.store import Store
from collector.venues import binance, bybit, deribit, okx
from collector.venues.binance import Pair, normalise_rows, parse_listing, parse_response
from collector.venues.gate import MAX_BAN_S, MAX_PAUSE_S, ExchangeGate
from collector.venues.http import decode_json, parse_retry_after
from tests.fake_exchange import RECENT_MINUTE_MS, FakeExchange, Fault

PAIR = Pair("BTC", "261225")
NOW = datetime.now(UTC)
MINUTE_MS = int(NOW.timestamp() // 60 * 60_000)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**30, max_value=10**60)
    | st.floats(allow_nan=False)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5)
)
numbers_as_text = st.decimals(min_value=0, allow_nan=False, allow_infinity=False).map(
    lambda d: format(d, "f")
)
good_rows = st.builds(
    lambda strike, oi, usd, minutes_ago: {
        "symbol": f"BTC-261225-{strike}-C",
        "sumOpenInterest": oi,
        "sumOpenInterestUsd": usd,
        "timestamp": str(MINUTE_MS - minutes_ago * 60_000),
    },
    st.integers(min_value=1, max_value=10**9),
    st.decimals(min_value=0, max_value=10**12, places=4).map(lambda d: format(d, "f")),
    st.decimals(min_value=0, max_value=10**15, places=10).map(lambda d: format(d, "f")),
    st.integers(min_value=0, max_value=600),
)
FIELDS = ("symbol", "sumOpenInterest", "sumOpenInterestUsd", "timestamp")
spoiled_rows = st.builds(
    lambda row, name, value: {**row, name: value}, good_rows, st.sampled_from(FIELDS), json_values
)
any_rows = st.lists(st.one_of(good_rows, spoiled_rows, json_values), max_size=30)


# ---- normalise: arbitrary rows


@settings(max_examples=300)
@given(any_rows)
def test_normalise_never_raises_and_counts_every_row(rows: list[object]) -> None:
    result = normalise_rows(rows, NOW, PAIR)
    assert len(result.records) + len(result.rejections) == len(rows)
    for rejection in result.rejections:
        rejection.reason.encode("utf-8")
        assert "\x00" not in rejection.reason and len(rejection.reason) < 700


@settings(max_examples=200)
@given(st.lists(good_rows, max_size=10), st.lists(st.one_of(spoiled_rows, json_values), max_size=10))
def test_normalise_keeps_every_good_row_whatever_surrounds_it(
    good: list[dict[str, str]], bad: list[object]
) -> None:
    first = {row["symbol"]: row for row in reversed(good)}  # the first of a symbol is the one kept
    assume(not any(isinstance(row, dict) and isinstance(row.get("symbol"), str) and row["symbol"] in first
                   for row in bad))  # fmt: skip
    result = normalise_rows([*good, *bad], NOW, PAIR)
    kept = {record.symbol: record for record in result.records}
    for symbol, row in first.items():
        assert format(kept[symbol].open_interest, "f") == row["sumOpenInterest"]
        assert format(kept[symbol].open_interest_usd, "f") == row["sumOpenInterestUsd"]


@settings(max_examples=500)
@given(json_values)
def test_a_listing_of_any_shape_is_pairs_or_a_value_error(document: object) -> None:
    try:
        listing = parse_listing(document)
    except ValueError:
        return
    assert all(len(pair.expiry) == 6 for pair in listing.pairs)


# ---- the source: arbitrary status, headers and bodies

header_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40
)
headers = st.dictionaries(
    st.sampled_from(["Retry-After", "X-MBX-USED-WEIGHT-1M", "X-MBX-USED-WEIGHT-0M", "Content-Type"])
    | st.from_regex(r"X-MBX-USED-WEIGHT-[0-9]{1,8}[smhdSMHD]", fullmatch=True)
    | st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
    header_text,
    max_size=4,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: str(value).encode()),
    st.builds(
        lambda code, msg: f'{{"code": {code}, "msg": "{msg}"}}'.encode(),
        st.integers() | st.just("1e999") | st.just("null"),
        st.text(max_size=50).map(lambda t: t.replace("\\", "\\\\").replace('"', '\\"')),
    ),
    st.integers(min_value=1, max_value=20_000).map(lambda depth: b"[" * depth),
)


@settings(max_examples=300)
@given(st.integers(min_value=100, max_value=599), headers, bodies)
def test_any_answer_is_a_body_or_an_exchange_error_that_the_journal_can_hold(
    status: int, header_map: dict[str, str], body: bytes
) -> None:
    request = httpx.Request("GET", "http://x/eapi/v1/openInterest")
    raw_headers = [(name.encode(), value.encode("latin-1")) for name, value in header_map.items()]
    response = httpx.Response(status, headers=raw_headers, content=body, request=request)
    try:
        parse_response(response, "openInterest BTC 261225")
    except ExchangeError as error:
        str(error).encode("utf-8")
        assert "\x00" not in str(error)
        assert error.code is None or -INT32 - 1 <= error.code <= INT32
        assert error.retry_after_s is None or (
            math.isfinite(error.retry_after_s) and error.retry_after_s >= 0
        )
        if error.banned_until is not None:
            assert error.banned_until.tzinfo is not None


@settings(max_examples=300)
@given(st.binary(max_size=500) | st.integers(min_value=1, max_value=100_000).map(lambda n: b"[" * n))
def test_decoding_any_bytes_as_json_never_raises(body: bytes) -> None:
    value = decode_json(body)
    assert not isinstance(value, float)


@settings(max_examples=300)
@given(header_text | st.text())
def test_retry_after_of_any_text_is_none_or_finite_seconds(header: str) -> None:
    seconds = parse_retry_after(header, time.time())
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=30) | headers.flatmap(lambda h: st.sampled_from(list(h) or ["x"])),
                       st.text(max_size=30), max_size=6))  # fmt: skip
def test_the_gate_reads_any_headers_without_raising(header_map: dict[str, str]) -> None:
    gate = ExchangeGate()
    gate.in_flight = 1
    gate.leave(header_map, 200)
    assert gate.in_flight == 0
    assert all(window > 0 for window in gate.weights)


@settings(max_examples=300)
@given(st.floats() | st.none(), st.floats() | st.none())
def test_bans_and_pauses_are_clamped_whatever_the_exchange_claims(
    until: float | None, pause: float | None
) -> None:
    gate = ExchangeGate()
    now = time.time()
    gate.ban(None if until is None else now + until, "x")
    gate.pause(pause, "x")
    assert gate.banned_until is not None and gate.banned_until <= time.time() + MAX_BAN_S
    assert gate.paused_until <= time.time() + MAX_PAUSE_S


@settings(max_examples=500)
@given(st.text())
def test_clean_text_makes_any_text_safe_for_a_log_line_and_a_column(raw: str) -> None:
    cleaned = clean_text(raw)
    cleaned.encode("utf-8")
    assert "\x00" not in cleaned and len(cleaned) <= 600 * 4


# ---- the spool decoder: arbitrary bytes, and valid files changed on disk

TS = NOW.replace(second=0, microsecond=0)
BATCH = Batch(
    [PairRun(NOW, "binance", "BTC 261225", "BTC", date(2026, 12, 25), "ok", TS, 1, 0, None, None, None, 5)],
    [OpenInterest("binance", "BTC-261225-100000-C", TS, "BTC", date(2026, 12, 25), Decimal("100000"), "call",
                  Decimal("4.01"), Decimal("401.123"), Decimal("97000.5"), NOW)],
)  # fmt: skip
ENCODED = encode(BATCH)


@settings(max_examples=500)
@given(st.binary(max_size=400) | json_values.map(lambda value: str(value).encode()))
def test_any_bytes_in_the_spool_are_a_batch_or_a_spool_file_error(data: bytes) -> None:
    with contextlib.suppress(SpoolFileError):
        decode(data)


@settings(max_examples=500)
@given(st.integers(min_value=0, max_value=len(ENCODED) - 1), st.integers(min_value=0, max_value=255))
def test_a_spool_file_changed_on_disk_is_never_replayed_changed(position: int, byte: int) -> None:
    changed = bytearray(ENCODED)
    changed[position] = byte
    try:
        assert decode(bytes(changed)) == BATCH  # only when the byte was not really changed
    except SpoolFileError:
        assert bytes(changed) != ENCODED


@settings(max_examples=150)
@given(st.lists(json_values, max_size=10), st.lists(json_values, max_size=10))
def test_a_format_1_file_of_any_values_is_a_batch_or_a_spool_file_error(
    runs: list[object], rows: list[object]
) -> None:
    try:
        document = json.dumps({"format": 1, "runs": runs, "records": rows}, default=str).encode()
    except ValueError:
        return
    with contextlib.suppress(SpoolFileError):
        decode(document)


# ---- the database: arbitrary text and numbers in every column of a batch


@pytest.fixture
def clean_store(tmp_path: Path, engine: Engine) -> Iterator[Store]:
    yield Store(PostgresSink(engine), Spool(tmp_path / "spool", 100_000_000))


def _empty(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE open_interest, collection_runs, rejected_rows"))


# Long text is built from a small draw: generating 5,000 random characters would exhaust hypothesis' budget.
hostile_text = (
    st.text(max_size=80)
    | st.just("\x00")
    | st.just("\ud800")
    | st.builds(lambda char, n: char * n, st.characters(), st.integers(min_value=5000, max_value=6000))
)
hostile_numbers = st.decimals(allow_nan=False, allow_infinity=False) | st.builds(
    lambda digits: Decimal("9" * digits), st.integers(min_value=1, max_value=150_000)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(hostile_text, hostile_numbers, hostile_numbers), min_size=1, max_size=8),
    st.lists(st.tuples(hostile_text | st.none(), st.integers() | st.none()), max_size=3),
)
def test_any_batch_is_stored_or_set_aside_and_the_spool_always_drains(
    clean_store: Store, engine: Engine, rows: list[tuple[str, Decimal, Decimal]],
    runs: list[tuple[str | None, int | None]],
) -> None:  # fmt: skip
    _empty(engine)
    records = [
        OpenInterest(
            "binance", f"BTC-{n}-{symbol}", TS, "BTC", date(2026, 12, 25), strike, "put", oi, oi, oi, NOW
        )
        for n, (symbol, strike, oi) in enumerate(rows)
    ]
    journal = [
        PairRun(
            NOW + timedelta(seconds=n),
            "binance",
            "BTC 261225",
            "BTC",
            date(2026, 12, 25),
            "failed",
            None,
            0,
            0,
            400,
            code,
            message,
            1,
        )
        for n, (message, code) in enumerate(runs)
    ]
    committed = clean_store.commit(Batch(journal, records))
    assert committed.problem is None and clean_store.spool.pending() == []
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM open_interest")).scalar_one()
        journalled = connection.execute(text("SELECT count(*) FROM collection_runs")).scalar_one()
    assert stored + committed.refused_rows == len(records)  # every row stored, or set aside and counted
    assert journalled == len(journal)  # journal text is made safe before it is written: never refused


# ---- the whole cycle: arbitrary answers from a real HTTP server on one pair


@pytest.fixture
def small_fake() -> Iterator[FakeExchange]:
    with FakeExchange({"BTC": ["261225", "270101"], "ETH": ["261225"]}, minute_ms=RECENT_MINUTE_MS) as fake:
        yield fake


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=100, max_value=599), headers, bodies)
def test_any_answer_on_one_pair_costs_only_that_pair(
    settings: Settings, small_fake: FakeExchange, clean_store: Store, engine: Engine,
    status: int, header_map: dict[str, str], body: bytes,
) -> None:  # fmt: skip
    _empty(engine)
    small_fake.clear_faults()
    assume(status not in (101, 204, 304) and not 100 <= status < 200)  # no body allowed: not an answer
    safe_headers = {k: v for k, v in header_map.items() if k.lower() not in ("content-length", "retry-after")}
    small_fake.inject(
        Fault(status=status, body=body.decode("latin-1"), headers=safe_headers),
        underlying="BTC",
        expiry="270101",
    )
    pointed = Settings(
        exchange=settings.exchange.__class__(timeout_s=2.0, max_in_flight=4),
        binance=settings.binance.__class__(base_url=small_fake.base_url, underlyings=("BTC", "ETH")),
        database=settings.database,
        spool=settings.spool,
        venues=settings.venues,
    )
    report = asyncio.run(collect_once(pointed, clean_store, ExchangeGate(), time.time() + 5))
    others = [o for o in report.outcomes if o.scope != binance.scope("BTC", "270101")]
    assert [o.error for o in others] == [None, None]
    expected = len(small_fake.rows_for("BTC", "261225")) + len(small_fake.rows_for("ETH", "261225"))
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT count(*) FROM open_interest WHERE expiry = '2026-12-25'")
        ).scalar_one()
    assert stored == expected and clean_store.spool.pending() == []


# ---- Deribit: the same rule, for its JSON-RPC envelope and its number-typed rows


deribit_rows = st.builds(
    lambda name, oi, price, ms: {
        "instrument_name": name,
        "open_interest": oi,
        "underlying_price": price,
        "creation_timestamp": ms,
    },
    st.sampled_from(["BTC-27JUN25-100000-C", "BTC-5AUG23-580-P", "ETH-27JUN25-3000-C"])
    | st.text(max_size=30),
    json_scalars,
    json_scalars,
    st.integers(min_value=MINUTE_MS - 3_600_000, max_value=MINUTE_MS) | json_scalars,
)


@settings(max_examples=300)
@given(st.lists(st.one_of(deribit_rows, json_values), max_size=20))
def test_deribit_rows_of_any_shape_are_kept_or_counted(rows: list[object]) -> None:
    records, rejections = deribit.normalise_rows(rows, "BTC", NOW)
    assert len(records) + len(rejections) == len(rows)
    assert all(isinstance(record.open_interest, Decimal) for record in records)


@settings(max_examples=300)
@given(st.integers(min_value=100, max_value=599), bodies)
def test_any_deribit_answer_is_a_result_or_an_exchange_error(status: int, body: bytes) -> None:
    request = httpx.Request("GET", "http://x/api/v2/public/get_book_summary_by_currency")
    try:
        deribit.parse_response(httpx.Response(status, content=body, request=request), "book BTC")
    except ExchangeError as error:
        str(error).encode("utf-8")
        assert error.code is None or -INT32 - 1 <= error.code <= INT32


# ---- OKX and Bybit: the same rule, for their envelopes and string-typed rows

okx_rows = st.builds(
    lambda inst_id, coin, usd, ms: {
        "instType": "OPTION",
        "instId": inst_id,
        "oiCcy": coin,
        "oiUsd": usd,
        "ts": ms,
    },
    st.sampled_from(["BTC-USD-250627-100000-C", "BTC-USD-250627-0.5-P", "ETH-USD-250627-3000-C"])
    | st.text(max_size=30),
    numbers_as_text | json_scalars,
    numbers_as_text | json_scalars,
    st.integers(min_value=MINUTE_MS - 3_600_000, max_value=MINUTE_MS).map(str) | json_scalars,
)
bybit_rows = st.builds(
    lambda symbol, oi, price: {"symbol": symbol, "openInterest": oi, "underlyingPrice": price},
    st.sampled_from(["BTC-27JUN25-100000-C", "BTC-27JUN25-100000-C-USDT", "ETH-3JAN23-1250-P"])
    | st.text(max_size=30),
    numbers_as_text | json_scalars,
    numbers_as_text | json_scalars,
)


@settings(max_examples=300)
@given(st.lists(st.one_of(okx_rows, json_values), max_size=20))
def test_okx_rows_of_any_shape_are_kept_or_counted(rows: list[object]) -> None:
    kept = keep_rows(rows, lambda row: okx.normalise_row(row, "BTC-USD", NOW), "instId")
    assert len(kept.records) + len(kept.rejections) == len(rows)
    assert all(record.symbol.startswith("BTC-USD-") for record in kept.records)


@settings(max_examples=300)
@given(st.lists(st.one_of(bybit_rows, json_values), max_size=20))
def test_bybit_rows_of_any_shape_are_kept_or_counted(rows: list[object]) -> None:
    kept = keep_rows(rows, lambda row: bybit.normalise_row(row, "BTC", NOW, NOW), "symbol")
    assert len(kept.records) + len(kept.rejections) == len(rows)
    assert all(record.underlying == "BTC" for record in kept.records)


envelopes = st.one_of(
    bodies,
    st.builds(
        lambda code, msg, data: json.dumps({"code": code, "msg": msg, "data": data}).encode(),
        st.sampled_from(["0", "50011", "51000", "", "-1", "9" * 40]) | st.integers() | st.none(),
        st.text(max_size=30),
        st.lists(st.integers(), max_size=2) | st.none(),
    ),
    st.builds(
        lambda code, msg, time_ms: json.dumps(
            {"retCode": code, "retMsg": msg, "result": {"list": []}, "time": time_ms}
        ).encode(),
        st.sampled_from([0, 10001, 10006, -1, 2**40]) | st.text(max_size=5) | st.none(),
        st.text(max_size=30),
        st.integers() | st.none(),
    ),
)


@settings(max_examples=300)
@given(st.integers(min_value=100, max_value=599), envelopes, st.sampled_from(["okx", "bybit"]))
def test_any_okx_or_bybit_answer_is_a_body_or_an_exchange_error(status: int, body: bytes, venue: str) -> None:
    request = httpx.Request("GET", "http://x/")
    parse = okx.parse_response if venue == "okx" else bybit.parse_response
    try:
        parse(httpx.Response(status, content=body, request=request), "scope")
    except ExchangeError as error:
        str(error).encode("utf-8")
        assert error.code is None or -INT32 - 1 <= error.code <= INT32
