"""Memory: the daemon's resident set after 10 cycles and after 1,000 fast cycles against the fake exchange.

    python benchmarks/bench_memory.py [--cycles 1000]

The daemon runs as it does in production (`oi-collector run`), with 1 s cycles over BTC and ETH (20 pairs,
some 1,900 rows: at 1 s a cycle, more pairs would pass the exchange's 2,400 weight a minute, and the weight
gate would rightly hold requests back), a new exchange minute every cycle so every cycle writes. The baseline
is the same process after 10 cycles. Bars: growth under 5 %, steady RSS under 80 MB.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _support import REPO, database

from tests.fake_exchange import DEFAULT_UNIVERSE, EXCHANGE_INFO, FakeExchange, current_minute_ms

UNIVERSE = {name: DEFAULT_UNIVERSE[name] for name in ("BTC", "ETH")}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# The collector believes snapshots up to a day behind its clock: minutes cycle through the last 20 hours.
FIRST_MINUTE_MS = current_minute_ms() - 20 * 60 * 60_000


def next_minute(minute_ms: int) -> int:
    return FIRST_MINUTE_MS + (minute_ms - FIRST_MINUTE_MS + 60_000) % (20 * 60 * 60_000)


def wait_for_cycles(fake: FakeExchange, count: int, daemon: subprocess.Popen[bytes]) -> None:
    while len(fake.requests_to(EXCHANGE_INFO)) < count:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited with {daemon.returncode}")
        fake.minute_ms = next_minute(fake.minute_ms or FIRST_MINUTE_MS)
        time.sleep(0.2)
    time.sleep(0.6)  # let that cycle finish writing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000)
    args = parser.parse_args()
    with (
        database("oi_bench_memory") as url,
        FakeExchange(UNIVERSE) as fake,
        tempfile.TemporaryDirectory() as spool,
    ):
        fake.minute_ms = FIRST_MINUTE_MS
        env = {name: value for name, value in os.environ.items() if not name.startswith("OI_")}
        env.update(
            OI_BINANCE_BASE_URL=fake.base_url,
            OI_VENUES_ENABLED="binance",
            OI_COLLECT_INTERVAL_S="1",
            OI_COLLECT_OFFSET_S="0",
            OI_BINANCE_UNDERLYINGS="BTC,ETH",
            OI_DATABASE_URL=url,
            OI_SPOOL_DIR=spool,
        )
        log = Path(spool) / "daemon.log"
        with log.open("wb") as stderr:
            daemon = subprocess.Popen(
                [str(Path(sys.executable).parent / "oi-collector"), "run"], env=env, cwd=REPO, stderr=stderr
            )
            started = time.monotonic()
            wait_for_cycles(fake, 10, daemon)
            after_10 = rss_mb(daemon.pid)
            print(f"  after {len(fake.requests_to(EXCHANGE_INFO)):5d} cycles: {after_10:6.1f} MB", flush=True)
            checkpoints = sorted({min(args.cycles, n) for n in (100, 250, 500, 750, args.cycles)})
            readings = []
            for checkpoint in checkpoints:
                wait_for_cycles(fake, checkpoint, daemon)
                readings.append(rss_mb(daemon.pid))
                print(
                    f"  after {len(fake.requests_to(EXCHANGE_INFO)):5d} cycles: {readings[-1]:6.1f} MB",
                    flush=True,
                )
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=60)
        failed = log.read_text().count(" failed; ") - log.read_text().count(" 0 failed; ")
    final = readings[-1]
    print(f"memory: {args.cycles} cycles of 1 s in {time.monotonic() - started:.0f} s, daemon exit {code},"
          f" {failed} cycles with a failed pair")  # fmt: skip
    print(f"  RSS after 10 cycles (baseline)   {after_10:6.1f} MB")
    print(f"  RSS after {args.cycles} cycles          {final:6.1f} MB   (bar: < 80 MB)")
    print(f"  growth                           {100 * (final / after_10 - 1):+6.1f} %   (bar: < 5 %)")


if __name__ == "__main__":
    main()
