"""The real command line, end to end: `oi-collector` subprocesses against the fake exchange and PostgreSQL."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from collector.cli import render_settings
from collector.config import BinanceSettings, DatabaseSettings, Settings, load_settings
from tests.conftest import REPO, advance_minutes, cli_env, run_cli, start_daemon
from tests.fake_exchange import RECENT_MINUTE_MS, FakeExchange, html_page

MINUTE = RECENT_MINUTE_MS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def query(url: str, sql: str) -> list[tuple]:
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as connection:
        return connection.execute(sql).fetchall()


def stored(url: str) -> set[tuple[str, str, str, str]]:
    rows = query(
        url,
        "SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint::text, open_interest::text,"
        " open_interest_usd::text FROM open_interest",
    )
    return {tuple(row) for row in rows}  # type: ignore[misc]


def served(fake: FakeExchange, minute_ms: int | None = None) -> set[tuple[str, str, str, str]]:
    return {
        (row["symbol"], row["timestamp"], row["sumOpenInterest"], row["sumOpenInterestUsd"])
        for row in fake.all_rows(minute_ms)
    }


def point_at(settings: Settings, url: str) -> Settings:
    return replace(settings, database=DatabaseSettings(url=url))


def test_migrate_then_once_stores_the_fakes_rows_value_for_value(
    settings: Settings, fake: FakeExchange, empty_database_url: str
) -> None:
    fake.minute_ms = MINUTE
    env = cli_env(point_at(settings, empty_database_url))
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    once = run_cli("once", env=env)
    assert once.returncode == 0, once.stderr
    assert stored(empty_database_url) == served(fake)
    summary = once.stderr.strip().splitlines()[-1]
    pairs, rows = len(fake.pairs()), len(served(fake))
    assert f"{pairs} scopes ok, 0 failed (binance {pairs}/{pairs}); {rows} rows stored" in summary


def test_a_second_once_in_the_same_minute_adds_no_rows(settings: Settings, fake: FakeExchange) -> None:
    fake.minute_ms = MINUTE
    env = cli_env(settings)
    assert run_cli("once", env=env).returncode == 0
    again = run_cli("once", env=env)
    assert again.returncode == 0
    assert f"(0 new or changed, {len(served(fake))} unchanged)" in again.stderr
    assert query(settings.database.url, "SELECT count(*) FROM open_interest") == [(len(served(fake)),)]


def test_once_exits_1_when_a_pair_fails_and_keeps_the_others(settings: Settings, fake: FakeExchange) -> None:
    fake.minute_ms = MINUTE
    fake.inject(html_page(502), underlying="BTC", times=None)
    result = run_cli("once", env=cli_env(settings))
    assert result.returncode == 1
    assert "HTTP 502 with an HTML page" in result.stderr
    others = {row for row in served(fake) if not row[0].startswith("BTC-")}
    assert others <= stored(settings.database.url)


def test_a_config_error_exits_2_before_connecting_anywhere(
    settings: Settings, fake: FakeExchange, tmp_path: Path
) -> None:
    config = tmp_path / "collector.toml"
    config.write_text("[collect]\ninterval_s = -5\n")
    result = run_cli("once", "--config", str(config), env=cli_env(settings))
    assert result.returncode == 2
    assert f"[collect] interval_s in {config}: must be greater than 0" in result.stderr
    assert fake.requests == []


def test_a_bad_env_var_names_itself(settings: Settings, fake: FakeExchange) -> None:
    result = run_cli("once", env=cli_env(settings, OI_BINANCE_EXPIRIES="2512"))
    assert result.returncode == 2
    assert "env var OI_BINANCE_EXPIRIES" in result.stderr
    assert fake.requests == []


def test_check_config_prints_the_resolved_settings_with_the_password_masked(settings: Settings) -> None:
    env = cli_env(settings)
    env["OI_DATABASE_URL"] = "postgresql://collector:s3cret@db.example:5432/oi"
    result = run_cli("check-config", env=env)
    assert result.returncode == 0
    assert 'url = "postgresql+psycopg://collector:***@db.example:5432/oi"' in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    assert f'base_url = "{settings.binance.base_url}"' in result.stdout


@pytest.mark.parametrize(
    "database",
    [DatabaseSettings(), DatabaseSettings(drop_raw_after_days=400.0)],
    ids=["defaults", "retention set"],
)
def test_check_config_output_reads_back_as_the_same_settings(
    tmp_path: Path, database: DatabaseSettings
) -> None:
    """What check-config prints is a config file: "all" and "never" come back as the None they stand for."""
    settings = Settings(database=database, binance=BinanceSettings(expiries=None))
    path = tmp_path / "resolved.toml"
    path.write_text(render_settings(settings), encoding="utf-8")
    assert load_settings(str(path), {}) == replace(settings, source=str(path))


def test_python_dash_m_collector_is_the_same_command(settings: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "collector", "check-config"],
        env=cli_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "[collect]" in result.stdout


def test_run_migrates_collects_several_cycles_and_exits_0_on_sigterm(
    settings: Settings, fake: FakeExchange, empty_database_url: str
) -> None:
    fake.minute_ms = MINUTE
    daemon = start_daemon(point_at(settings, empty_database_url), fake)
    try:
        minutes = [MINUTE, *advance_minutes(fake, 2)]
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    assert "received SIGTERM: the cycle in flight stops fetching within 5 s and stores what it has" in stderr
    stored_minutes = query(
        empty_database_url,
        "SELECT (extract(epoch FROM ts) * 1000)::bigint, count(*) FROM open_interest GROUP BY 1 ORDER BY 1",
    )
    assert stored_minutes == [(minute, len(served(fake))) for minute in minutes]  # every minute, whole
    assert stderr.count(" scopes ok, 0 failed (binance ") >= 3


def test_json_logs_are_one_object_a_line_with_the_pair(settings: Settings, fake: FakeExchange) -> None:
    fake.minute_ms = MINUTE
    fake.inject(html_page(200), underlying="BTC", expiry="251226", times=None)
    result = run_cli("once", env=cli_env(settings, OI_LOG_FORMAT="json"))
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    [failure] = [line for line in lines if line.get("pair") == "BTC 251226" and line["level"] == "error"]
    assert "HTTP 200 with an HTML page" in failure["message"]
    assert lines[-1]["message"].startswith("cycle ")


def test_the_daemon_serves_metrics_and_health(settings: Settings, fake: FakeExchange) -> None:
    port = free_port()
    fake.minute_ms = MINUTE
    daemon = start_daemon(settings, fake, "--no-migrate", OI_METRICS_PORT=str(port))
    try:
        time.sleep(1.5)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        health = httpx.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
    assert health.status_code == 200 and health.text == "ok\n"
    assert re.search(r'^oi_cycles_total\{outcome="ok"\} [1-9]', metrics, re.MULTILINE)
    assert re.search(r'^oi_scopes_total\{reason="",status="ok",venue="binance"\} [1-9]', metrics, re.M)
    snapshot = re.search(
        r'^oi_last_snapshot_timestamp_seconds\{scope="BTC 251226",venue="binance"\} (\S+)$', metrics, re.M
    )
    assert snapshot is not None and float(snapshot[1]) == MINUTE / 1000
    assert re.search(r'^oi_rows_stored_total\{venue="binance"\} [1-9]', metrics, re.MULTILINE)
    assert "oi_spool_batches 0.0" in metrics
    assert "oi_cycle_duration_seconds_bucket" in metrics and "oi_exchange_used_weight" in metrics
    assert "_created" not in metrics  # no second series per counter that nothing reads


def test_cycles_after_the_first_land_on_the_boundary_plus_the_offset(
    settings: Settings, fake: FakeExchange
) -> None:
    """The first cycle runs at once on start; the later ones on the schedule, not counted from that first."""
    fake.minute_ms = MINUTE
    daemon = start_daemon(settings, fake, OI_COLLECT_INTERVAL_S="3", OI_COLLECT_OFFSET_S="1")
    try:
        time.sleep(9)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
    starts = query(settings.database.url, "SELECT DISTINCT cycle_start FROM collection_runs ORDER BY 1")
    later = [start.timestamp() for (start,) in starts[1:]]
    assert len(later) >= 2
    assert all((moment - 1) % 3 < 0.5 for moment in later), [f"{(moment - 1) % 3:.2f}" for moment in later]


def test_health_fails_when_no_pair_is_stored_for_too_long(settings: Settings, fake: FakeExchange) -> None:
    port = free_port()
    fake.inject(html_page(502), times=None)
    daemon = start_daemon(
        settings, fake, "--no-migrate", OI_METRICS_PORT=str(port), OI_METRICS_HEALTHY_WITHIN_S="1"
    )
    try:
        time.sleep(2.0)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
    assert health.status_code == 503
    assert health.text.startswith("no scope of any venue stored for ")
    failed = r'^oi_scopes_total\{reason="server_error",status="failed",venue="binance"\} [1-9]'
    assert re.search(failed, metrics, re.MULTILINE)


# ---- rough edges (issue 12)


@pytest.mark.parametrize("before", [True, False], ids=["--config before the command", "after it"])
def test_config_is_read_whether_it_comes_before_or_after_the_command(
    settings: Settings, tmp_path: Path, before: bool
) -> None:
    config = tmp_path / "mine.toml"
    config.write_text("[collect]\ninterval_s = 120\n", encoding="utf-8")
    args = ["--config", str(config), "check-config"] if before else ["check-config", "--config", str(config)]
    result = run_cli(*args, env=cli_env(settings))
    assert result.returncode == 0, result.stderr
    assert "interval_s = 120" in result.stdout
    assert f"# resolved from {config}" in result.stdout


def test_a_spool_directory_that_cannot_be_made_is_exit_2_naming_the_key(
    settings: Settings, tmp_path: Path, fake: FakeExchange
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    result = run_cli("once", env=cli_env(settings, OI_SPOOL_DIR=str(blocker / "spool")))
    assert result.returncode == 2
    assert f"spool.dir (OI_SPOOL_DIR) = {blocker / 'spool'} cannot be used" in result.stderr
    assert "Traceback" not in result.stderr and fake.requests == []


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"OI_OKX_BASE_URL": "http://127.0.0.1:99999"}, "env var OI_OKX_BASE_URL"),
        ({"OI_BINANCE_BASE_URL": "https://eapi.binance .com"}, "env var OI_BINANCE_BASE_URL"),
    ],
)
def test_bad_values_are_exit_2_naming_the_key_never_a_traceback(
    settings: Settings, fake: FakeExchange, env: dict[str, str], names: str
) -> None:
    result = run_cli("once", env=cli_env(settings, **env))
    assert result.returncode == 2
    assert names in result.stderr and "Traceback" not in result.stderr


def test_a_wrong_type_in_the_file_is_exit_2_through_the_command_line(
    settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "typed.toml"
    config.write_text('[collect]\ninterval_s = "60"\n', encoding="utf-8")
    result = run_cli("once", "--config", str(config), env=cli_env(settings))
    assert result.returncode == 2
    assert f"[collect] interval_s in {config}: must be a number, not the string" in result.stderr
