"""A durable local spool: every batch lands on disk before the database sees it, and leaves once stored.

One JSON file per batch, named by its cycle start so that names sort in time order. A file is written under a
temporary name, fsynced, renamed and its directory fsynced: after a crash it is either whole or absent.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from collector.records import Batch, OpenInterest, PairRun

log = logging.getLogger("collector.spool")
_FORMAT = 1
_SUFFIX = ".batch.json"


class SpoolFull(Exception):
    """Writing this batch would take the spool past its configured size."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*.tmp"):  # a write cut short by a crash: never renamed, not data
            leftover.unlink()

    def put(self, batch: Batch) -> Path:
        """Write ``batch`` durably; SpoolFull when it does not fit."""
        data = json.dumps(_encode(batch), separators=(",", ":")).encode()
        used = self.size_bytes()
        if used + len(data) > self.max_bytes:
            raise SpoolFull(
                f"spool {self.directory} is full: {used / 1e6:.1f} MB used of {self.max_bytes / 1e6:.1f} MB,"
                f" this batch needs {len(data) / 1e6:.2f} MB"
            )
        start = batch.runs[0].cycle_start if batch.runs else datetime.now(UTC)
        path = self.directory / f"{start:%Y%m%dT%H%M%S%f}-{os.getpid()}{_SUFFIX}"
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
        _fsync_directory(self.directory)
        return path

    def pending(self) -> list[Path]:
        """Every spooled batch, oldest first."""
        return sorted(self.directory.glob(f"*{_SUFFIX}"))

    def read(self, path: Path) -> Batch:
        return _decode(json.loads(path.read_bytes()))

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move an unreadable batch aside (never delete data we could not read) and say where."""
        target = self.directory / "unreadable" / path.name
        target.parent.mkdir(exist_ok=True)
        path.replace(target)
        log.error("spooled batch %s is unreadable (%s): moved to %s to be looked at", path, reason, target)
        return target

    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.pending())


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _encode(batch: Batch) -> dict[str, object]:
    return {
        "format": _FORMAT,
        "runs": [_values(run) for run in batch.runs],
        "records": [_values(record) for record in batch.records],
    }


def _values(row: PairRun | OpenInterest) -> list[object]:
    return [_text(getattr(row, field.name)) for field in fields(row)]


def _text(value: object) -> object:
    """Exact text for Decimal and time values (a JSON number would go through float)."""
    if isinstance(value, date):  # datetime included
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decode(document: dict[str, object]) -> Batch:
    if document.get("format") != _FORMAT:
        raise ValueError(f"unknown spool format {document.get('format')!r}")
    runs = [_run(values) for values in document["runs"]]  # type: ignore[union-attr]
    records = [_record(values) for values in document["records"]]  # type: ignore[union-attr]
    return Batch(runs, records)


def _run(values: list) -> PairRun:
    start, underlying, expiry, status, snapshot, stored, rejected, http, code, message, duration = values
    return PairRun(
        cycle_start=datetime.fromisoformat(start),
        underlying=underlying,
        expiry=date.fromisoformat(expiry),
        status=status,
        snapshot_ts=datetime.fromisoformat(snapshot) if snapshot else None,
        rows_stored=stored,
        rows_rejected=rejected,
        http_status=http,
        error_code=code,
        error_message=message,
        duration_ms=duration,
    )


def _record(values: list) -> OpenInterest:
    symbol, ts, underlying, expiry, strike, side, oi, oi_usd, collected_at = values
    return OpenInterest(
        symbol=symbol,
        ts=datetime.fromisoformat(ts),
        underlying=underlying,
        expiry=date.fromisoformat(expiry),
        strike=Decimal(strike),
        side=side,
        open_interest=Decimal(oi),
        open_interest_usd=Decimal(oi_usd),
        collected_at=datetime.fromisoformat(collected_at),
    )
