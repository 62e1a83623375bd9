"""collector.schedule.interval_anchor: cycles land on interval boundaries plus the offset, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from collector.schedule import interval_anchor


def _utc(hour: int, minute: int, second: int, microsecond: int = 0) -> datetime:
    return datetime(2025, 12, 26, hour, minute, second, microsecond, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (_utc(12, 34, 56), _utc(12, 34, 10)),  # after the offset: this minute's
        (_utc(12, 34, 5), _utc(12, 33, 10)),  # before the offset: the previous minute's
        (_utc(12, 34, 10), _utc(12, 34, 10)),  # exactly on it: now
        (_utc(12, 34, 10, 1), _utc(12, 34, 10)),
        (_utc(12, 34, 9, 999999), _utc(12, 33, 10)),
        (_utc(12, 34, 59, 999999), _utc(12, 34, 10)),
        (_utc(0, 0, 0), datetime(2025, 12, 25, 23, 59, 10, tzinfo=UTC)),  # across midnight
    ],
)
def test_a_60_s_interval_with_a_10_s_offset_anchors_at_hh_mm_10(now: datetime, expected: datetime) -> None:
    assert interval_anchor(now, 60, 10) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (_utc(12, 34, 56), _utc(12, 30, 10)),
        (_utc(12, 30, 5), _utc(12, 25, 10)),
        (_utc(12, 30, 10), _utc(12, 30, 10)),
        (_utc(12, 35, 9), _utc(12, 30, 10)),
    ],
)
def test_a_300_s_interval_anchors_on_five_minute_boundaries(now: datetime, expected: datetime) -> None:
    assert interval_anchor(now, 300, 10) == expected


def test_a_zero_offset_anchors_on_the_whole_minute() -> None:
    assert interval_anchor(_utc(12, 34, 56, 789), 60, 0) == _utc(12, 34, 0)


def test_a_fractional_offset_is_kept() -> None:
    assert interval_anchor(_utc(12, 34, 56), 60, 2.5) == _utc(12, 34, 2, 500000)


def test_an_hourly_interval_anchors_on_the_hour() -> None:
    assert interval_anchor(_utc(12, 34, 56), 3600, 10) == _utc(12, 0, 10)


def test_the_anchor_is_aware_utc() -> None:
    anchor = interval_anchor(_utc(12, 34, 56), 60, 10)
    assert anchor.tzinfo is UTC


def test_a_now_in_another_time_zone_gives_the_same_utc_anchor() -> None:
    now = datetime(2025, 12, 26, 14, 34, 56, tzinfo=timezone(timedelta(hours=2)))
    anchor = interval_anchor(now, 60, 10)
    assert anchor == _utc(12, 34, 10)
    assert anchor.tzinfo is UTC


@pytest.mark.parametrize(("interval_s", "offset_s"), [(60, 10), (60, 0), (300, 10), (300, 299), (7, 3.25)])
def test_the_anchor_is_the_latest_boundary_at_or_before_now(interval_s: int, offset_s: float) -> None:
    start = _utc(12, 0, 0)
    for step_ms in range(0, 10 * interval_s * 1000, 997):
        now = start + timedelta(milliseconds=step_ms)
        anchor = interval_anchor(now, interval_s, offset_s)
        assert anchor <= now < anchor + timedelta(seconds=interval_s)
        assert (anchor - timedelta(seconds=offset_s) - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(
            seconds=interval_s
        ) == timedelta(0)
