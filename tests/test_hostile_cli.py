"""Hostile answers, rows, headers and spool files, each through the real command line (`oi-collector once`)
against the fake exchange and PostgreSQL: what one of them breaks costs only itself, counted, logged and
journalled; everything else is stored, no traceback escapes, and the next clean `once` stores everything and
leaves the spool empty."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from collector.config import Settings
from collector.cycle import collect_once
from collector.records import Batch, OpenInterest
from collector.sink.postgres import PostgresSink, make_engine
from collector.sink.spool import Spool, as_values, encode
from collector.sink.store import Store
from collector.venues.binance import Pair, normalise_row
from collector.venues.gate import ExchangeGate
from tests.conftest import cli_env, run_cli, start_daemon
from tests.fake_exchange import RECENT_MINUTE_MS, FakeExchange, Fault, http_error, malformed_rows
from tests.test_cli import query, served, stored
from tests.test_exchange_faults import pair_requests

UNIVERSE = {"BTC": ["251226", "260102"], "ETH": ["251226"]}
BTC = Pair("BTC", "251226")  # the pair every exchange fault is injected on
EARLIER_MINUTE_MS = RECENT_MINUTE_MS - 60_000  # spooled records: a minute the fake does not serve now
FIRST_SPOOL_FILE = "20200101T000000000000-1.batch.json"  # sorts before any batch a cycle writes
THREE_DAYS_S = 3 * 86400
Row = tuple[str, str, str, str]


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(UNIVERSE, minute_ms=RECENT_MINUTE_MS) as exchange:
        yield exchange


# ---------------------------------------------------------------------------------------------- helpers


def once(settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    """`oi-collector once` on the small universe; whatever it met, no traceback reached stderr."""
    result = run_cli("once", env=cli_env(settings, OI_BINANCE_UNDERLYINGS="BTC,ETH", **env))
    assert "Traceback" not in result.stderr, result.stderr
    return result


def row_key(row: dict[str, str]) -> Row:
    """A served row as ``stored`` and ``served`` compare it, digit for digit."""
    return row["symbol"], row["timestamp"], row["sumOpenInterest"], row["sumOpenInterestUsd"]


def rows_of(fake: FakeExchange, pair: Pair = BTC) -> set[Row]:
    return {row_key(row) for row in fake.rows_for(pair.underlying, pair.expiry)}


def answer_with_row_changed(fake: FakeExchange, index: int, **changes: str) -> tuple[Fault, Row]:
    """BTC 251226's own answer with one row's fields changed; and that row as it is normally served."""
    rows = fake.rows_for(BTC.underlying, BTC.expiry)
    original = row_key(rows[index])
    rows[index] = {**rows[index], **changes}
    return Fault(json_body=rows), original


def run_of(url: str, pair: Pair = BTC) -> dict[str, Any]:
    """The one collection_runs row of ``pair`` (the test has run one cycle so far)."""
    [row] = query(
        url,
        "SELECT status, rows_rejected, http_status, error_code, error_message FROM collection_runs"
        f" WHERE underlying = '{pair.underlying}' AND expiry = to_date('{pair.expiry}', 'YYMMDD')",
    )
    return dict(
        zip(("status", "rows_rejected", "http_status", "error_code", "error_message"), row, strict=True)
    )


def rejections(url: str, stage: str) -> list[dict[str, Any]]:
    rows = query(
        url,
        "SELECT underlying, expiry::text, symbol, field, reason FROM rejected_rows"
        f" WHERE stage = '{stage}' ORDER BY ordinal",
    )
    return [
        dict(zip(("underlying", "expiry", "symbol", "field", "reason"), row, strict=True)) for row in rows
    ]


def spooled(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.batch.json"))


def assert_a_clean_once_stores_everything(settings: Settings, fake: FakeExchange) -> None:
    fake.clear_faults()
    result = once(settings)
    assert result.returncode == 0, result.stderr
    assert stored(settings.database.url) == served(fake)
    assert spooled(settings.spool.dir) == []


def assert_only_that_row_rejected(
    settings: Settings, result: subprocess.CompletedProcess[str], field: str
) -> dict[str, Any]:
    """Exit 0, BTC 251226 'partial' with one row rejected on ``field`` (logged and journalled); returns the
    journal's rejection."""
    assert result.returncode == 0, result.stderr
    assert "BTC 251226: rejected a row" in result.stderr
    assert f"field {field!r}" in result.stderr
    run = run_of(settings.database.url)
    assert (run["status"], run["rows_rejected"]) == ("partial", 1)
    [rejection] = rejections(settings.database.url, "normalise")
    assert (rejection["underlying"], rejection["expiry"], rejection["field"]) == ("BTC", "2025-12-26", field)
    assert spooled(settings.spool.dir) == []
    return rejection


def spooled_record(fake: FakeExchange, index: int = 0) -> OpenInterest:
    """A record of ETH 251226 at an earlier minute, as a cycle would have spooled it."""
    row = fake.rows_for("ETH", "251226", EARLIER_MINUTE_MS)[index]
    record = normalise_row(row, datetime.now(UTC))
    assert isinstance(record, OpenInterest)
    return record


# ---------------------------------------------------------------------------------------------- answers


def test_a_body_of_nested_brackets_fails_only_that_pair(settings: Settings, fake: FakeExchange) -> None:
    fake.inject(Fault(body="[" * 50_000), underlying="BTC", expiry="251226", times=None)
    result = once(settings)
    assert result.returncode == 1
    assert "BTC 251226: openInterest BTC 251226: HTTP 200 with a body that is not JSON" in result.stderr
    assert stored(settings.database.url) == served(fake) - rows_of(fake)
    assert run_of(settings.database.url)["status"] == "failed"
    assert run_of(settings.database.url, Pair("ETH", "251226"))["status"] == "ok"
    assert spooled(settings.spool.dir) == []
    assert_a_clean_once_stores_everything(settings, fake)


def test_an_open_interest_of_140000_digits_rejects_only_that_row(
    settings: Settings, fake: FakeExchange
) -> None:
    fault, original = answer_with_row_changed(fake, 3, sumOpenInterest="9" * 140_000)
    fake.inject(fault, underlying="BTC", expiry="251226")
    result = once(settings)
    rejection = assert_only_that_row_rejected(settings, result, "sumOpenInterest")
    assert rejection["symbol"] == original[0]
    assert stored(settings.database.url) == served(fake) - {original}
    assert_a_clean_once_stores_everything(settings, fake)


def test_a_symbol_with_a_9000_character_strike_rejects_only_that_row(
    settings: Settings, fake: FakeExchange
) -> None:
    symbol = f"BTC-251226-{'1' * 9000}-C"
    extra = {
        "symbol": symbol,
        "sumOpenInterest": "1",
        "sumOpenInterestUsd": "1",
        "timestamp": str(RECENT_MINUTE_MS),
    }
    fake.inject(malformed_rows(extra), underlying="BTC", expiry="251226")
    result = once(settings)
    rejection = assert_only_that_row_rejected(settings, result, "symbol")
    assert len(rejection["symbol"]) < 200  # the journal keeps a bounded prefix, not 9,000 characters
    assert stored(settings.database.url) == served(fake)
    assert_a_clean_once_stores_everything(settings, fake)


def test_a_row_of_another_pair_is_rejected_and_its_own_pairs_value_is_stored(
    settings: Settings, fake: FakeExchange
) -> None:
    own = fake.rows_for("BTC", "260102")[0]
    foreign = {**own, "sumOpenInterest": "123456.78", "sumOpenInterestUsd": "99999999.5"}
    fake.inject(malformed_rows(foreign), underlying="BTC", expiry="251226")
    result = once(settings)
    rejection = assert_only_that_row_rejected(settings, result, "symbol")
    assert rejection["symbol"] == own["symbol"]
    assert "not of the pair asked for" in rejection["reason"]
    assert "not of the pair asked for" in result.stderr
    assert row_key(own) in stored(settings.database.url)
    assert stored(settings.database.url) == served(fake)
    assert_a_clean_once_stores_everything(settings, fake)


@pytest.mark.parametrize(
    "timestamp",
    [str(RECENT_MINUTE_MS // 1000), str(RECENT_MINUTE_MS + 86_400_000 + 3_600_000)],
    ids=["seconds-for-milliseconds", "a-day-ahead"],
)
def test_a_timestamp_far_from_our_clock_rejects_only_that_row(
    settings: Settings, fake: FakeExchange, timestamp: str
) -> None:
    fault, original = answer_with_row_changed(fake, 0, timestamp=timestamp)
    fake.inject(fault, underlying="BTC", expiry="251226")
    result = once(settings)
    assert_only_that_row_rejected(settings, result, "timestamp")
    assert stored(settings.database.url) == served(fake) - {original}
    outside = (
        "SELECT count(*) FROM open_interest"
        " WHERE ts < now() - interval '2 days' OR ts > now() + interval '10 minutes'"
    )
    assert query(settings.database.url, outside) == [(0,)]
    assert_a_clean_once_stores_everything(settings, fake)


def test_a_symbol_expiring_in_the_year_2000_is_rejected(settings: Settings, fake: FakeExchange) -> None:
    extra = {
        "symbol": "BTC-000101-100000-C",
        "sumOpenInterest": "1",
        "sumOpenInterestUsd": "100000",
        "timestamp": str(RECENT_MINUTE_MS),
    }
    fake.inject(malformed_rows(extra), underlying="BTC", expiry="251226")
    result = once(settings)
    rejection = assert_only_that_row_rejected(settings, result, "symbol")
    assert rejection["symbol"] == "BTC-000101-100000-C"
    in_2000 = "SELECT count(*) FROM open_interest WHERE expiry = '2000-01-01'"
    assert query(settings.database.url, in_2000) == [(0,)]
    assert stored(settings.database.url) == served(fake)
    assert_a_clean_once_stores_everything(settings, fake)


@pytest.mark.parametrize(
    ("code", "msg", "journalled_code"),
    [
        (-1121, "Invalid symbol\x00 BTC-251226", -1121),
        (-1121, "Invalid symbol \ud800 BTC-251226", -1121),
        (10**30, "Invalid symbol BTC-251226", None),
    ],
    ids=["nul-in-msg", "lone-surrogate-in-msg", "code-10**30"],
)
def test_an_exchange_error_with_hostile_text_or_code_fails_only_that_pair_and_is_journalled(
    settings: Settings, fake: FakeExchange, code: int, msg: str, journalled_code: int | None
) -> None:
    fake.inject(http_error(400, code, msg), underlying="BTC", expiry="251226", times=None)
    result = once(settings)
    assert result.returncode == 1
    [failure] = [line for line in result.stderr.splitlines() if "this scope failed this cycle" in line]
    assert " ERROR " in failure and "BTC 251226: openInterest BTC 251226: HTTP 400" in failure
    assert "Invalid symbol" in failure  # what the exchange said, for the person reading the log
    assert "\x00" not in failure and "\ud800" not in failure
    run = run_of(settings.database.url)
    assert (run["status"], run["http_status"], run["error_code"]) == ("failed", 400, journalled_code)
    assert run["error_message"].startswith("Invalid symbol")
    assert "\x00" not in run["error_message"] and "\ud800" not in run["error_message"]
    assert stored(settings.database.url) == served(fake) - rows_of(fake)
    assert spooled(settings.spool.dir) == []  # the journal row was taken: nothing stuck in the spool
    assert_a_clean_once_stores_everything(settings, fake)


# ---------------------------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize(
    "fault",
    [
        http_error(418, -1003, "Way too many requests; IP banned.", retry_after=999_999_999_999),
        http_error(418, -1003, "Way too many requests; IP(127.0.0.1) banned until 99999999999999999."),
    ],
    ids=["retry-after-999999999999", "banned-until-17-digits"],
)
def test_a_ban_claimed_past_three_days_is_taken_as_three_days(
    settings: Settings, fake: FakeExchange, fault: Fault
) -> None:
    fake.inject(fault, underlying="BTC", expiry="251226")
    result = once(settings)
    assert result.returncode == 1
    assert "out of range" not in result.stderr
    assert "longer than the 3 days it documents as the longest; taking 3 days" in result.stderr
    assert "binance banned this IP (HTTP 418)" in result.stderr
    ban_file = settings.spool.dir / "exchange-ban.json"
    banned_until = json.loads(ban_file.read_text())["banned_until"]
    assert time.time() < banned_until <= time.time() + THREE_DAYS_S + 60
    assert run_of(settings.database.url)["status"] == "failed"
    assert stored(settings.database.url) == served(fake) - rows_of(fake)  # the others were already sent
    ban_file.unlink()
    assert_a_clean_once_stores_everything(settings, fake)


# The HTTP date is 4 s ahead when written: the subprocess takes a second or so to send its first request and
# the date's whole seconds round down, so some 1.5-3 s are left to wait.
RETRY_AFTER: dict[str, Callable[[], str]] = {
    "http-date": lambda: format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True),
    "decimal-seconds": lambda: "1.5",
}


def resume_at(retry_after: str, sent_at: float) -> float:
    """Epoch seconds at which ``Retry-After``, answered to a request sent at ``sent_at``, says to resume."""
    try:
        return sent_at + float(retry_after)
    except ValueError:
        return parsedate_to_datetime(retry_after).timestamp()


@pytest.mark.parametrize("retry_after", list(RETRY_AFTER.values()), ids=list(RETRY_AFTER))
def test_a_429_is_waited_out_as_told_and_the_pair_succeeds_in_the_same_run(
    settings: Settings, fake: FakeExchange, retry_after: Callable[[], str]
) -> None:
    header = retry_after()
    too_many = Fault(
        status=429, json_body={"code": -1003, "msg": "Too many requests."}, headers={"Retry-After": header}
    )
    fake.inject(too_many, underlying="BTC", expiry="251226")
    result = once(settings)
    assert result.returncode == 0, result.stderr
    assert "BTC 251226: rate limited (HTTP 429): sending nothing until" in result.stderr
    first, second = pair_requests(fake, BTC)
    wall = time.time() - time.monotonic()  # Request.at is monotonic
    assert second.at - first.at >= 0.9
    assert second.at + wall >= resume_at(header, first.at + wall) - 0.05  # not before the moment it was told
    assert run_of(settings.database.url)["status"] == "ok"
    assert stored(settings.database.url) == served(fake)
    assert_a_clean_once_stores_everything(settings, fake)


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-MBX-USED-WEIGHT-0M", "5"), ("X-MBX-USED-WEIGHT-1M", "\u00b2")],
    ids=["zero-minute-window", "superscript-two"],
)
def test_a_hostile_weight_header_is_ignored_and_said_once(
    settings: Settings, fake: FakeExchange, name: str, value: str
) -> None:
    fake.inject(Fault(headers={name: value}), times=None)  # on every pair's answer: said once all the same
    result = once(settings)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ignoring binance's weight header") == 1
    assert stored(settings.database.url) == served(fake)
    assert_a_clean_once_stores_everything(settings, fake)


def test_a_body_dripped_a_byte_a_second_fails_only_that_pair_within_the_cycle(
    settings: Settings, fake: FakeExchange
) -> None:
    fake.inject(Fault(drip_s=1.0), underlying="BTC", expiry="251226", times=None)
    started = time.monotonic()
    result = once(settings, OI_EXCHANGE_TIMEOUT_S="1", OI_COLLECT_INTERVAL_S="10", OI_COLLECT_OFFSET_S="0")
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert "openInterest BTC 251226: timed out (no whole answer within 1.0 s)" in result.stderr
    [failure] = [line for line in result.stderr.splitlines() if "this scope failed this cycle" in line]
    assert " ERROR " in failure and "BTC 251226" in failure
    assert run_of(settings.database.url)["status"] == "failed"
    assert stored(settings.database.url) == served(fake) - rows_of(fake)
    assert_a_clean_once_stores_everything(settings, fake)


def test_sigterm_while_one_pair_drips_stores_every_pair_fetched_so_far(
    settings: Settings, fake: FakeExchange
) -> None:
    fake.inject(Fault(drip_s=1.0), underlying="BTC", expiry="251226", times=None)
    daemon = start_daemon(
        settings,
        fake,
        OI_BINANCE_UNDERLYINGS="BTC,ETH",
        OI_COLLECT_INTERVAL_S="60",
        OI_EXCHANGE_TIMEOUT_S="30",
    )
    try:
        time.sleep(1.0)  # the other pairs are in; BTC 251226 drips on
        stopped_at = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        daemon.kill()
    assert time.monotonic() - stopped_at < 10
    assert daemon.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert re.search(r"BTC 251226: (timed out \(no whole answer|no answer by the cycle's deadline)", stderr)
    assert stored(settings.database.url) == served(fake) - rows_of(fake)
    assert run_of(settings.database.url)["status"] == "failed"


# ---------------------------------------------------------------------------------------------- the spool


def format_1(record: OpenInterest, **changes: object) -> bytes:
    """A format-1 (pre-checksum) spool file holding ``record``, with some of its fields changed."""
    names = list(OpenInterest.__dataclass_fields__)
    values = as_values(record)
    for name, value in changes.items():
        values[names.index(name)] = value
    return json.dumps({"format": 1, "runs": [], "records": [values]}).encode()


def checksum_broken(record: OpenInterest) -> bytes:
    data = bytearray(encode(Batch([], [record])))
    data[-3] = ord("7") if data[-3] != ord("7") else ord("8")  # one byte of the payload, after the header
    return bytes(data)


SPOOL_FILES: dict[str, Callable[[OpenInterest], bytes]] = {
    "a-json-list": lambda record: b"[]",
    "a-json-object-of-the-wrong-shape": lambda record: b'{"format": 1, "runs": {}, "records": 5}',
    "strike-abc": lambda record: format_1(record, strike="abc"),
    "symbol-null": lambda record: format_1(record, symbol=None),
    "checksum-mismatch": checksum_broken,
    "random-bytes": lambda record: random.Random(22).randbytes(4096),
}


@pytest.mark.parametrize("content", list(SPOOL_FILES.values()), ids=list(SPOOL_FILES))
def test_an_unreadable_spool_file_is_set_aside_and_everything_else_is_stored(
    settings: Settings, fake: FakeExchange, content: Callable[[OpenInterest], bytes]
) -> None:
    settings.spool.dir.mkdir(parents=True)
    (settings.spool.dir / FIRST_SPOOL_FILE).write_bytes(content(spooled_record(fake)))
    result = once(settings)
    assert result.returncode == 0, result.stderr
    assert f"spooled batch {settings.spool.dir / FIRST_SPOOL_FILE} is unreadable" in result.stderr
    assert (settings.spool.dir / "unreadable" / FIRST_SPOOL_FILE).exists()
    [rejection] = rejections(settings.database.url, "spool")
    assert rejection["field"] == "file" and FIRST_SPOOL_FILE in rejection["reason"]
    assert stored(settings.database.url) == served(fake)  # nothing of the file, all of the exchange
    assert spooled(settings.spool.dir) == []
    assert_a_clean_once_stores_everything(settings, fake)


def test_a_spooled_row_the_database_refuses_is_set_aside_and_the_rest_is_stored(
    settings: Settings, fake: FakeExchange
) -> None:
    good = [spooled_record(fake, index) for index in range(4)]
    bad = replace(spooled_record(fake, 5), open_interest=Decimal("9" * 140_000))
    settings.spool.dir.mkdir(parents=True)
    (settings.spool.dir / FIRST_SPOOL_FILE).write_bytes(
        encode(Batch([], [good[0], good[1], bad, good[2], good[3]]))
    )
    result = once(settings)
    assert result.returncode == 0, result.stderr
    assert f"the database refused {bad.symbol}" in result.stderr
    earlier = {row_key(row) for row in fake.rows_for("ETH", "251226", EARLIER_MINUTE_MS)[:4]}
    assert stored(settings.database.url) == served(fake) | earlier
    [refused_file] = (settings.spool.dir / "refused").glob("*.refused.jsonl")
    [line] = refused_file.read_text().splitlines()
    assert json.loads(line)["values"][:2] == ["binance", bad.symbol]
    [rejection] = rejections(settings.database.url, "database")
    assert (rejection["symbol"], rejection["underlying"]) == (bad.symbol, "ETH")
    assert spooled(settings.spool.dir) == []
    again = once(settings)
    assert again.returncode == 0, again.stderr
    assert stored(settings.database.url) == served(fake) | earlier
    assert spooled(settings.spool.dir) == []


def test_an_unusable_spool_directory_sends_the_rows_straight_to_the_database(
    settings: Settings, fake: FakeExchange, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At start a spool directory that cannot be used is exit 2 (test_cli); one that stops being usable while
    the collector runs sends the rows straight to the database."""
    a_file = tmp_path / "afile"
    a_file.write_text("not a directory\n")
    pointed = replace(settings, binance=replace(settings.binance, underlyings=("BTC", "ETH")))
    store = Store(PostgresSink(make_engine(settings.database.url)), Spool(a_file / "spool", 10**9))
    with caplog.at_level(logging.ERROR):
        report = asyncio.run(collect_once(pointed, store, ExchangeGate()))
    store.sink.engine.dispose()
    assert report.ok, report.summary()
    [line] = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert f"spool directory {a_file / 'spool'} cannot be used" in line
    assert stored(settings.database.url) == served(fake)
    assert a_file.read_text() == "not a directory\n"
