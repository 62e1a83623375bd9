"""The deployment files (docker-compose.yml, Dockerfile, .dockerignore) are wired the way the README says.

Read as text and YAML only: no database, no Docker engine. The one test that runs `docker compose config` is
skipped when no compose binary that works without an engine is on PATH.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from collector.config import VENUES

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DATA_DIR = "/var/lib/postgresql/data"
EXACT_TIMESCALE_TAG = re.compile(r"timescale/timescaledb:(\d+)\.(\d+)\.(\d+)-pg(\d+)")
SLIM_PYTHON = re.compile(r"python:3\.(\d+)(\.\d+)?-slim(-[a-z]+)?")


# docker-compose.yml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def timescaledb(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["timescaledb"]
    return service


@pytest.fixture(scope="module")
def collector(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["collector"]
    return service


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two Compose spellings it uses."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(name): str(value) for name, value in raw.items()}


def host_ip(port: str | int | dict[str, Any]) -> str | None:
    """The host address a published port binds to, None when it binds every interface."""
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).rsplit("/", 1)[0].split(":")
    return ":".join(parts[:-2]) if len(parts) >= 3 else None


def test_compose_file_uses_the_compose_spec_without_a_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    assert set(compose["services"]) == {"timescaledb", "collector"}


def test_timescaledb_image_is_pinned_to_an_exact_version(timescaledb: dict[str, Any]) -> None:
    image = timescaledb["image"]
    assert EXACT_TIMESCALE_TAG.fullmatch(image), f"{image!r} is not timescale/timescaledb:X.Y.Z-pgNN"
    assert "latest" not in image


def test_timescaledb_password_and_database_come_from_the_environment(timescaledb: dict[str, Any]) -> None:
    env = environment(timescaledb)
    assert env["POSTGRES_DB"] == "oi"
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:-[^}]+\}", env["POSTGRES_PASSWORD"])


def test_timescaledb_data_lives_in_a_declared_named_volume(
    compose: dict[str, Any], timescaledb: dict[str, Any]
) -> None:
    mounts: dict[str, str] = {}
    for volume in timescaledb["volumes"]:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    source = mounts.get(DATA_DIR, "")
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", source), f"{DATA_DIR} is not on a named volume"
    assert source in (compose.get("volumes") or {}), f"volume {source!r} is not declared at top level"


def test_timescaledb_healthcheck_asks_pg_isready_for_the_oi_database(timescaledb: dict[str, Any]) -> None:
    check = timescaledb["healthcheck"]
    test = check["test"]
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), test
        command = " ".join(test[1:])
    else:
        command = test
    assert command.startswith("pg_isready")
    assert "-U postgres" in command
    assert "-d oi" in command
    assert not check.get("disable", False)


def test_every_published_port_binds_loopback_only(compose: dict[str, Any]) -> None:
    published = [
        (name, port) for name, service in compose["services"].items() for port in service.get("ports", [])
    ]
    assert published, "timescaledb should be reachable from the host for psql"
    for name, port in published:
        assert host_ip(port) == "127.0.0.1", f"{name} publishes {port!r} beyond 127.0.0.1"


def test_collector_builds_from_the_repository(collector: dict[str, Any]) -> None:
    build = collector["build"]
    context = build["context"] if isinstance(build, dict) else build
    assert context == "."


def test_collector_waits_for_a_healthy_database(collector: dict[str, Any]) -> None:
    assert collector["depends_on"] == {"timescaledb": {"condition": "service_healthy"}}


def test_collector_restarts_unless_stopped_and_gets_time_to_finish_a_cycle(collector: dict[str, Any]) -> None:
    assert collector["restart"] == "unless-stopped"
    grace = re.fullmatch(r"(\d+)s", str(collector["stop_grace_period"]))
    assert grace, collector["stop_grace_period"]
    assert int(grace.group(1)) >= 30


def test_collector_points_at_the_timescaledb_service(
    collector: dict[str, Any], timescaledb: dict[str, Any]
) -> None:
    env = environment(collector)
    assert env["OI_DATABASE_TIMESCALEDB"] == "require"
    url = make_url(env["OI_DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "timescaledb"
    assert url.port in (None, 5432)
    assert url.database == environment(timescaledb)["POSTGRES_DB"]
    assert url.username == "postgres"
    # The same ${POSTGRES_PASSWORD:-default} expression on both sides, so the defaults cannot drift apart.
    assert url.password == environment(timescaledb)["POSTGRES_PASSWORD"]
    assert {name for name in env if name.startswith("OI_")} <= {
        "OI_DATABASE_URL", "OI_DATABASE_TIMESCALEDB", "OI_VENUES_ENABLED", "OI_METRICS_HOST"
    }  # fmt: skip
    assert tuple(env["OI_VENUES_ENABLED"].split(",")) == VENUES  # every venue this version collects


def test_every_service_rotates_its_logs(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        logging = service.get("logging", {})
        assert logging.get("driver", "json-file") == "json-file", name
        options = logging.get("options", {})
        assert re.fullmatch(r"\d+[kmg]", str(options.get("max-size", ""))), f"{name}: no max-size"
        assert int(options.get("max-file", 0)) >= 2, f"{name}: no max-file"


def compose_command() -> list[str] | None:
    """A compose CLI that can validate a file without a Docker engine: docker-compose, else the plugin."""
    for command in (["docker-compose"], ["docker", "compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return command
    return None


def run_compose_config(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no docker-compose binary and no `docker compose` plugin on PATH")
    env = {name: value for name, value in os.environ.items() if name != "POSTGRES_PASSWORD"}
    if password is not None:
        env["POSTGRES_PASSWORD"] = password
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_config_validates() -> None:
    result = run_compose_config("-q")
    assert result.returncode == 0, result.stderr


def test_compose_config_puts_one_password_into_both_services() -> None:
    result = run_compose_config(password="s3cret-pw")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert environment(services["timescaledb"])["POSTGRES_PASSWORD"] == "s3cret-pw"
    assert make_url(environment(services["collector"])["OI_DATABASE_URL"]).password == "s3cret-pw"


# Dockerfile


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per Dockerfile instruction, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending = f"{pending} {stripped}" if pending else stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, arguments = pending.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"{arguments} is not the exec (JSON array) form"
    return [str(item) for item in value]


def env_vars(steps: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, arguments in steps:
        if keyword == "ENV":
            for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S+)", arguments):
                found[match.group(1)] = match.group(2).strip('"')
    return found


def test_every_stage_is_a_slim_python_image_with_a_pinned_tag() -> None:
    images = [arguments.split()[0] for keyword, arguments in instructions() if keyword == "FROM"]
    assert images
    for image in images:
        match = SLIM_PYTHON.fullmatch(image)
        assert match, f"{image!r} is not python:3.N[.P]-slim[-release]"
        assert int(match.group(1)) >= 11


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]
    assert users, "the final stage has no USER line"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_the_image_runs_the_daemon_and_accepts_other_subcommands() -> None:
    steps = final_stage()
    entrypoint = [exec_form(arguments) for keyword, arguments in steps if keyword == "ENTRYPOINT"]
    cmd = [exec_form(arguments) for keyword, arguments in steps if keyword == "CMD"]
    command = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    assert command == ["oi-collector", "run"]


def test_the_image_installs_the_project_without_a_pip_cache() -> None:
    runs = [arguments for keyword, arguments in instructions() if keyword == "RUN"]
    assert any(re.search(r"pip install --no-cache-dir \.(\s|$)", run) for run in runs)


def test_the_final_stage_leaves_no_build_tools_behind() -> None:
    text = " ".join(arguments for keyword, arguments in final_stage() if keyword == "RUN")
    for tool in ("apt-get install", "build-essential", "gcc", "libpq-dev", "pip install"):
        assert tool not in text


def test_the_image_reads_the_shipped_config_and_logs_unbuffered() -> None:
    steps = final_stage()
    env = env_vars(steps)
    assert env.get("PYTHONUNBUFFERED") == "1"
    copies = [arguments.split() for keyword, arguments in steps if keyword == "COPY"]
    destinations = [words[-1] for words in copies if words[-2] == "config/collector.toml"]
    assert destinations, "config/collector.toml is not copied into the final stage"
    assert env.get("OI_CONFIG") == destinations[-1]
    # config.py rejects unknown OI_* variables, so the image must set no others.
    assert {name for name in env if name.startswith("OI_")} == {"OI_CONFIG", "OI_SPOOL_DIR"}


def test_the_spool_lives_on_a_named_volume_owned_by_the_collector(compose: dict[str, Any]) -> None:
    env = dict(re.findall(r"(OI_\w+)=(\S+)", DOCKERFILE.read_text()))
    assert f"install -d -o 10001 -g 10001 {env['OI_SPOOL_DIR']}" in DOCKERFILE.read_text()
    assert f"collector-spool:{env['OI_SPOOL_DIR']}" in compose["services"]["collector"]["volumes"]
    assert "collector-spool" in compose["volumes"]


def test_dockerignore_keeps_secrets_out_and_what_the_build_needs_in() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern.lstrip("/")) for pattern in patterns)

    for needed in (
        "pyproject.toml",
        "README.md",
        "collector",
        "migrations",
        "config",
        "config/collector.toml",
    ):
        assert not ignored(needed), f".dockerignore drops {needed}, which the image build needs"
    for secret in (".git", ".venv", ".env"):
        assert ignored(secret), f".dockerignore lets {secret} into the build context"


def test_the_collector_healthcheck_asks_healthz(collector: dict[str, Any]) -> None:
    test = collector["healthcheck"]["test"]
    assert test[0] == "CMD" and "http://127.0.0.1:9108/healthz" in " ".join(test)


def test_metrics_listen_on_every_interface_of_the_container_for_prometheus(collector: dict[str, Any]) -> None:
    """The collector's default is 127.0.0.1 (a laptop exposes nothing); in compose, a Prometheus container on
    the same network must reach it, and the healthcheck asks from inside the container."""
    assert environment(collector)["OI_METRICS_HOST"] == "0.0.0.0"
    assert "http://127.0.0.1:9108/healthz" in " ".join(collector["healthcheck"]["test"])
    assert "ports" not in collector  # not published on the host
