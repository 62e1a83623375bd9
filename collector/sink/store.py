"""Where a cycle's batch goes: first the durable spool, then the database, oldest batch first.

Every batch is spooled before it is written, so a batch is never only in memory: the database may be down,
the process may be killed. The database write is an idempotent upsert, so a batch written twice (killed
between the commit and the spool file's removal) still stores each row once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from collector.errors import SinkError
from collector.records import Batch
from collector.sink.postgres import PostgresSink, WriteResult
from collector.sink.spool import Spool, SpoolFull

log = logging.getLogger("collector.store")


@dataclass(frozen=True, slots=True)
class Flushed:
    """What one pass over the spool wrote, and what it left."""

    batches: int = 0
    rows: int = 0
    pending: int = 0
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    """What became of one cycle's batch."""

    written: WriteResult | None  # None: not in the database yet (spooled, or lost when the spool was full)
    spooled: bool
    lost_rows: int
    replayed: Flushed
    problem: str | None


class Store:
    def __init__(self, sink: PostgresSink, spool: Spool) -> None:
        self.sink = sink
        self.spool = spool

    def commit(self, batch: Batch) -> Committed:
        try:
            path: Path | None = self.spool.put(batch)
        except SpoolFull as full:
            log.error("%s: writing this cycle's %d rows straight to the database", full, len(batch.records))
            path = None
        if path is None:
            return self._commit_unspooled(batch)
        replayed = self.flush(until=path)
        if replayed.problem is not None:
            return Committed(None, True, 0, replayed, replayed.problem)
        written = self._write(path, replayed=False, batch=batch)
        if isinstance(written, str):
            return Committed(None, True, 0, replayed, written)
        return Committed(written, True, 0, replayed, None)

    def flush(self, until: Path | None = None) -> Flushed:
        """Write spooled batches oldest first (only those before ``until``, if given); stop at a failure."""
        batches = rows = 0
        pending = [path for path in self.spool.pending() if until is None or path < until]
        for done, path in enumerate(pending):
            try:
                batch = self.spool.read(path)
            except (OSError, ValueError, KeyError, TypeError) as error:
                self.spool.quarantine(path, f"{type(error).__name__}: {error}")
                continue
            result = self._write(path, replayed=True, batch=batch)
            if isinstance(result, str):
                return Flushed(batches, rows, len(pending) - done, result)
            batches, rows = batches + 1, rows + len(batch.records)
        if batches:
            log.info("database is back: wrote %d spooled batches (%d rows), oldest first", batches, rows)
        return Flushed(batches, rows, 0, None)

    def _write(self, path: Path, *, replayed: bool, batch: Batch | None = None) -> WriteResult | str:
        """Write one spooled batch and remove its file; the problem as text when the database refused."""
        try:
            result = self.sink.write(batch or self.spool.read(path), replayed=replayed)
        except SinkError as error:
            return str(error)
        self.spool.remove(path)
        return result

    def _commit_unspooled(self, batch: Batch) -> Committed:
        try:
            written = self.sink.write(batch)
        except SinkError as error:
            log.critical(
                "LOST %d rows of this cycle: the spool is full and the database is unavailable (%s)",
                len(batch.records),
                error,
            )
            return Committed(None, False, len(batch.records), Flushed(), str(error))
        return Committed(written, False, 0, Flushed(), None)
