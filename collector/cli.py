"""``oi-collector``: argument parsing and exit codes; the work happens elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from collector.config import KEYS, Settings, load_settings
from collector.errors import ConfigError, SinkError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
log = logging.getLogger("collector")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="TOML config file (default: $OI_CONFIG, then config/collector.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="oi-collector",
        description="Collects Binance options open interest into TimescaleDB / PostgreSQL.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", parents=[common], help="bring the database schema to the newest revision")
    commands.add_parser("once", parents=[common], help="run one collection cycle, then exit (0 ok, 1 failed)")
    run = commands.add_parser("run", parents=[common], help="migrate, then collect on the schedule")
    run.add_argument("--no-migrate", action="store_true", help="do not migrate before collecting")
    commands.add_parser("check-config", parents=[common], help="print the resolved configuration")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        log.error("configuration error: %s", error)
        return EXIT_CONFIG
    try:
        return COMMANDS[args.command](settings, args)
    except SinkError as error:
        log.error("%s", error)
        return EXIT_FAILED


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from collector.migrate import migrate

    migrate(settings)
    log.info("database schema is up to date (%s)", settings.database.masked_url())
    return EXIT_OK


def cmd_once(settings: Settings, _args: argparse.Namespace) -> int:
    from collector.cycle import collect_once
    from collector.sink.postgres import PostgresSink, make_engine

    engine = make_engine(settings.database.url)
    try:
        report = asyncio.run(collect_once(settings, PostgresSink(engine)))
    finally:
        engine.dispose()
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from collector.schedule import run_daemon
    from collector.sink.postgres import PostgresSink, make_engine

    if not args.no_migrate:
        cmd_migrate(settings, args)
    engine = make_engine(settings.database.url)
    try:
        return run_daemon(settings, PostgresSink(engine))
    finally:
        engine.dispose()


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
        if (key.section, key.name) == ("database", "url"):
            value = settings.database.masked_url()
        lines.append(f"{key.name} = {_toml_value(value)}")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    if value is None:
        return '"all"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def configure_logging() -> None:
    formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


COMMANDS = {"migrate": cmd_migrate, "once": cmd_once, "run": cmd_run, "check-config": cmd_check_config}
