"""Binance's rows and exchangeInfo → typed records, or rejections naming the field; and the shared parsers of
collector.normalise."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from collector.normalise import parse_expiry, parse_quantity, parse_timestamp_ms
from collector.records import OpenInterest, Rejection
from collector.venues.binance import (
    OptionSymbol,
    Pair,
    SymbolError,
    expiry_code,
    normalise_row,
    normalise_rows,
    parse_listing,
    parse_symbol,
)

COLLECTED_AT = datetime(2022, 11, 18, 6, 47, 10, 250000, tzinfo=UTC)
ETH_221119 = Pair("ETH", "221119")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(moment: datetime) -> int:
    """An aware datetime → whole milliseconds since the epoch, exactly (no float)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _row(**overrides: object) -> dict[str, object]:
    """The documented example row of ``openInterest``, with some fields replaced."""
    row: dict[str, object] = {
        "symbol": "ETH-221119-1175-P",
        "sumOpenInterest": "4.01",
        "sumOpenInterestUsd": "4880.2985615624",
        "timestamp": "1668754020000",
    }
    row.update(overrides)
    return row


# parse_symbol


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("BTC-251226-100000-C", OptionSymbol("BTC", date(2025, 12, 26), Decimal("100000"), "call")),
        ("ETH-221119-1175-P", OptionSymbol("ETH", date(2022, 11, 19), Decimal("1175"), "put")),
        ("XRP-231006-0.46-P", OptionSymbol("XRP", date(2023, 10, 6), Decimal("0.46"), "put")),
        ("DOGE-250131-0.32-C", OptionSymbol("DOGE", date(2025, 1, 31), Decimal("0.32"), "call")),
        ("DOGE-250131-0.005-P", OptionSymbol("DOGE", date(2025, 1, 31), Decimal("0.005"), "put")),
        ("SOL-250328-2.5-C", OptionSymbol("SOL", date(2025, 3, 28), Decimal("2.5"), "call")),
        ("1000SHIB-250131-0.012-C", OptionSymbol("1000SHIB", date(2025, 1, 31), Decimal("0.012"), "call")),
    ],
)
def test_parse_symbol_reads_every_symbol_shape(symbol: str, expected: OptionSymbol) -> None:
    assert parse_symbol(symbol) == expected


@pytest.mark.parametrize(
    ("symbol", "strike"), [("XRP-231006-0.46-P", "0.46"), ("DOGE-250131-0.005-C", "0.005")]
)
def test_parse_symbol_keeps_the_strike_exactly_as_written(symbol: str, strike: str) -> None:
    assert str(parse_symbol(symbol).strike) == strike


@pytest.mark.parametrize(
    "symbol",
    [
        "BTC-251226-100000-c",  # lowercase side
        "BTC-251226-100000-CALL",
        "btc-251226-100000-C",  # lowercase underlying
        "BTC-251226-100000",  # no side
        "BTC-251226-C",  # no strike
        "BTC-100000-C",  # no expiry
        "251226-100000-C",  # no underlying
        "",
        "BTC-2512260-100000-C",  # seven-digit expiry
        "BTC-251226-abc-C",  # non-numeric strike
        "BTC-251226-.5-C",
        "BTC-251226-1.-C",
        "BTC-251226-1e5-C",
        "BTC-251226--100-C",  # negative strike
        "BTC-251226-100000-C-X",  # extra suffix
        "BTC-251226-100000-C ",
        " BTC-251226-100000-C",
    ],
)
def test_parse_symbol_rejects_malformed_symbols(symbol: str) -> None:
    with pytest.raises(SymbolError, match=re.escape("is not UNDERLYING-YYMMDD-STRIKE-C|P")):
        parse_symbol(symbol)


@pytest.mark.parametrize("symbol", ["BTC-251399-100000-C", "BTC-250230-100000-P", "BTC-250000-1-C"])
def test_parse_symbol_rejects_an_expiry_that_is_not_a_real_date(symbol: str) -> None:
    with pytest.raises(SymbolError, match="not a real date") as raised:
        parse_symbol(symbol)
    assert symbol in str(raised.value)


def test_symbol_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_symbol("nonsense")


# parse_expiry


@pytest.mark.parametrize(
    ("text", "expected"),
    [("251226", date(2025, 12, 26)), ("221119", date(2022, 11, 19)), ("240229", date(2024, 2, 29))],
)
def test_parse_expiry_reads_yymmdd_as_a_21st_century_date(text: str, expected: date) -> None:
    assert parse_expiry(text) == expected


@pytest.mark.parametrize("text", ["2512", "20251226", "25122a", "", "25-12-26", " 251226"])
def test_parse_expiry_rejects_text_that_is_not_six_digits(text: str) -> None:
    with pytest.raises(ValueError, match="is not YYMMDD"):
        parse_expiry(text)


@pytest.mark.parametrize("text", ["251399", "251232", "250229", "250001"])
def test_parse_expiry_rejects_six_digits_that_are_not_a_date(text: str) -> None:
    with pytest.raises(ValueError, match="not a real date"):
        parse_expiry(text)


# parse_timestamp_ms


def test_parse_timestamp_ms_reads_the_exchange_string_as_aware_utc() -> None:
    ts = parse_timestamp_ms("1668754020000")
    assert ts == datetime(2022, 11, 18, 6, 47, tzinfo=UTC)
    assert ts.tzinfo is UTC


def test_parse_timestamp_ms_keeps_the_milliseconds_exactly() -> None:
    assert parse_timestamp_ms("1668754020123") == datetime(2022, 11, 18, 6, 47, 0, 123000, tzinfo=UTC)


def test_parse_timestamp_ms_is_exact_far_beyond_float_precision_of_seconds() -> None:
    moment = datetime(2099, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert parse_timestamp_ms(str(_ms(moment))) == moment


def test_parse_timestamp_ms_accepts_an_integer() -> None:
    assert parse_timestamp_ms(1668754020000) == datetime(2022, 11, 18, 6, 47, tzinfo=UTC)


def test_parse_timestamp_ms_reads_zero_as_the_epoch() -> None:
    assert parse_timestamp_ms("0") == _EPOCH


@pytest.mark.parametrize(
    "value",
    [
        1668754020000.0,
        "1668754020000.0",
        "1.5e12",
        "-1",
        -1,
        "",
        " 1668754020000",
        "0x10",
        True,
        None,
        ["1668754020000"],
    ],
)
def test_parse_timestamp_ms_rejects_anything_but_whole_non_negative_milliseconds(value: object) -> None:
    with pytest.raises(ValueError, match="is not whole milliseconds since the epoch"):
        parse_timestamp_ms(value)


# parse_quantity


@pytest.mark.parametrize(
    "text", ["4.01", "4880.2985615624", "0", "0.00000001", "4.010", "123456789012.123456789"]
)
def test_parse_quantity_keeps_the_decimal_exactly_as_written(text: str) -> None:
    value = parse_quantity(text)
    assert value.as_tuple() == Decimal(text).as_tuple()  # same digits, same exponent: nothing rounded


def test_parse_quantity_keeps_trailing_zeros() -> None:
    assert str(parse_quantity("4.010")) == "4.010"


def test_parse_quantity_reads_zero_as_zero_not_nothing() -> None:
    value = parse_quantity("0")
    assert value is not None
    assert value == 0


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "-1", "-0.01"])
def test_parse_quantity_rejects_non_finite_and_negative_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="not a non-negative decimal number"):
        parse_quantity(text)


@pytest.mark.parametrize("text", ["", "abc", "4,01", "4.01.1", "--1"])
def test_parse_quantity_rejects_text_that_is_not_a_number(text: str) -> None:
    with pytest.raises(ValueError, match="is not a non-negative decimal number"):
        parse_quantity(text)


@pytest.mark.parametrize("value", [4.01, 4, 0, None, True, Decimal("4.01")])
def test_parse_quantity_rejects_numbers_not_given_as_strings(value: object) -> None:
    with pytest.raises(ValueError, match="is not a decimal string"):
        parse_quantity(value)


# normalise_row


def test_normalise_row_turns_the_documented_example_into_a_record() -> None:
    assert normalise_row(_row(), COLLECTED_AT) == OpenInterest(
        venue="binance",
        symbol="ETH-221119-1175-P",
        ts=datetime(2022, 11, 18, 6, 47, tzinfo=UTC),
        underlying="ETH",
        expiry=date(2022, 11, 19),
        strike=Decimal("1175"),
        side="put",
        open_interest=Decimal("4.01"),
        open_interest_usd=Decimal("4880.2985615624"),
        underlying_price=None,
        collected_at=COLLECTED_AT,
    )


def test_normalise_row_takes_underlying_expiry_and_side_from_the_rows_own_symbol() -> None:
    record = normalise_row(_row(symbol="XRP-231006-0.46-C"), COLLECTED_AT)
    assert isinstance(record, OpenInterest)
    assert (record.underlying, record.expiry, record.strike, record.side) == (
        "XRP",
        date(2023, 10, 6),
        Decimal("0.46"),
        "call",
    )


def test_normalise_row_keeps_an_open_interest_of_zero() -> None:
    record = normalise_row(_row(sumOpenInterest="0", sumOpenInterestUsd="0"), COLLECTED_AT)
    assert isinstance(record, OpenInterest)
    assert record.open_interest == Decimal("0")
    assert record.open_interest_usd == Decimal("0")


def test_normalise_row_ignores_extra_fields() -> None:
    assert isinstance(normalise_row(_row(extra="whatever"), COLLECTED_AT), OpenInterest)


@pytest.mark.parametrize("field", ["timestamp", "sumOpenInterest", "sumOpenInterestUsd"])
def test_normalise_row_rejects_a_missing_field_naming_symbol_and_field(field: str) -> None:
    row = _row()
    del row[field]
    assert normalise_row(row, COLLECTED_AT) == Rejection("ETH-221119-1175-P", field, "is missing")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sumOpenInterest", "abc"),
        ("sumOpenInterest", "NaN"),
        ("sumOpenInterest", 4.01),
        ("sumOpenInterestUsd", "-1"),
        ("sumOpenInterestUsd", None),
        ("timestamp", "1.5e12"),
        ("timestamp", 1668754020000.0),
    ],
)
def test_normalise_row_rejects_a_bad_value_naming_symbol_field_and_value(field: str, value: object) -> None:
    rejection = normalise_row(_row(**{field: value}), COLLECTED_AT)
    assert isinstance(rejection, Rejection)
    assert (rejection.symbol, rejection.field) == ("ETH-221119-1175-P", field)
    assert repr(value) in rejection.reason


def test_normalise_row_rejects_an_unparseable_symbol_naming_it() -> None:
    rejection = normalise_row(_row(symbol="ETH-221119-1175"), COLLECTED_AT)
    assert isinstance(rejection, Rejection)
    assert (rejection.symbol, rejection.field) == ("ETH-221119-1175", "symbol")
    assert "UNDERLYING-YYMMDD-STRIKE-C|P" in rejection.reason


def test_normalise_row_rejects_a_symbol_with_an_impossible_expiry() -> None:
    rejection = normalise_row(_row(symbol="ETH-221399-1175-P"), COLLECTED_AT)
    assert isinstance(rejection, Rejection)
    assert (rejection.symbol, rejection.field) == ("ETH-221399-1175-P", "symbol")
    assert "not a real date" in rejection.reason


@pytest.mark.parametrize(
    ("row", "kind"), [(["ETH-221119-1175-P"], "list"), ("row", "str"), (None, "NoneType")]
)
def test_normalise_row_rejects_a_row_that_is_not_an_object(row: object, kind: str) -> None:
    assert normalise_row(row, COLLECTED_AT) == Rejection(None, "row", f"is {kind}, not an object")


def test_normalise_row_rejects_a_row_without_a_symbol() -> None:
    row = _row()
    del row["symbol"]
    assert normalise_row(row, COLLECTED_AT) == Rejection(None, "symbol", "is missing")


@pytest.mark.parametrize("symbol", [123, ["ETH-221119-1175-P"], False])
def test_normalise_row_rejects_a_symbol_that_is_not_a_string(symbol: object) -> None:
    assert normalise_row(_row(symbol=symbol), COLLECTED_AT) == Rejection(
        None, "symbol", f"is {symbol!r}, not a string"
    )


def test_rejection_reads_as_symbol_field_and_reason() -> None:
    rejection = normalise_row(_row(sumOpenInterest="abc"), COLLECTED_AT)
    assert (
        str(rejection)
        == "symbol ETH-221119-1175-P: field 'sumOpenInterest' 'abc' is not a non-negative decimal number"
    )


def test_normalise_row_rejects_a_timestamp_too_large_for_a_datetime() -> None:
    rejection = normalise_row(_row(timestamp="9" * 20), COLLECTED_AT)
    assert isinstance(rejection, Rejection)
    assert (rejection.symbol, rejection.field) == ("ETH-221119-1175-P", "timestamp")


# normalise_rows


def test_normalise_rows_keeps_good_rows_and_rejects_bad_ones_one_by_one() -> None:
    rows: list[object] = [
        _row(),
        _row(symbol="ETH-221119-1200-C", sumOpenInterest="abc"),
        "not a row",
        _row(symbol="ETH-221119-1250-C", sumOpenInterest="0"),
        _row(symbol="garbage"),
    ]
    result = normalise_rows(rows, COLLECTED_AT, ETH_221119)
    assert [record.symbol for record in result.records] == ["ETH-221119-1175-P", "ETH-221119-1250-C"]
    assert [(r.symbol, r.field) for r in result.rejections] == [
        ("ETH-221119-1200-C", "sumOpenInterest"),
        (None, "row"),
        ("garbage", "symbol"),
    ]


def test_normalise_rows_gives_every_record_the_same_collected_at() -> None:
    result = normalise_rows([_row(), _row(symbol="ETH-221119-1200-C")], COLLECTED_AT, ETH_221119)
    assert {record.collected_at for record in result.records} == {COLLECTED_AT}


def test_normalise_rows_of_an_empty_response_is_empty() -> None:
    result = normalise_rows([], COLLECTED_AT, ETH_221119)
    assert (result.records, result.rejections) == ([], [])


def test_normalise_rows_survives_one_row_with_a_huge_timestamp() -> None:
    rows = [_row(), _row(symbol="ETH-221119-1200-C", timestamp="9" * 20)]
    result = normalise_rows(rows, COLLECTED_AT, ETH_221119)
    assert len(result.records) == 1
    assert [(r.symbol, r.field) for r in result.rejections] == [("ETH-221119-1200-C", "timestamp")]


def test_a_row_of_another_expiry_is_rejected_not_stored_under_this_pair() -> None:
    rows = [_row(), _row(symbol="ETH-221125-1175-P"), _row(symbol="BTC-221119-1175-P")]
    result = normalise_rows(rows, COLLECTED_AT, ETH_221119)
    assert [record.symbol for record in result.records] == ["ETH-221119-1175-P"]
    assert [(r.symbol, r.field) for r in result.rejections] == [
        ("ETH-221125-1175-P", "symbol"),
        ("BTC-221119-1175-P", "symbol"),
    ]
    assert "not of the pair asked for (ETH 221119)" in result.rejections[0].reason


def test_a_symbol_served_twice_in_one_answer_is_kept_once_and_said_so() -> None:
    result = normalise_rows([_row(), _row(sumOpenInterest="9")], COLLECTED_AT, ETH_221119)
    assert [record.open_interest for record in result.records] == [Decimal("4.01")]
    [twice] = result.rejections
    assert twice.reason == "appears twice in this answer: the first row is kept"


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("1668754020", "behind our clock (seconds sent for milliseconds?)"),  # seconds, not ms
        ("1668840420000", "ahead of our clock"),  # a day ahead
        ("1668754020123", "not on a whole minute"),
        ("1668581220000", "behind our clock"),  # two days old
    ],
)
def test_a_timestamp_off_the_snapshot_minute_or_far_from_our_clock_is_rejected(
    timestamp: str, reason: str
) -> None:
    rejection = normalise_row(_row(timestamp=timestamp), COLLECTED_AT)
    assert isinstance(rejection, Rejection) and rejection.field == "timestamp"
    assert reason in rejection.reason


def test_a_timestamp_a_few_minutes_ahead_of_our_clock_is_clock_skew_and_kept() -> None:
    assert isinstance(normalise_row(_row(timestamp="1668754200000"), COLLECTED_AT), OpenInterest)


def test_a_value_of_140000_digits_is_rejected_with_its_size_not_its_digits() -> None:
    rejection = normalise_row(_row(sumOpenInterest="1" * 140_000), COLLECTED_AT)
    assert isinstance(rejection, Rejection) and rejection.field == "sumOpenInterest"
    assert (
        "has 140000 digits before the point and 0 after; at most 30 and 30 are accepted" in rejection.reason
    )
    assert len(rejection.reason) < 200


def test_a_value_at_the_digit_bounds_is_kept_exactly() -> None:
    value = "9" * 30 + "." + "1" * 30
    record = normalise_row(_row(sumOpenInterestUsd=value), COLLECTED_AT)
    assert isinstance(record, OpenInterest) and str(record.open_interest_usd) == value


def test_a_symbol_with_a_9000_character_strike_is_rejected_briefly() -> None:
    rejection = normalise_row(_row(symbol="ETH-221119-" + "1" * 9000 + "-P"), COLLECTED_AT)
    assert isinstance(rejection, Rejection) and rejection.field == "symbol"
    assert "has 9013 characters; at most 64 are accepted" in rejection.reason
    assert rejection.symbol is not None and len(rejection.symbol) < 120


def test_a_strike_with_too_many_digits_is_rejected() -> None:
    rejection = normalise_row(_row(symbol="ETH-221119-0." + "1" * 40 + "-P"), COLLECTED_AT)
    assert isinstance(rejection, Rejection) and "at most 30 and 30" in rejection.reason


def test_an_expiry_before_any_crypto_option_is_not_a_date_in_2000() -> None:
    with pytest.raises(ValueError, match="before any crypto option was listed"):
        parse_expiry("000101")


def test_a_row_that_breaks_the_parser_itself_costs_only_that_row() -> None:
    class Hostile(dict[str, object]):
        def get(self, key: str, default: object = None) -> object:
            raise RecursionError("maximum recursion depth exceeded")

    result = normalise_rows([_row(), Hostile()], COLLECTED_AT, ETH_221119)
    assert len(result.records) == 1
    [rejection] = result.rejections
    assert (rejection.field, rejection.reason[:14]) == ("row", "cannot be read")


# expiry_code and parse_listing

SETTLEMENT_BTC = datetime(2025, 12, 26, 8, 0, tzinfo=UTC)
SETTLEMENT_ETH = datetime(2025, 12, 27, 8, 0, tzinfo=UTC)


def _contract(base: str) -> dict[str, object]:
    return {"baseAsset": base, "quoteAsset": "USDT", "underlying": f"{base}USDT", "settleAsset": "USDT"}


def _listed(symbol: str, underlying: str, expiry: datetime) -> dict[str, object]:
    return {
        "symbol": symbol,
        "side": "CALL" if symbol.endswith("C") else "PUT",
        "strikePrice": symbol.split("-")[2],
        "underlying": underlying,
        "expiryDate": _ms(expiry),
        "unit": 1,
        "status": "TRADING",
    }


def _exchange_info(*symbols: object, contracts: object = None) -> dict[str, object]:
    return {
        "timezone": "UTC",
        "serverTime": 1766736000000,
        "optionContracts": [_contract("BTC"), _contract("ETH")] if contracts is None else contracts,
        "optionAssets": [{"name": "USDT"}],
        "optionSymbols": list(symbols),
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}
        ],
    }


def test_expiry_code_is_the_utc_date_of_the_settlement_time() -> None:
    assert expiry_code(_ms(SETTLEMENT_BTC)) == "251226"


@pytest.mark.parametrize(
    "moment",
    [datetime(2025, 12, 26, 0, 0, tzinfo=UTC), datetime(2025, 12, 26, 23, 59, 59, 999000, tzinfo=UTC)],
)
def test_expiry_code_uses_utc_not_local_time(moment: datetime) -> None:
    assert expiry_code(_ms(moment)) == "251226"


def test_parse_listing_gives_one_pair_per_base_asset_and_expiry() -> None:
    listing = parse_listing(
        _exchange_info(
            _listed("BTC-251226-100000-C", "BTCUSDT", SETTLEMENT_BTC),
            _listed("BTC-251226-100000-P", "BTCUSDT", SETTLEMENT_BTC),
            _listed("BTC-251226-90000-C", "BTCUSDT", SETTLEMENT_BTC),
            _listed("ETH-251227-4000-C", "ETHUSDT", SETTLEMENT_ETH),
        )
    )
    assert listing.pairs == frozenset({Pair("BTC", "251226"), Pair("ETH", "251227")})
    assert listing.unreadable == 0
    assert listing.underlyings == frozenset({"BTC", "ETH"})


def test_parse_listing_takes_the_underlying_from_option_contracts_base_asset() -> None:
    listing = parse_listing(
        _exchange_info(
            _listed("XBT-251226-100000-C", "BTCUSDT", SETTLEMENT_BTC), contracts=[_contract("BTC")]
        )
    )
    assert listing.pairs == frozenset({Pair("BTC", "251226")})


def test_parse_listing_takes_the_expiry_from_expiry_date_not_from_the_symbol() -> None:
    listing = parse_listing(_exchange_info(_listed("BTC-251226-100000-C", "BTCUSDT", SETTLEMENT_ETH)))
    assert listing.pairs == frozenset({Pair("BTC", "251227")})


def test_parse_listing_falls_back_to_the_symbol_prefix_without_option_contracts() -> None:
    info = _exchange_info(_listed("BTC-251226-100000-C", "BTCUSDT", SETTLEMENT_BTC))
    del info["optionContracts"]
    assert parse_listing(info).pairs == frozenset({Pair("BTC", "251226")})


def test_parse_listing_counts_unreadable_entries_and_keeps_the_rest() -> None:
    good = _listed("BTC-251226-100000-C", "BTCUSDT", SETTLEMENT_BTC)
    no_expiry = {key: value for key, value in good.items() if key != "expiryDate"}
    no_symbol = {key: value for key, value in good.items() if key != "symbol"}
    listing = parse_listing(
        _exchange_info(
            good,
            "BTC-251226-100000-C",
            None,
            no_expiry,
            no_symbol,
            {**good, "expiryDate": str(_ms(SETTLEMENT_BTC))},
            {**good, "expiryDate": True},
            {**good, "expiryDate": 1766736000000.0},
            {**good, "symbol": 42},
            {**good, "symbol": "", "underlying": "UNKNOWNUSDT"},
        )
    )
    assert listing.pairs == frozenset({Pair("BTC", "251226")})
    assert listing.unreadable == 9


def test_parse_listing_of_an_empty_symbol_list_is_empty() -> None:
    listing = parse_listing(_exchange_info())
    assert (listing.pairs, listing.unreadable) == (frozenset(), 0)


@pytest.mark.parametrize(
    "exchange_info",
    [
        {"optionContracts": [_contract("BTC")]},
        {"optionSymbols": {"symbol": "BTC-251226-100000-C"}},
        {"optionSymbols": None},
        [],
        None,
        '{"optionSymbols": []}',
    ],
)
def test_parse_listing_refuses_exchange_info_without_an_option_symbols_list(exchange_info: object) -> None:
    with pytest.raises(ValueError, match="no optionSymbols list"):
        parse_listing(exchange_info)


def test_parse_listing_counts_an_out_of_range_expiry_date_as_unreadable() -> None:
    good = _listed("BTC-251226-100000-C", "BTCUSDT", SETTLEMENT_BTC)
    listing = parse_listing(_exchange_info(good, {**good, "expiryDate": 10**20}))
    assert listing.pairs == frozenset({Pair("BTC", "251226")})
    assert listing.unreadable == 1
