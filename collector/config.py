"""One frozen, typed settings object from the TOML file and the ``OI_*`` env vars (env beats file).

Nothing else in oi-collector reads the environment. Every error names the key and where its value came from.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from collector.errors import ConfigError
from collector.normalise import parse_expiry

DEFAULT_PATH = Path("config/collector.toml")
EMBEDDED = "embedded"  # database.url: a PostgreSQL the collector starts itself, in database.data_dir


def data_home() -> Path:
    """Where oi-collector keeps, by default, what it must not lose (the spool, the embedded database): the
    user's data directory (~/.local/share/oi-collector on Linux), whatever directory a command starts in."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root's home is private: the embedded server, which cannot run as root, runs as a user of its own
        # and must reach its files. The system's place for them (the Docker image's too).
        return Path("/var/lib/oi-collector")
    return platformdirs.user_data_path("oi-collector")


TimescaleMode = Literal["auto", "require", "off"]
_UNDERLYING = re.compile(r"[A-Z0-9]{2,20}")


@dataclass(frozen=True, slots=True)
class ExchangeSettings:
    """How every venue's requests are made."""

    timeout_s: float = 10.0
    max_in_flight: int = 20


VENUES = ("binance", "deribit", "okx", "bybit")


@dataclass(frozen=True, slots=True)
class VenuesSettings:
    enabled: tuple[str, ...] = VENUES


@dataclass(frozen=True, slots=True)
class BinanceSettings:
    base_url: str = "https://eapi.binance.com"
    underlyings: tuple[str, ...] = ("BTC", "ETH", "BNB", "SOL", "XRP", "DOGE")
    expiries: tuple[str, ...] | None = None  # None: every expiry exchangeInfo lists, re-read at each cycle


@dataclass(frozen=True, slots=True)
class DeribitSettings:
    base_url: str = "https://www.deribit.com"
    currencies: tuple[str, ...] = ("BTC", "ETH", "USDC")


@dataclass(frozen=True, slots=True)
class OkxSettings:
    base_url: str = "https://www.okx.com"
    families: tuple[str, ...] = ("BTC-USD", "ETH-USD")


@dataclass(frozen=True, slots=True)
class BybitSettings:
    base_url: str = "https://api.bybit.com"
    base_coins: tuple[str, ...] = ("BTC", "ETH", "SOL")


@dataclass(frozen=True, slots=True)
class CollectSettings:
    interval_s: int = 60
    offset_s: float = 10.0
    shutdown_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = field(default=EMBEDDED, repr=False)  # a URL can hold a password
    data_dir: Path = field(default_factory=lambda: data_home() / "postgres")  # the embedded database's
    timescaledb: TimescaleMode = "auto"
    compress_after_days: float = 7.0
    drop_raw_after_days: float | None = None  # None: keep every raw row

    @property
    def embedded(self) -> bool:
        return self.url == EMBEDDED

    def masked_url(self) -> str:
        if self.embedded:
            return f"the embedded database in {self.data_dir}"
        return make_url(self.url).render_as_string(hide_password=True)


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    dir: Path = field(default_factory=lambda: data_home() / "spool")
    max_mb: float = 512.0

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1_000_000)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    host: str = "127.0.0.1"  # 0.0.0.0 for a Prometheus outside this host (or container)
    port: int = 9108  # 0: no metrics server
    healthy_within_s: float = 300.0


LogFormat = Literal["text", "json"]


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: LogFormat = "text"


@dataclass(frozen=True, slots=True)
class Settings:
    exchange: ExchangeSettings = field(default_factory=ExchangeSettings)
    collect: CollectSettings = field(default_factory=CollectSettings)
    venues: VenuesSettings = field(default_factory=VenuesSettings)
    binance: BinanceSettings = field(default_factory=BinanceSettings)
    deribit: DeribitSettings = field(default_factory=DeribitSettings)
    okx: OkxSettings = field(default_factory=OkxSettings)
    bybit: BybitSettings = field(default_factory=BybitSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    source: str = "defaults"
    warnings: tuple[str, ...] = ()  # what the configuration should change (a renamed key), for the log


# Value parsers: each takes a TOML value or an env string and raises ValueError saying what is wrong.


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value.strip()


def _number(value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return float(value)


def _positive_number(value: object) -> float:
    number = _number(value)
    if not number > 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return number


def _positive_int(value: object) -> int:
    number = _positive_number(value)
    if number != int(number):
        raise ValueError(f"must be a whole number, got {value!r}")
    return int(number)


def _non_negative_number(value: object) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {value!r}")
    return number


# A retention policy drops whole 1-day chunks, and the hourly aggregate's refresh stops a day short of the
# drop age (a refresh over dropped rows would delete those hours from the aggregate too): 2 days is the least
# that leaves that refresh anything to do.
MIN_DROP_RAW_AFTER_DAYS = 2.0


def _drop_after_days(value: object) -> float | None:
    if isinstance(value, str) and value.strip().lower() == "never":
        return None
    try:
        days = _number(value)
    except ValueError:
        raise ValueError(f'must be "never" or a number of days, got {value!r}') from None
    if days < MIN_DROP_RAW_AFTER_DAYS:
        raise ValueError(f'must be "never" or at least {MIN_DROP_RAW_AFTER_DAYS:g} days, got {value!r}')
    return days


def _string_list(value: object) -> list[str]:
    """A TOML array of strings, or a comma list (how env vars spell lists)."""
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise ValueError(f"must be a list of strings or a comma list, got {value!r}")
    if any(not item for item in items):
        raise ValueError(f"has an empty entry: {value!r}")
    return items


def _expiries(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    items = _string_list(value)
    if not items:
        raise ValueError('must be "all" or at least one YYMMDD')
    for item in items:
        parse_expiry(item)
    return tuple(sorted(set(items)))


def _venues(value: object) -> tuple[str, ...]:
    items = [item.lower() for item in _string_list(value)]
    if not items:
        raise ValueError(f"must name at least one venue of: {', '.join(VENUES)}")
    for item in items:
        if item not in VENUES:
            raise ValueError(f"{item!r} is not a venue this version collects; known: {', '.join(VENUES)}")
    return tuple(dict.fromkeys(items))


def _names(
    noun: str, examples: str, pattern: re.Pattern[str] = _UNDERLYING
) -> Callable[[object], tuple[str, ...]]:
    """A parser of upper-case names a venue is asked by (base assets, currencies, families, coins)."""

    def parse(value: object) -> tuple[str, ...]:
        items = [item.upper() for item in _string_list(value)]
        if not items:
            raise ValueError(f"must name at least one {noun}, such as {examples}")
        for item in items:
            if not pattern.fullmatch(item):
                raise ValueError(f"{item!r} is not a {noun} such as {examples}")
        return tuple(dict.fromkeys(items))

    return parse


_underlyings = _names("base asset", "BTC or ETH")
_currencies = _names("currency", "BTC, ETH or USDC")
_families = _names("instrument family", "BTC-USD", re.compile(r"[A-Z0-9]{2,20}-[A-Z0-9]{2,10}"))
_base_coins = _names("base coin", "BTC, ETH or SOL")


def _path(value: object) -> Path:
    """A path; a relative one is made absolute by load_settings (from the file's directory, or the working
    directory for an env var)."""
    return Path(_text(value))


def _base_url(value: object) -> str:
    text = _text(value)
    if any(character.isspace() for character in text):
        raise ValueError(f"must be an http(s) URL without spaces, got {value!r}")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as https://host, got {value!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise ValueError(f"has no valid port (1 to 65535): {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"must be a base URL, without ? or #, got {value!r}")
    return text.rstrip("/")


def _host(value: object) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9.:\-]{1,253}", text):
        raise ValueError(f"must be a host name or IP address such as 127.0.0.1 or 0.0.0.0, got {value!r}")
    return text


def _database_url(value: object) -> str:
    if isinstance(value, str) and value.strip() == EMBEDDED:
        return EMBEDDED
    try:
        url: URL = make_url(_text(value))
    except ArgumentError:
        raise ValueError(
            f'is not a database URL (expected "{EMBEDDED}" or postgresql://user:password@host:port/db)'
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise ValueError(f"must be a postgresql:// URL, got {backend}://")
    if driver not in ("psycopg", "psycopg2", ""):
        raise ValueError(f"driver {driver!r} is not supported; use postgresql+psycopg://")
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _port(value: object) -> int:
    number = _number(value)
    if number != int(number) or not 0 <= number <= 65535:
        raise ValueError(f"must be a port number from 0 (off) to 65535, got {value!r}")
    return int(number)


def _log_format(value: object) -> LogFormat:
    text = _text(value).lower()
    if text not in ("text", "json"):
        raise ValueError(f'must be "text" or "json", got {value!r}')
    return text  # type: ignore[return-value]


def _timescale_mode(value: object) -> TimescaleMode:
    text = _text(value).lower()
    if text not in ("auto", "require", "off"):
        raise ValueError(f'must be "auto", "require" or "off", got {value!r}')
    return text  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class _Key:
    section: str
    name: str
    parse: Callable[[object], Any]
    none_means: str = ""  # how the file spells the value that parses to None

    @property
    def env_var(self) -> str:
        return env_var(self.section, self.name)

    @property
    def old_name(self) -> tuple[str, str] | None:
        """The (section, name) this key had in an earlier version, if it was renamed."""
        return next((old for old, new in RENAMED.items() if new == (self.section, self.name)), None)


KEYS: tuple[_Key, ...] = (
    _Key("venues", "enabled", _venues),
    _Key("binance", "base_url", _base_url),
    _Key("binance", "underlyings", _underlyings),
    _Key("binance", "expiries", _expiries, none_means="all"),
    _Key("deribit", "base_url", _base_url),
    _Key("deribit", "currencies", _currencies),
    _Key("okx", "base_url", _base_url),
    _Key("okx", "families", _families),
    _Key("bybit", "base_url", _base_url),
    _Key("bybit", "base_coins", _base_coins),
    _Key("exchange", "timeout_s", _positive_number),
    _Key("exchange", "max_in_flight", _positive_int),
    _Key("collect", "interval_s", _positive_int),
    _Key("collect", "offset_s", _non_negative_number),
    _Key("collect", "shutdown_timeout_s", _positive_number),
    _Key("database", "url", _database_url),
    _Key("database", "data_dir", _path),
    _Key("database", "timescaledb", _timescale_mode),
    _Key("database", "compress_after_days", _positive_number),
    _Key("database", "drop_raw_after_days", _drop_after_days, none_means="never"),
    _Key("spool", "dir", _path),
    _Key("spool", "max_mb", _positive_number),
    _Key("log", "format", _log_format),
    _Key("metrics", "host", _host),
    _Key("metrics", "port", _port),
    _Key("metrics", "healthy_within_s", _positive_number),
)
ENV_VARS_OUTSIDE_FILE = ("OI_CONFIG",)
# Keys of earlier versions, still read (with one warning naming the new key): old (section, name) → new.
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("exchange", "base_url"): ("binance", "base_url"),
    ("collect", "underlyings"): ("binance", "underlyings"),
    ("collect", "expiries"): ("binance", "expiries"),
}


def env_var(section: str, name: str) -> str:
    return f"OI_{section}_{name}".upper()


def resolve_path(cli_path: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """--config, else $OI_CONFIG, else config/collector.toml; the flag says whether the file must exist."""
    if cli_path:
        return Path(cli_path), True
    if env.get("OI_CONFIG"):
        return Path(env["OI_CONFIG"]), True
    return DEFAULT_PATH, False


def load_settings(cli_path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the file (if any) and the env vars into Settings, or raise ConfigError naming key and source."""
    env = os.environ if env is None else env
    path, required = resolve_path(cli_path, env)
    document = _read_toml(path, required)
    source = str(path) if document is not None else "defaults"
    _reject_unknown_file_keys(document or {}, path)
    _reject_unknown_env_vars(env)
    sections: dict[str, dict[str, Any]] = {key.section: {} for key in KEYS}
    origins: dict[str, str] = {}
    warnings: list[str] = []
    for key in KEYS:
        found = _lookup(key, env, document, path, warnings)
        if found is not None:
            raw, origin, from_file = found
            if from_file:
                _check_file_type(key, raw, origin)
            value = _parse(key, raw, origin)
            if isinstance(value, Path) and not value.is_absolute():
                value = ((path.parent if from_file else Path.cwd()) / value).absolute()
            sections[key.section][key.name] = value
            origins[key.name] = origin
    settings = Settings(
        exchange=ExchangeSettings(**sections["exchange"]),
        collect=CollectSettings(**sections["collect"]),
        venues=VenuesSettings(**sections["venues"]),
        binance=BinanceSettings(**sections["binance"]),
        deribit=DeribitSettings(**sections["deribit"]),
        okx=OkxSettings(**sections["okx"]),
        bybit=BybitSettings(**sections["bybit"]),
        database=DatabaseSettings(**sections["database"]),
        spool=SpoolSettings(**sections["spool"]),
        log=LogSettings(**sections["log"]),
        metrics=MetricsSettings(**sections["metrics"]),
        source=source,
        warnings=tuple(warnings),
    )
    _check_offset(settings.collect, origins)
    return settings


def _lookup(
    key: _Key, env: Mapping[str, str], document: Mapping[str, Any] | None, path: Path, warnings: list[str]
) -> tuple[object, str, bool] | None:
    """The raw value of ``key``, where it came from, and whether that was the file: its env var, else its old
    env var, else the file's key, else the file's old key (env beats file); a value under an old name adds a
    warning naming the new one. None when it is set nowhere."""
    file = document or {}
    candidates = [(key.section, key.name, False)]
    if key.old_name is not None:
        candidates.append((*key.old_name, True))
    found: list[tuple[object, str, bool, bool]] = []  # raw, origin, from the file, under an old name
    for section, name, renamed in candidates:
        if (variable := env_var(section, name)) in env:
            found.append((env[variable], f"env var {variable}", False, renamed))
    for section, name, renamed in candidates:
        table = file.get(section, {})
        if name in table:
            found.append((table[name], f"[{section}] {name} in {path}", True, renamed))
    if not found:
        return None
    new = f"[{key.section}] {key.name} (env var {key.env_var})"
    for index, (_, origin, _, renamed) in enumerate(found):
        if renamed and index == 0:
            warnings.append(f"{origin} is an old name: use {new} instead (read as that key for now)")
        elif renamed:
            warnings.append(f"{origin} is an old name and is ignored: {found[0][1]} sets {new}")
    raw, origin, from_file, _ = found[0]
    return raw, origin, from_file


_NUMBERS = (_positive_number, _positive_int, _non_negative_number, _port, _drop_after_days)
_LISTS = (_venues, _underlyings, _expiries, _currencies, _families, _base_coins)


def _check_file_type(key: _Key, raw: object, where: str) -> None:
    """A file value must have its key's TOML type: a number unquoted, a list as an array (env vars, all text,
    spell them as text); the word that stands for None ("all", "never") is the one string both take."""
    if not isinstance(raw, str) or (key.none_means and raw.strip().lower() == key.none_means):
        return
    if key.parse in _NUMBERS:
        raise ConfigError(
            f"{where}: must be a number, not the string {raw!r}: write {key.name} = {raw.strip()}"
        )
    if key.parse in _LISTS:
        first = raw.split(",")[0].strip()
        raise ConfigError(f'{where}: must be an array such as ["{first}"], not the string {raw!r}')


def _parse(key: _Key, raw: object, where: str) -> Any:
    try:
        return key.parse(raw)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _read_toml(path: Path, required: bool) -> dict[str, Any] | None:
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return None
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None


def _reject_unknown_file_keys(document: Mapping[str, Any], path: Path) -> None:
    known: dict[str, set[str]] = {}
    for section, name in [*((key.section, key.name) for key in KEYS), *RENAMED]:
        known.setdefault(section, set()).add(name)
    for section, table in document.items():
        if section not in known:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(sorted(known))}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table, got {table!r}")
        for name in table:
            if name not in known[section]:
                expected = ", ".join(sorted(known[section]))
                raise ConfigError(f"{path}: unknown key [{section}] {name}; known: {expected}")


def _reject_unknown_env_vars(env: Mapping[str, str]) -> None:
    known = {key.env_var for key in KEYS} | {env_var(*old) for old in RENAMED} | set(ENV_VARS_OUTSIDE_FILE)
    for name in sorted(env):
        if name.startswith("OI_") and name not in known:
            raise ConfigError(f"unknown env var {name}; known: {', '.join(sorted(known))}")


def _check_offset(collect: CollectSettings, origins: Mapping[str, str]) -> None:
    if collect.offset_s >= collect.interval_s:
        where = origins.get("offset_s", "[collect] offset_s (default)")
        interval_from = origins.get("interval_s", "the default")
        raise ConfigError(
            f"{where}: offset_s must be less than interval_s ({collect.interval_s}, from {interval_from}),"
            f" got {collect.offset_s:g}"
        )
