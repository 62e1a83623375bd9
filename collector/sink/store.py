"""Where a cycle's batch goes: first the durable spool, then the database, oldest batch first.

Every batch is spooled before it is written, so a batch is never only in memory: the database may be down,
the process may be killed. The database write is an idempotent upsert, so a batch written twice (killed
between the commit and the spool file's removal) still stores each row once.

Nothing can wedge the queue. The database being *away* keeps batches in the spool until it is back. The
database *refusing* a batch for what it holds splits the batch until the refused rows are found: every other
row is stored, the refused ones are set aside in ``refused/`` and journalled, and the spool file goes. A spool
file that cannot be read is moved to ``unreadable/`` and journalled. No exception leaves ``commit`` or
``flush``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from collector.errors import DatabaseAway, RowsRefused
from collector.records import Batch, OpenInterest, PairRun, RejectedRow
from collector.sink.postgres import PostgresSink, WriteResult
from collector.sink.spool import Spool, SpoolUnavailable, as_values

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
    refused_rows: int = 0  # rows the database refused for their content: set aside, not stored


@dataclass(slots=True)
class _Salvaged:
    """What a batch became once the database had its say: what it wrote and what it refused."""

    written: WriteResult = field(default_factory=lambda: WriteResult(0, 0))
    refused: list[tuple[PairRun | OpenInterest | RejectedRow, str]] = field(default_factory=list)

    def add(self, other: _Salvaged) -> _Salvaged:
        written = WriteResult(
            self.written.written + other.written.written, self.written.unchanged + other.written.unchanged
        )
        return _Salvaged(written, self.refused + other.refused)


class Store:
    def __init__(self, sink: PostgresSink, spool: Spool) -> None:
        self.sink = sink
        self.spool = spool

    def commit(self, batch: Batch) -> Committed:
        """Spool ``batch``, write what waits before it, then write it. Never raises."""
        try:
            return self._commit(batch)
        except Exception as error:  # the rule: nothing escapes; the batch is in the spool if it got there
            log.exception(
                "storing this cycle's batch failed unexpectedly; it stays in the spool if it got there"
            )
            return Committed(None, False, 0, Flushed(), f"{type(error).__name__}: {error}")

    def _commit(self, batch: Batch) -> Committed:
        try:
            path: Path | None = self.spool.put(batch)
        except SpoolUnavailable as unavailable:
            log.error(
                "%s: writing this cycle's %d rows straight to the database",
                unavailable,
                len(batch.records),
                extra={"rows": len(batch.records)},
            )
            path = None
        replayed = self.flush(until=path)  # a full spool's backlog drains as soon as the database is back
        if replayed.problem is not None:
            if path is None:
                return self._lost(batch, replayed)
            return Committed(None, True, 0, replayed, replayed.problem)
        try:
            salvaged = self._write(batch, path, replayed=False)
        except DatabaseAway as away:
            if path is None:
                return self._lost(batch, replayed, str(away))
            return Committed(None, True, 0, replayed, str(away))
        return Committed(salvaged.written, path is not None, 0, replayed, None, len(salvaged.refused))

    def flush(self, until: Path | None = None) -> Flushed:
        """Write spooled batches oldest first (only those before ``until``, if given); stop while the database
        is away. Never raises: a file that cannot be read is set aside and the next one goes."""
        batches = rows = 0
        pending = [path for path in self.spool.pending() if until is None or path < until]
        for done, path in enumerate(pending):
            try:
                batch = self.spool.read(path)
            except Exception as error:  # the rule: one file costs only itself, whatever it breaks
                self._quarantine(path, f"{type(error).__name__}: {error}")
                continue
            try:
                self._write(batch, path, replayed=True)
            except DatabaseAway as away:
                return Flushed(batches, rows, len(pending) - done, str(away))
            except Exception as error:
                log.exception("writing spooled batch %s failed unexpectedly", path)
                self._quarantine(path, f"{type(error).__name__}: {error}")
                continue
            batches, rows = batches + 1, rows + len(batch.records)
        if batches:
            log.info(
                "database is back: wrote %d spooled batches (%d rows), oldest first",
                batches,
                rows,
                extra={"batches": batches, "rows": rows},
            )
        return Flushed(batches, rows, 0, None)

    def _write(self, batch: Batch, path: Path | None, *, replayed: bool) -> _Salvaged:
        """Write ``batch`` (salvaging around what the database refuses), then drop its spool file.
        DatabaseAway when the database cannot take anything: the file stays for the next try."""
        salvaged = self._salvage(batch, replayed)
        if salvaged.refused:
            self._set_aside(batch, path, salvaged.refused)
        if path is not None:
            self.spool.remove(path)
        return salvaged

    def _salvage(self, batch: Batch, replayed: bool) -> _Salvaged:
        """Write ``batch``; when the database refuses it for its content, halve it until the refused items
        are alone, and write the rest. A batch with one bad row costs some 2·log2(n) more transactions."""
        try:
            return _Salvaged(self.sink.write(batch, replayed=replayed))
        except RowsRefused as refusal:
            if batch.size <= 1:
                return _Salvaged(refused=[(batch.only_item, str(refusal))]) if batch.size else _Salvaged()
            first, second = batch.halves()
            return self._salvage(first, replayed).add(self._salvage(second, replayed))

    def _set_aside(
        self, batch: Batch, path: Path | None, refused: list[tuple[PairRun | OpenInterest | RejectedRow, str]]
    ) -> None:
        """Keep what the database refused in ``refused/`` and journal it (a refused journal row is only
        kept there)."""
        start = batch.runs[0].cycle_start if batch.runs else datetime.now(UTC)
        name = path.name if path is not None else f"{start:%Y%m%dT%H%M%S%f}.unspooled.batch.json"
        lines = [
            json.dumps(
                {"reason": reason, "kind": type(item).__name__, "values": as_values(item)}, default=str
            )
            for item, reason in refused
        ]
        kept = self.spool.set_aside(name.replace(".batch.json", ".refused.jsonl"), lines)
        for item, reason in refused:
            what = item.symbol if isinstance(item, OpenInterest) else type(item).__name__
            log.error(
                "the database refused %s (%s): set aside in %s, the other rows are stored",
                what,
                reason,
                kept,
                extra={"symbol": what, "stage": "database"},
            )
        entries = [
            RejectedRow(
                start,
                item.venue,
                item.underlying,
                item.expiry,
                "database",
                ordinal,
                item.symbol,
                "row",
                reason,
            )
            for ordinal, (item, reason) in enumerate(refused)
            if isinstance(item, OpenInterest)
        ]
        self._journal(entries)

    def _quarantine(self, path: Path, reason: str) -> None:
        target = self.spool.quarantine(path, reason)
        field_name = "file" if target is not None else "file (not moved)"
        self._journal(
            [
                RejectedRow(
                    datetime.now(UTC),
                    None,
                    None,
                    None,
                    "spool",
                    0,
                    None,
                    field_name,
                    f"{path.name}: {reason}",
                )
            ]
        )

    def _journal(self, entries: list[RejectedRow]) -> None:
        """Journal rejections now when the database takes them, else through the spool; never raises."""
        if not entries:
            return
        batch = Batch([], [], entries)
        try:
            self.sink.write(batch)
            return
        except RowsRefused as refused:
            log.error("%d rejections not journalled (%s): they are in the log above", len(entries), refused)
            return
        except DatabaseAway:
            pass
        try:
            self.spool.put(batch)  # written with the next batch that reaches the database
        except SpoolUnavailable as unavailable:
            log.error(
                "%d rejections not journalled (database away; %s): they are in the log above",
                len(entries),
                unavailable,
            )

    def _lost(self, batch: Batch, replayed: Flushed, problem: str | None = None) -> Committed:
        problem = problem or replayed.problem or "database unavailable"
        log.critical(
            "LOST %d rows of this cycle: the spool cannot take them and the database is unavailable (%s)",
            len(batch.records),
            problem,
            extra={"rows_lost": len(batch.records)},
        )
        return Committed(None, False, len(batch.records), replayed, problem)
