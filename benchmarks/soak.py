"""Soak: the daemon against the fake exchange with random faults of every kind and two database cuts. Half the
faults are hostile answers: nested brackets, 140,000 digits, rows of other pairs, NUL in error text, bad
weight headers, dripped bodies, ...

    python benchmarks/soak.py [--seconds 180]

Uses BENCH_DATABASE_URL (a server it may create a database on) or a throwaway PostgreSQL of its own, like the
tests. Prints what the fake served, what was stored, and what was lost, duplicated or stored with another
value than the one served (all must be 0).
"Served" counts only answers the collector could receive: a reply the fake sends after the collector's timeout
has gone to nobody. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from _support import REPO, database
from sqlalchemy.engine import make_url

from tests.fake_exchange import (
    OPEN_INTEREST,
    FakeExchange,
    Fault,
    empty_list,
    html_page,
    http_error,
    malformed_rows,
    truncated_json,
)
from tests.tcp_proxy import TcpProxy

TIMEOUT_S = 0.8
INTERVAL_S = 5
MINUTE_MS = 60_000


class CountingExchange(FakeExchange):
    """The fake exchange, remembering every (symbol, ts) it served in a 200 the collector could receive."""

    def __init__(self) -> None:
        super().__init__()
        self.served: set[tuple[str, int]] = set()
        self.values: dict[tuple[str, int], str] = {}  # the open interest served for each
        self._served_lock = threading.Lock()

    def _reply(self, path, params, fault, verdict):  # type: ignore[no-untyped-def]
        reply = super()._reply(path, params, fault, verdict)
        too_late = fault is not None and (fault.delay_s >= TIMEOUT_S or fault.drip_s > 0)
        if path == OPEN_INTEREST and reply.status == 200 and not too_late:
            with contextlib.suppress(ValueError, RecursionError, TypeError, AttributeError):
                rows = json.loads(reply.body)
                # The fake's own rows of the pair asked for: hostile extra rows (another pair's, malformed)
                # are not "served" to that pair, and the collector is right to reject them.
                own = {
                    option.symbol: option
                    for option in self._options.get(
                        (params.get("underlyingAsset"), params.get("expiration")), []
                    )
                }
                good = _first_rows(rows, own)
                with self._served_lock:
                    self.served |= set(good)
                    self.values.update(good)
        return reply


def _first_rows(rows: object, own: dict[str, object]) -> dict[tuple[str, int], str]:
    """(symbol, ms) → open interest of the first row of each of the pair's own symbols (the one kept)."""
    first: dict[tuple[str, int], str] = {}
    seen: set[str] = set()
    for row in rows if isinstance(rows, list) else []:
        symbol = row.get("symbol") if isinstance(row, dict) else None
        if symbol in own and symbol not in seen:
            seen.add(symbol)
            if _whole_minute(row.get("timestamp")):
                first[(symbol, int(row["timestamp"]))] = row["sumOpenInterest"]
    return first


def _whole_minute(timestamp: object) -> bool:
    return isinstance(timestamp, str) and timestamp.isdigit() and int(timestamp) % MINUTE_MS == 0


def random_fault(rng: random.Random) -> tuple[str, Fault]:
    """An ordinary fault or, as often, a hostile answer (the two lists are about as long)."""
    if rng.random() < 0.5:
        return "hostile", rng.choice(hostile_faults())
    return "ordinary", rng.choice(
        [
            http_error(429, -1003, "Too many requests.", retry_after=1),
            http_error(503, -1001, "Service Unavailable."),
            http_error(500, -1000, "An unknown error occurred while processing the request."),
            html_page(502),
            html_page(200),
            truncated_json(),
            http_error(200, -1000, "An unknown error occurred."),
            http_error(400, -1121, "Invalid symbol."),
            empty_list(),
            malformed_rows(
                {
                    "symbol": "BTC-251226-X-C",
                    "sumOpenInterest": "1",
                    "sumOpenInterestUsd": "1",
                    "timestamp": "1",
                }
            ),
            Fault(drop_connection=True),
            Fault(delay_s=TIMEOUT_S + 0.2),
        ]
    )


def hostile_faults() -> list[Fault]:
    """Answers an attacker would send: each must cost only itself."""
    foreign = {"symbol": "BTC-260102-100000-C", "sumOpenInterest": "999999", "sumOpenInterestUsd": "1",
               "timestamp": str(int(time.time() // 60) * MINUTE_MS)}  # fmt: skip
    huge = {**foreign, "symbol": "BTC-251226-7-P", "sumOpenInterest": "1" * 140_000}
    return [
        Fault(body="[" * 50_000),
        malformed_rows(huge),
        malformed_rows(foreign),  # another pair's row, with a value that must not overwrite the true one
        malformed_rows({**foreign, "symbol": "BTC-251226-" + "1" * 9000 + "-C"}),
        malformed_rows({**foreign, "symbol": "BTC-000101-100000-C"}),
        malformed_rows({**foreign, "timestamp": str(int(time.time()))}),  # seconds, not ms
        http_error(400, -1121, "bad\x00symbol\ud800"),
        http_error(400, 10**30, "code out of range"),
        Fault(headers={"X-MBX-USED-WEIGHT-0M": "5"}),
        Fault(headers={"X-MBX-USED-WEIGHT-1M": "²"}),
        Fault(status=429, json_body={"code": -1003, "msg": "slow down"}, headers={"Retry-After": "0.5"}),
        Fault(drip_s=0.5),
    ]


INJECTED = {"ordinary": 0, "hostile": 0}


def inject_faults(fake: FakeExchange, stop: threading.Event, rng: random.Random) -> None:
    """A random fault on a random pair twice a second."""
    pairs = fake.pairs()
    while not stop.wait(0.5):
        underlying, expiry = rng.choice(pairs)
        kind, fault = random_fault(rng)
        INJECTED[kind] += 1
        fake.inject(fault, underlying=underlying, expiry=expiry)


def ban(fake: FakeExchange) -> None:
    """The next request gets the exchange's IP ban, for 3 seconds."""
    fake.inject(http_error(418, -1003, "Way too many requests; IP banned.", retry_after=3))


def advance_minutes(fake: FakeExchange, stop: threading.Event) -> None:
    while not stop.wait(INTERVAL_S):
        fake.minute_ms = (fake.minute_ms or 0) + MINUTE_MS


def schedule(seconds: float) -> list[tuple[float, str]]:
    """Two IP bans and two database cuts (each up to 15 s), spread over the run."""
    outage = min(15.0, seconds * 0.1)
    events = [(0.15, "ban"), (0.3, "cut"), (0.65, "cut"), (0.85, "ban")]
    timed = [(seconds * fraction, event) for fraction, event in events]
    timed += [(at + outage, "restore") for at, event in timed if event == "cut"]
    return sorted(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with database("oi_soak") as url, CountingExchange() as fake, tempfile.TemporaryDirectory() as spool:
        # Minutes advance once a cycle (every 5 s), faster than the clock: start half a day back, as the
        # collector believes snapshots from a day behind its clock up to 5 minutes ahead.
        fake.minute_ms = int(time.time() // 60 * MINUTE_MS) - 12 * 60 * MINUTE_MS
        target = make_url(url)
        with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
            env = {name: value for name, value in os.environ.items() if not name.startswith("OI_")}
            env.update(
                OI_BINANCE_BASE_URL=fake.base_url,
                OI_VENUES_ENABLED="binance",
                OI_EXCHANGE_TIMEOUT_S=str(TIMEOUT_S),
                OI_COLLECT_INTERVAL_S=str(INTERVAL_S),
                OI_COLLECT_OFFSET_S="0",
                OI_DATABASE_URL=target.set(port=proxy.port).render_as_string(hide_password=False),
                OI_SPOOL_DIR=spool,
            )
            log_path = Path(spool).parent / f"oi-soak-{os.getpid()}.log"
            with log_path.open("w") as log:
                stop = threading.Event()
                workers = [
                    threading.Thread(target=inject_faults, args=(fake, stop, rng), daemon=True),
                    threading.Thread(target=advance_minutes, args=(fake, stop), daemon=True),
                ]
                daemon = subprocess.Popen([sys.executable, "-m", "collector", "run"], env=env, cwd=REPO,
                                          stderr=log)  # fmt: skip
                for worker in workers:
                    worker.start()
                started = time.monotonic()
                for fraction, event in schedule(args.seconds):
                    time.sleep(max(0.0, started + fraction - time.monotonic()))
                    {"ban": lambda: ban(fake), "cut": proxy.cut, "restore": proxy.restore}[event]()
                    print(f"{event:8} at {time.monotonic() - started:5.1f} s", flush=True)
                time.sleep(max(0.0, started + args.seconds - time.monotonic()))
                stop.set()
                fake.clear_faults()
                time.sleep(INTERVAL_S * 2)  # a last clean cycle drains the spool
                daemon.send_signal(signal.SIGTERM)
                code = daemon.wait(timeout=120)
            report(url, fake, log_path.read_text(), code, time.monotonic() - started)


def report(url: str, fake: CountingExchange, log: str, code: int, seconds: float) -> None:
    with psycopg.connect(url) as connection:
        values = {
            (symbol, int(ms)): oi
            for symbol, ms, oi in connection.execute(
                "SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint, open_interest::text"
                " FROM open_interest"
            )
        }
        stored = set(values)
        refused = connection.execute("SELECT stage, count(*) FROM rejected_rows GROUP BY 1").fetchall()
        rows, distinct = connection.execute(
            "SELECT count(*), count(DISTINCT (symbol, ts)) FROM open_interest"
        ).fetchone()  # type: ignore[misc]
        attempted, ok, spooled = connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'failed'),"
            " count(*) FILTER (WHERE status = 'spooled') FROM collection_runs"
        ).fetchone()  # type: ignore[misc]
    requests = fake.requests_to(OPEN_INTEREST)
    statuses: dict[int, int] = {}
    for request in requests:
        statuses[request.status] = statuses.get(request.status, 0) + 1
    lost = fake.served - stored
    wrong = [key for key in stored & fake.served if values[key] != fake.values[key]]
    print(f"soak: {seconds:.0f} s, daemon exit code {code}")
    print(f"  cycles                 {log.count('Z: ') and log.count(' scopes ok, ')}")
    print(f"  faults injected        {INJECTED['ordinary']} ordinary, {INJECTED['hostile']} hostile")
    print(f"  pairs attempted        {attempted}")
    print(f"  pairs ok               {ok} ({spooled} of them through the spool)")
    print(f"  openInterest requests  {len(requests)} by HTTP status {dict(sorted(statuses.items()))}")
    print(f"  rows the fake served   {len(fake.served)}")
    print(f"  rows stored            {len(stored)}")
    print(f"  rows lost              {len(lost)}")
    print(f"  duplicates             {rows - distinct}")
    print(f"  stored, never served   {len(stored - fake.served)}")
    print(f"  values not as served   {len(wrong)}")
    print(f"  rejections journalled  {dict(refused)}")
    print(f"  'database unavailable' cycles {log.count('database unavailable')},"
          f" 'banned' lines {log.count('banned this IP')}, retries {log.count('; retry ')}")  # fmt: skip
    if lost or wrong or rows != distinct or code != 0:
        raise SystemExit("FAILED: rows lost, duplicated, or a bad exit code")


if __name__ == "__main__":
    main()
