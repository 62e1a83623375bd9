"""collector.config: TOML file and OI_* env vars → one frozen Settings; errors name the key and its source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector.config import KEYS, DatabaseSettings, Settings, load_settings, resolve_path
from collector.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "config" / "collector.toml"


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a directory without config/collector.toml, so the default path does not exist."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _write(directory: Path, text: str, name: str = "collector.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _key(env_var: str) -> tuple[str, str]:
    """(section, name) of the key an env var overrides."""
    (key,) = [key for key in KEYS if key.env_var == env_var]
    return key.section, key.name


def _value(settings: Settings, section: str, name: str) -> object:
    return getattr(getattr(settings, section), name)


def _config_error(cli_path: str | None, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        load_settings(cli_path, env)
    return str(raised.value)


FULL_FILE = """
[binance]
base_url = "http://127.0.0.1:8080/"
underlyings = ["btc", "ETH", "BTC"]
expiries = ["251227", "251226", "251227"]

[exchange]
timeout_s = 2.5
max_in_flight = 8

[collect]
interval_s = 300
offset_s = 30

[database]
url = "postgresql://oi:s3cret@db.example:5433/oi"
timescaledb = "require"
"""


# defaults, file values


def test_defaults_when_there_is_no_file_and_no_env(empty_cwd: Path) -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.source == "defaults"


def test_default_settings_are_the_documented_ones() -> None:
    settings = Settings()
    assert settings.venues.enabled == ("binance", "deribit", "okx", "bybit")
    assert settings.binance.base_url == "https://eapi.binance.com"
    assert settings.binance.underlyings == ("BTC", "ETH", "BNB", "SOL", "XRP", "DOGE")
    assert settings.binance.expiries is None
    assert (settings.deribit.base_url, settings.deribit.currencies) == (
        "https://www.deribit.com",
        ("BTC", "ETH", "USDC"),
    )
    assert (settings.okx.base_url, settings.okx.families) == ("https://www.okx.com", ("BTC-USD", "ETH-USD"))
    assert (settings.bybit.base_url, settings.bybit.base_coins) == (
        "https://api.bybit.com",
        ("BTC", "ETH", "SOL"),
    )
    assert (settings.collect.interval_s, settings.collect.offset_s) == (60, 10.0)
    assert settings.database.timescaledb == "auto"


def test_file_values_are_read_and_normalised(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL_FILE)
    settings = load_settings(str(path), {})
    assert settings.binance.base_url == "http://127.0.0.1:8080"
    assert settings.exchange.timeout_s == 2.5
    assert settings.exchange.max_in_flight == 8
    assert settings.binance.underlyings == ("BTC", "ETH")
    assert settings.binance.expiries == ("251226", "251227")
    assert (settings.collect.interval_s, settings.collect.offset_s) == (300, 30.0)
    assert settings.database.url == "postgresql+psycopg://oi:s3cret@db.example:5433/oi"
    assert settings.database.timescaledb == "require"
    assert settings.source == str(path)


def test_keys_missing_from_the_file_keep_their_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "[exchange]\ntimeout_s = 3\n")
    settings = load_settings(str(path), {})
    assert settings.exchange.timeout_s == 3.0
    assert settings.collect == Settings().collect
    assert settings.database == Settings().database


def test_expiries_all_means_every_listed_expiry(tmp_path: Path) -> None:
    assert load_settings(str(_write(tmp_path, '[binance]\nexpiries = "all"\n')), {}).binance.expiries is None


def test_settings_are_frozen(empty_cwd: Path) -> None:
    settings = load_settings(None, {})
    with pytest.raises(AttributeError):
        settings.collect.interval_s = 1  # type: ignore[misc]


# env beats file

ENV_OVERRIDES: list[tuple[str, str, str, object]] = [
    # env var, file value (TOML), env value, expected setting
    ("OI_BINANCE_BASE_URL", '"https://file.example"', "http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
    ("OI_EXCHANGE_TIMEOUT_S", "5", "2.5", 2.5),
    ("OI_EXCHANGE_MAX_IN_FLIGHT", "2", "16", 16),
    ("OI_BINANCE_UNDERLYINGS", '["BTC"]', "eth, sol,ETH", ("ETH", "SOL")),
    ("OI_BINANCE_EXPIRIES", '["251226"]', "all", None),
    ("OI_BINANCE_EXPIRIES", '"all"', "251227, 251226", ("251226", "251227")),
    ("OI_COLLECT_INTERVAL_S", "60", "300", 300),
    ("OI_COLLECT_OFFSET_S", "10", "0", 0.0),
    (
        "OI_DATABASE_URL",
        '"postgresql://file@h/db"',
        "postgresql://env@h2/db2",
        "postgresql+psycopg://env@h2/db2",
    ),
    ("OI_DATABASE_TIMESCALEDB", '"auto"', "off", "off"),
    ("OI_COLLECT_SHUTDOWN_TIMEOUT_S", "30", "5", 5.0),
    ("OI_DATABASE_COMPRESS_AFTER_DAYS", "7", "2.5", 2.5),
    ("OI_DATABASE_DROP_RAW_AFTER_DAYS", '"never"', "90", 90.0),
    ("OI_DATABASE_DROP_RAW_AFTER_DAYS", "90", "never", None),
    ("OI_SPOOL_DIR", '"spool"', "/var/lib/oi/spool", Path("/var/lib/oi/spool")),
    ("OI_DATABASE_DATA_DIR", '"pg"', "/var/lib/oi/pg", Path("/var/lib/oi/pg")),
    ("OI_METRICS_HOST", '"127.0.0.1"', "0.0.0.0", "0.0.0.0"),
    ("OI_SPOOL_MAX_MB", "512", "64", 64.0),
    ("OI_LOG_FORMAT", '"text"', "json", "json"),
    ("OI_METRICS_PORT", "9108", "0", 0),
    ("OI_METRICS_HEALTHY_WITHIN_S", "300", "90", 90.0),
    ("OI_VENUES_ENABLED", '["binance", "deribit"]', "Deribit", ("deribit",)),
    ("OI_DERIBIT_BASE_URL", '"https://file.example"', "http://127.0.0.1:9001", "http://127.0.0.1:9001"),
    ("OI_DERIBIT_CURRENCIES", '["BTC"]', "eth,usdc", ("ETH", "USDC")),
    ("OI_OKX_BASE_URL", '"https://file.example"', "http://127.0.0.1:9002", "http://127.0.0.1:9002"),
    ("OI_OKX_FAMILIES", '["BTC-USD"]', "eth-usd, BTC-USD", ("ETH-USD", "BTC-USD")),
    ("OI_BYBIT_BASE_URL", '"https://file.example"', "http://127.0.0.1:9003", "http://127.0.0.1:9003"),
    ("OI_BYBIT_BASE_COINS", '["BTC"]', "sol,xrp", ("SOL", "XRP")),
]


@pytest.mark.parametrize(("env_var", "file_value", "env_value", "expected"), ENV_OVERRIDES)
def test_env_var_beats_the_file(
    tmp_path: Path, env_var: str, file_value: str, env_value: str, expected: object
) -> None:
    section, name = _key(env_var)
    path = _write(tmp_path, f"[{section}]\n{name} = {file_value}\n")
    assert _value(load_settings(str(path), {env_var: env_value}), section, name) == expected


def test_env_override_table_covers_every_key() -> None:
    assert {env_var for env_var, *_ in ENV_OVERRIDES} == {key.env_var for key in KEYS}


def test_env_vars_are_named_after_section_and_key() -> None:
    assert [key.env_var for key in KEYS] == [
        "OI_VENUES_ENABLED",
        "OI_BINANCE_BASE_URL",
        "OI_BINANCE_UNDERLYINGS",
        "OI_BINANCE_EXPIRIES",
        "OI_DERIBIT_BASE_URL",
        "OI_DERIBIT_CURRENCIES",
        "OI_OKX_BASE_URL",
        "OI_OKX_FAMILIES",
        "OI_BYBIT_BASE_URL",
        "OI_BYBIT_BASE_COINS",
        "OI_EXCHANGE_TIMEOUT_S",
        "OI_EXCHANGE_MAX_IN_FLIGHT",
        "OI_COLLECT_INTERVAL_S",
        "OI_COLLECT_OFFSET_S",
        "OI_COLLECT_SHUTDOWN_TIMEOUT_S",
        "OI_DATABASE_URL",
        "OI_DATABASE_DATA_DIR",
        "OI_DATABASE_TIMESCALEDB",
        "OI_DATABASE_COMPRESS_AFTER_DAYS",
        "OI_DATABASE_DROP_RAW_AFTER_DAYS",
        "OI_SPOOL_DIR",
        "OI_SPOOL_MAX_MB",
        "OI_LOG_FORMAT",
        "OI_METRICS_HOST",
        "OI_METRICS_PORT",
        "OI_METRICS_HEALTHY_WITHIN_S",
    ]


def test_env_vars_apply_without_a_file(empty_cwd: Path) -> None:
    settings = load_settings(None, {"OI_BINANCE_UNDERLYINGS": "BTC", "OI_COLLECT_INTERVAL_S": "120"})
    assert (settings.binance.underlyings, settings.collect.interval_s) == (("BTC",), 120)
    assert settings.source == "defaults"


# keys of earlier versions: still read, with one warning naming the new key

RENAMED_CASES: list[tuple[str, str, str, object]] = [
    # old env var, old file text, new key, the value both give
    (
        "OI_EXCHANGE_BASE_URL",
        '[exchange]\nbase_url = "http://old.example"\n',
        "base_url",
        "http://old.example",
    ),
    ("OI_COLLECT_UNDERLYINGS", '[collect]\nunderlyings = ["ETH"]\n', "underlyings", ("ETH",)),
    ("OI_COLLECT_EXPIRIES", '[collect]\nexpiries = ["251226"]\n', "expiries", ("251226",)),
]


@pytest.mark.parametrize(("env_var", "text", "name", "value"), RENAMED_CASES)
def test_an_old_key_in_the_file_still_works_with_one_warning_naming_the_new_key(
    tmp_path: Path, env_var: str, text: str, name: str, value: object
) -> None:
    settings = load_settings(str(_write(tmp_path, text)), {})
    assert getattr(settings.binance, name) == value
    [warning] = settings.warnings
    assert f"is an old name: use [binance] {name} (env var OI_BINANCE_{name.upper()})" in warning


@pytest.mark.parametrize(("env_var", "text", "name", "value"), RENAMED_CASES)
def test_an_old_env_var_still_works_with_one_warning_naming_the_new_one(
    empty_cwd: Path, env_var: str, text: str, name: str, value: object
) -> None:
    raw = ",".join(value) if isinstance(value, tuple) else str(value)
    settings = load_settings(None, {env_var: raw})
    assert getattr(settings.binance, name) == value
    [warning] = settings.warnings
    assert warning.startswith(f"env var {env_var} is an old name: use [binance] {name}")


def test_the_new_key_beats_the_old_one_and_the_old_one_is_said_to_be_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, '[exchange]\nbase_url = "http://old.example"\n')
    settings = load_settings(str(path), {"OI_BINANCE_BASE_URL": "http://new.example"})
    assert settings.binance.base_url == "http://new.example"
    [warning] = settings.warnings
    assert "is an old name and is ignored: env var OI_BINANCE_BASE_URL sets [binance] base_url" in warning


def test_the_shipped_file_and_the_defaults_give_no_warning(empty_cwd: Path) -> None:
    assert load_settings(str(SHIPPED), {}).warnings == ()
    assert load_settings(None, {"OI_BINANCE_BASE_URL": "http://a.example"}).warnings == ()


def test_other_env_vars_are_ignored(empty_cwd: Path) -> None:
    assert load_settings(None, {"PATH": "/bin", "OIL": "1", "HOME": "/root"}) == Settings()


# which file


def test_config_flag_beats_oi_config(tmp_path: Path) -> None:
    flag = _write(tmp_path, "[exchange]\ntimeout_s = 1\n", "flag.toml")
    env_file = _write(tmp_path, "[exchange]\ntimeout_s = 2\n", "env.toml")
    settings = load_settings(str(flag), {"OI_CONFIG": str(env_file)})
    assert (settings.exchange.timeout_s, settings.source) == (1.0, str(flag))


def test_oi_config_beats_the_default_path(empty_cwd: Path) -> None:
    _write(empty_cwd, "[exchange]\ntimeout_s = 3\n", "config/collector.toml")
    env_file = _write(empty_cwd, "[exchange]\ntimeout_s = 2\n", "env.toml")
    settings = load_settings(None, {"OI_CONFIG": str(env_file)})
    assert (settings.exchange.timeout_s, settings.source) == (2.0, str(env_file))


def test_the_default_path_is_config_collector_toml_in_the_working_directory(empty_cwd: Path) -> None:
    _write(empty_cwd, "[exchange]\ntimeout_s = 3\n", "config/collector.toml")
    settings = load_settings(None, {})
    assert (settings.exchange.timeout_s, settings.source) == (3.0, str(Path("config/collector.toml")))


def test_resolve_path_says_only_the_default_file_may_be_missing() -> None:
    assert resolve_path("a.toml", {"OI_CONFIG": "b.toml"}) == (Path("a.toml"), True)
    assert resolve_path(None, {"OI_CONFIG": "b.toml"}) == (Path("b.toml"), True)
    assert resolve_path(None, {}) == (Path("config/collector.toml"), False)


def test_a_missing_config_flag_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = _config_error(str(missing), {})
    assert str(missing) in message
    assert "does not exist" in message


def test_a_missing_oi_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = _config_error(None, {"OI_CONFIG": str(missing)})
    assert str(missing) in message
    assert "does not exist" in message


# errors from the file: each names the key and the file

FILE_ERRORS: list[tuple[str, str]] = [
    # TOML text, what the message must name besides the file
    ("[exchanges]\nbase_url = 'https://eapi.binance.com'\n", "[exchanges]"),
    ("exchange = 5\n", "[exchange]"),
    ("[exchange]\ntimeout = 5\n", "[exchange] timeout"),
    ("[collect]\ninterval = 60\n", "[collect] interval"),
    ("[binance]\nbase_url = 'ftp://eapi.binance.com'\n", "[binance] base_url"),
    ("[binance]\nbase_url = 5\n", "[binance] base_url"),
    ("[exchange]\nbase_url = 'ftp://eapi.binance.com'\n", "[exchange] base_url"),  # the old name
    ("[exchange]\ntimeout_s = 'fast'\n", "[exchange] timeout_s"),
    ("[exchange]\ntimeout_s = true\n", "[exchange] timeout_s"),
    ("[exchange]\ntimeout_s = 0\n", "[exchange] timeout_s"),
    ("[exchange]\nmax_in_flight = 2.5\n", "[exchange] max_in_flight"),
    ("[exchange]\nmax_in_flight = 0\n", "[exchange] max_in_flight"),
    ("[binance]\nunderlyings = []\n", "[binance] underlyings"),
    ("[binance]\nunderlyings = 'BTC,'\n", "[binance] underlyings"),
    ("[binance]\nunderlyings = ['BTC', 5]\n", "[binance] underlyings"),
    ("[binance]\nunderlyings = ['BTC-USDT']\n", "[binance] underlyings"),
    ("[collect]\nunderlyings = ['BTC-USDT']\n", "[collect] underlyings"),  # the old name
    ("[binance]\nexpiries = []\n", "[binance] expiries"),
    ("[binance]\nexpiries = ['251399']\n", "[binance] expiries"),
    ("[binance]\nexpiries = ['2512']\n", "[binance] expiries"),
    ("[binance]\nexpiries = 'every'\n", "[binance] expiries"),
    ("[collect]\nexpiries = 'every'\n", "[collect] expiries"),  # the old name
    ("[collect]\ninterval_s = 0\n", "[collect] interval_s"),
    ("[collect]\ninterval_s = -60\n", "[collect] interval_s"),
    ("[collect]\noffset_s = -1\n", "[collect] offset_s"),
    ("[collect]\ninterval_s = 60\noffset_s = 60\n", "[collect] offset_s"),
    ("[database]\ntimescaledb = 'sometimes'\n", "[database] timescaledb"),
    ("[database]\nurl = 'mysql://u@h/db'\n", "[database] url"),
    ("[database]\nurl = 'sqlite:///oi.db'\n", "[database] url"),
    ("[database]\nurl = 'postgresql+asyncpg://u@h/db'\n", "[database] url"),
    ("[database]\nurl = ''\n", "[database] url"),
    ("[database]\ndrop_raw_after_days = 1\n", "[database] drop_raw_after_days"),
    ("[database]\ndrop_raw_after_days = 'forever'\n", "[database] drop_raw_after_days"),
    ("[venues]\nenabled = []\n", "[venues] enabled"),
    ("[venues]\nenabled = ['binance', 'kraken']\n", "[venues] enabled"),
    ("[deribit]\ncurrencies = ['BTC-USD']\n", "[deribit] currencies"),
    ("[deribit]\nbase_url = 'www.deribit.com'\n", "[deribit] base_url"),
    ("[okx]\nfamilies = ['BTC']\n", "[okx] families"),
    ("[okx]\nfamilies = []\n", "[okx] families"),
    ("[okx]\nbase_url = 'https://'\n", "[okx] base_url"),
    ("[bybit]\nbase_coins = ['BTC-USDT']\n", "[bybit] base_coins"),
    ("[bybit]\nbase_coins = 'BTC,,ETH'\n", "[bybit] base_coins"),
    ("[bybit]\nbase_url = 'api.bybit.com'\n", "[bybit] base_url"),
]


@pytest.mark.parametrize(("text", "names"), FILE_ERRORS)
def test_a_bad_file_value_is_a_config_error_naming_key_and_file(
    tmp_path: Path, text: str, names: str
) -> None:
    path = _write(tmp_path, text)
    message = _config_error(str(path), {})
    assert names in message
    assert str(path) in message


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[exchange\ntimeout_s = 5\n")
    message = _config_error(str(path), {})
    assert str(path) in message
    assert "not valid TOML" in message


def test_an_unknown_key_error_lists_the_known_keys(tmp_path: Path) -> None:
    message = _config_error(str(_write(tmp_path, "[exchange]\ntimeout = 5\n")), {})
    assert "base_url, max_in_flight, timeout_s" in message  # base_url: the old name of [binance] base_url


def test_the_default_file_is_checked_too(empty_cwd: Path) -> None:
    _write(empty_cwd, "[exchange]\ntimeout = 5\n", "config/collector.toml")
    assert "config/collector.toml" in _config_error(None, {})


# errors from env vars: each names the env var

ENV_ERRORS: list[tuple[str, str]] = [
    ("OI_BINANCE_BASE_URL", "eapi.binance.com"),
    ("OI_EXCHANGE_BASE_URL", "eapi.binance.com"),  # the old name
    ("OI_EXCHANGE_TIMEOUT_S", "fast"),
    ("OI_EXCHANGE_TIMEOUT_S", "-1"),
    ("OI_EXCHANGE_MAX_IN_FLIGHT", "2.5"),
    ("OI_BINANCE_UNDERLYINGS", ""),
    ("OI_BINANCE_UNDERLYINGS", "BTC,,ETH"),
    ("OI_BINANCE_EXPIRIES", "251399"),
    ("OI_BINANCE_EXPIRIES", "251226,next"),
    ("OI_COLLECT_EXPIRIES", "251226,next"),  # the old name
    ("OI_COLLECT_INTERVAL_S", "0"),
    ("OI_COLLECT_INTERVAL_S", "sixty"),
    ("OI_COLLECT_OFFSET_S", "-5"),
    ("OI_DATABASE_URL", "mysql://u@h/db"),
    ("OI_DATABASE_TIMESCALEDB", "yes"),
    ("OI_DATABASE_DROP_RAW_AFTER_DAYS", "0"),
    ("OI_DATABASE_DROP_RAW_AFTER_DAYS", "off"),
    ("OI_VENUES_ENABLED", "kraken"),
    ("OI_VENUES_ENABLED", "binance,,deribit"),
    ("OI_DERIBIT_CURRENCIES", ""),
    ("OI_OKX_FAMILIES", "BTC-USD,BTC_USD"),
    ("OI_OKX_BASE_URL", "http:// spaced.example"),
    ("OI_BYBIT_BASE_COINS", "BTC/USDT"),
    ("OI_BYBIT_BASE_URL", ""),
]


@pytest.mark.parametrize(("env_var", "value"), ENV_ERRORS)
def test_a_bad_env_value_is_a_config_error_naming_the_env_var(
    empty_cwd: Path, env_var: str, value: str
) -> None:
    message = _config_error(None, {env_var: value})
    assert message.startswith(f"env var {env_var}: ")


def test_an_unknown_oi_env_var_is_a_config_error_naming_it(empty_cwd: Path) -> None:
    message = _config_error(None, {"OI_EXCHANGE_URL": "https://eapi.binance.com"})
    assert "OI_EXCHANGE_URL" in message
    assert "OI_EXCHANGE_BASE_URL" in message  # the known ones are listed


def test_an_unknown_env_var_is_reported_even_with_a_good_file(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL_FILE)
    assert "OI_DATABASE_PASSWORD" in _config_error(str(path), {"OI_DATABASE_PASSWORD": "x"})


def test_offset_not_below_interval_is_an_error_naming_both_keys(empty_cwd: Path) -> None:
    message = _config_error(None, {"OI_COLLECT_INTERVAL_S": "60", "OI_COLLECT_OFFSET_S": "60"})
    assert "offset_s" in message
    assert "interval_s" in message


def test_offset_not_below_interval_from_env_names_the_env_var(empty_cwd: Path) -> None:
    assert "OI_COLLECT_OFFSET_S" in _config_error(None, {"OI_COLLECT_OFFSET_S": "70"})


@pytest.mark.parametrize("env_var", ["OI_COLLECT_INTERVAL_S", "OI_EXCHANGE_MAX_IN_FLIGHT"])
def test_an_infinite_whole_number_is_a_config_error(empty_cwd: Path, env_var: str) -> None:
    assert _config_error(None, {env_var: "inf"}).startswith(f"env var {env_var}: ")


def test_a_nan_offset_is_a_config_error(empty_cwd: Path) -> None:
    assert _config_error(None, {"OI_COLLECT_OFFSET_S": "nan"}).startswith("env var OI_COLLECT_OFFSET_S: ")


# raw-row retention


@pytest.mark.parametrize(("value", "days"), [("never", None), ("NEVER", None), ("365", 365.0), ("2", 2.0)])
def test_drop_raw_after_days_is_never_or_a_number_of_days(empty_cwd: Path, value: str, days: float) -> None:
    settings = load_settings(None, {"OI_DATABASE_DROP_RAW_AFTER_DAYS": value})
    assert settings.database.drop_raw_after_days == days


def test_a_too_short_retention_says_the_least_it_may_be(empty_cwd: Path) -> None:
    message = _config_error(None, {"OI_DATABASE_DROP_RAW_AFTER_DAYS": "1.5"})
    expected = "env var OI_DATABASE_DROP_RAW_AFTER_DAYS: must be \"never\" or at least 2 days, got '1.5'"
    assert message == expected


# the database URL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://oi:pw@h:5432/oi", "postgresql+psycopg://oi:pw@h:5432/oi"),
        ("postgres+psycopg://oi@h/oi", "postgresql+psycopg://oi@h/oi"),
        ("postgresql+psycopg2://oi@h/oi", "postgresql+psycopg://oi@h/oi"),
        ("postgresql+psycopg://oi@h/oi", "postgresql+psycopg://oi@h/oi"),
    ],
)
def test_a_postgresql_url_is_given_the_psycopg_3_driver(empty_cwd: Path, url: str, expected: str) -> None:
    assert load_settings(None, {"OI_DATABASE_URL": url}).database.url == expected


def test_a_postgres_url_without_a_driver_is_given_the_psycopg_3_driver(empty_cwd: Path) -> None:
    url = load_settings(None, {"OI_DATABASE_URL": "postgres://oi@h/oi"}).database.url
    assert url == "postgresql+psycopg://oi@h/oi"


def test_masked_url_hides_the_password() -> None:
    database = DatabaseSettings(url="postgresql+psycopg://oi:s3cret@db.example:5432/oi")
    assert database.masked_url() == "postgresql+psycopg://oi:***@db.example:5432/oi"


def test_repr_of_settings_does_not_show_the_password(empty_cwd: Path) -> None:
    settings = load_settings(None, {"OI_DATABASE_URL": "postgresql://oi:s3cret@db.example/oi"})
    assert settings.database.url == "postgresql+psycopg://oi:s3cret@db.example/oi"
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings)


def test_an_unparseable_database_url_error_does_not_show_the_password(empty_cwd: Path) -> None:
    message = _config_error(None, {"OI_DATABASE_URL": "postgresql//oi:s3cret@db.example/oi"})
    assert "s3cret" not in message


# the shipped config/collector.toml


def test_the_shipped_config_file_loads() -> None:
    settings = load_settings(str(SHIPPED), {})
    assert settings.source == str(SHIPPED)


def test_the_shipped_config_file_states_the_defaults() -> None:
    assert load_settings(str(SHIPPED), {}) == Settings(source=str(SHIPPED))


# Keys whose default is a path on the user's machine: the shipped file shows them commented out.
MACHINE_DEFAULTS = {("spool", "dir"), ("database", "data_dir")}


def _assignments(toml_text: str) -> dict[tuple[str, str], str]:
    """(section, key) → its whole line, for every ``key = value`` line of a TOML file (and, for the keys of
    MACHINE_DEFAULTS, every ``# key = value`` line)."""
    lines: dict[tuple[str, str], str] = {}
    section = ""
    for line in toml_text.splitlines():
        if header := re.fullmatch(r"\s*\[(\w+)\]\s*", line):
            section = header[1]
        elif (assignment := re.match(r"\s*(# )?(\w+)\s*=", line)) and (
            assignment[1] is None or (section, assignment[2]) in MACHINE_DEFAULTS
        ):
            lines[(section, assignment[2])] = line.removeprefix("# ")
    return lines


@pytest.mark.parametrize("env_var", [key.env_var for key in KEYS])
def test_the_shipped_config_file_sets_every_key_and_names_its_env_var(env_var: str) -> None:
    section, name = _key(env_var)
    lines = _assignments(SHIPPED.read_text(encoding="utf-8"))
    assert (section, name) in lines, f"[{section}] {name} is not in {SHIPPED}"
    comment = lines[(section, name)].partition("#")[2]
    assert re.search(rf"\b{env_var}\b", comment), f"[{section}] {name} does not name {env_var} in its comment"


# the rough edges of issue 12: types in the file, URLs, hosts, paths


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[collect]\ninterval_s = "60"\n', "must be a number, not the string '60': write interval_s = 60"),
        ('[metrics]\nport = "9108"\n', "[metrics] port"),
        ('[database]\ndrop_raw_after_days = "90"\n', "must be a number"),
        ('[binance]\nunderlyings = "BTC,ETH"\n', 'must be an array such as ["BTC"]'),
        ('[venues]\nenabled = "binance"\n', "[venues] enabled"),
    ],
)
def test_a_wrong_type_in_the_file_is_exit_2_naming_the_key(tmp_path: Path, text: str, names: str) -> None:
    path = _write(tmp_path, text)
    message = _config_error(str(path), {})
    assert names in message and str(path) in message


def test_the_words_for_none_are_the_strings_a_file_may_give_numbers_and_lists(tmp_path: Path) -> None:
    text = '[binance]\nexpiries = "all"\n[database]\ndrop_raw_after_days = "never"\n'
    settings = load_settings(str(_write(tmp_path, text)), {})
    assert (settings.binance.expiries, settings.database.drop_raw_after_days) == (None, None)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://127.0.0.1:port",
        "http://127.0.0.1:",
        "https://www.okx .com",
        " https://www.okx.com/api v5",
        "https://",
        "https://api.bybit.com?x=1",
    ],
)
def test_a_base_url_with_a_bad_port_or_a_space_is_exit_2_naming_the_key(empty_cwd: Path, url: str) -> None:
    assert _config_error(None, {"OI_OKX_BASE_URL": url}).startswith("env var OI_OKX_BASE_URL: ")


def test_a_base_url_keeps_a_good_port_and_drops_a_trailing_slash(empty_cwd: Path) -> None:
    settings = load_settings(None, {"OI_BYBIT_BASE_URL": "http://127.0.0.1:8003/"})
    assert settings.bybit.base_url == "http://127.0.0.1:8003"


@pytest.mark.parametrize("host", ["local host", "", "10.0.0.1/24", "host;rm"])
def test_a_bad_metrics_host_is_exit_2(empty_cwd: Path, host: str) -> None:
    assert "OI_METRICS_HOST" in _config_error(None, {"OI_METRICS_HOST": host})


def test_paths_are_absolute_by_default_and_relative_ones_are_made_absolute(
    tmp_path: Path, empty_cwd: Path
) -> None:
    defaults = load_settings(None, {})
    assert defaults.spool.dir.is_absolute() and defaults.database.data_dir.is_absolute()
    assert defaults.spool.dir.parent == defaults.database.data_dir.parent  # side by side
    path = _write(tmp_path / "etc", '[spool]\ndir = "spool"\n')
    assert load_settings(str(path), {}).spool.dir == tmp_path / "etc" / "spool"  # from the file's directory
    from_env = load_settings(None, {"OI_SPOOL_DIR": "here/spool"}).spool.dir
    assert from_env == empty_cwd / "here" / "spool"  # from the directory the command starts in


def test_the_database_is_embedded_by_default(empty_cwd: Path) -> None:
    database = load_settings(None, {}).database
    assert (database.url, database.embedded) == ("embedded", True)
    assert database.masked_url() == f"the embedded database in {database.data_dir}"
