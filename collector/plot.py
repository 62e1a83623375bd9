"""PNG pictures of stored open interest; needs matplotlib (``pip install 'oi-collector[plot]'``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num

# Figure, not pyplot: no global figure registry and no GUI backend, so nothing outlives the call.
from matplotlib.figure import Figure

from collector.sink.postgres import StrikeBook

CALLS, PUTS, MARK = "#2a9d8f", "#e76f51", "#444444"
# Each venue's shade of the call and put colours, so that stacked venues stay calls and puts at a glance.
SHADES = {
    "binance": (CALLS, PUTS),
    "deribit": ("#1b6b61", "#a8432a"),
    "okx": ("#7fcdc2", "#f4a68c"),
    "bybit": ("#bfe6e0", "#f9d3c6"),
}
DPI = 100
MAX_STRIKE_LABELS = 60  # beyond this the labels overlap; every n-th is shown


def draw_strike_book(book: StrikeBook, out: Path, size: tuple[int, int]) -> None:
    """Calls and puts side by side at every strike, each stacked by venue, the max-pain strike marked."""
    figure, axes = _canvas(size)
    positions = list(range(len(book.strikes)))
    width = 0.42
    call_base = [0.0] * len(positions)
    put_base = [0.0] * len(positions)
    for venue in book.calls:
        call_colour, put_colour = SHADES.get(venue, (CALLS, PUTS))
        calls, puts = _floats(book.calls[venue]), _floats(book.puts[venue])
        axes.bar([p - width / 2 for p in positions], calls, width, bottom=call_base, color=call_colour,
                 label=f"{venue} calls  {_amount(sum(book.calls[venue], Decimal(0)))}")  # fmt: skip
        axes.bar([p + width / 2 for p in positions], puts, width, bottom=put_base, color=put_colour,
                 label=f"{venue} puts  {_amount(sum(book.puts[venue], Decimal(0)))}")  # fmt: skip
        call_base = [base + value for base, value in zip(call_base, calls, strict=True)]
        put_base = [base + value for base, value in zip(put_base, puts, strict=True)]
    if book.max_pain is not None:
        axes.axvline(book.strikes.index(book.max_pain), color=MARK, linestyle="--", linewidth=1.2,
                     label=f"max pain  {_strike(book.max_pain)}")  # fmt: skip
    step = -(-len(book.strikes) // MAX_STRIKE_LABELS)
    labels = [_strike(strike) for strike in book.strikes[::step]]
    axes.set_xticks(positions[::step], labels, rotation=90)
    axes.set_xlim(-0.75, len(book.strikes) - 0.25)
    calls_total, puts_total = book.total_calls, book.total_puts
    ratio = f"{puts_total / calls_total:.2f}" if calls_total else "n/a"
    venues = book.venue or ("every venue" if len(book.calls) > 1 else next(iter(book.calls)))
    axes.set_title(
        f"{book.underlying} {book.expiry:%Y-%m-%d} open interest by strike, {venues},"
        f" {book.snapshot.astimezone(UTC):%Y-%m-%d %H:%M} UTC   (put/call {ratio})"
    )
    axes.set_xlabel("strike (left bar calls, right bar puts)")
    axes.set_ylabel(f"open interest ({book.underlying})")
    axes.legend(loc="upper right", frameon=False)
    axes.margins(y=0.05)
    _save(figure, out)


def draw_history(
    symbol: str, history: Mapping[str, Sequence[tuple[datetime, Decimal]]], out: Path, size: tuple[int, int]
) -> None:
    """One symbol's open interest over time: a line per venue that lists it."""
    figure, axes = _canvas(size)
    side = 0 if symbol.endswith("-C") or "-C-" in symbol else 1  # a call: its part before any settle coin
    start = min(points[0][0] for points in history.values())
    end = max(points[-1][0] for points in history.values())
    for venue, points in history.items():
        colour = SHADES.get(venue, (CALLS, PUTS))[side]
        times = date2num([ts for ts, _ in points])  # type: ignore[no-untyped-call]
        axes.plot(times, _floats([oi for _, oi in points]), color=colour,
                  linewidth=1.4, drawstyle="steps-post", label=venue)  # fmt: skip
    locator = AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    axes.set_title(f"{symbol} open interest, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("open interest (base coin)")
    highest = max(float(oi) for points in history.values() for _, oi in points)
    axes.set_ylim(0, highest * 1.08 or 1)
    if len(history) > 1:
        axes.legend(loc="upper right", frameon=False)
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
