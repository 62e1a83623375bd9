"""PNG pictures of stored open interest; needs matplotlib (``pip install 'oi-collector[plot]'``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

# Figure, not pyplot: no global figure registry and no GUI backend, so nothing outlives the call.
from matplotlib.figure import Figure

from collector.sink.postgres import StrikeBook

CALLS, PUTS, MARK = "#2a9d8f", "#e76f51", "#444444"
DPI = 100
MAX_STRIKE_LABELS = 60  # beyond this the labels overlap; every n-th is shown


def draw_strike_book(book: StrikeBook, out: Path, size: tuple[int, int]) -> None:
    """Calls and puts side by side at every strike, the max-pain strike marked."""
    figure, axes = _canvas(size)
    positions = range(len(book.strikes))
    width = 0.42
    calls, puts = sum(book.calls), sum(book.puts)
    axes.bar([p - width / 2 for p in positions], _floats(book.calls), width, color=CALLS,
             label=f"calls  {_amount(calls)}")  # fmt: skip
    axes.bar([p + width / 2 for p in positions], _floats(book.puts), width, color=PUTS,
             label=f"puts  {_amount(puts)}")  # fmt: skip
    if book.max_pain is not None:
        axes.axvline(book.strikes.index(book.max_pain), color=MARK, linestyle="--", linewidth=1.2,
                     label=f"max pain  {_strike(book.max_pain)}")  # fmt: skip
    step = -(-len(book.strikes) // MAX_STRIKE_LABELS)
    labels = [_strike(strike) for strike in book.strikes[::step]]
    axes.set_xticks(list(positions)[::step], labels, rotation=90)
    axes.set_xlim(-0.75, len(book.strikes) - 0.25)
    ratio = f"{puts / calls:.2f}" if calls else "n/a"
    axes.set_title(
        f"{book.underlying} {book.expiry:%y%m%d} open interest by strike,"
        f" {book.snapshot.astimezone(UTC):%Y-%m-%d %H:%M} UTC   (put/call {ratio})"
    )
    axes.set_xlabel("strike")
    axes.set_ylabel("open interest (contracts)")
    axes.legend(loc="upper right", frameon=False)
    axes.margins(y=0.05)
    _save(figure, out)


def draw_history(
    symbol: str, points: Sequence[tuple[datetime, Decimal]], out: Path, size: tuple[int, int]
) -> None:
    """One symbol's open interest over time."""
    figure, axes = _canvas(size)
    times = [ts for ts, _ in points]
    axes.plot(times, _floats([oi for _, oi in points]), color=CALLS if symbol.endswith("C") else PUTS,
              linewidth=1.4, drawstyle="steps-post")  # fmt: skip
    locator = AutoDateLocator(tz=UTC)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))
    axes.set_title(f"{symbol} open interest, {times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC")
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("open interest (contracts)")
    axes.set_ylim(0, max(float(oi) for _, oi in points) * 1.08 or 1)
    _save(figure, out)


def _canvas(size: tuple[int, int]) -> tuple[Figure, Axes]:
    width, height = size
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    axes.grid(axis="y", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _save(figure: Figure, out: Path) -> None:
    figure.savefig(out, dpi=DPI, format="png")  # no bbox_inches="tight": the PNG is exactly the size asked


def _floats(values: Sequence[Decimal]) -> list[float]:
    return [float(value) for value in values]


def _strike(strike: Decimal) -> str:
    return f"{strike.normalize():f}"


def _amount(value: Decimal) -> str:
    return f"{value:,.2f}"
