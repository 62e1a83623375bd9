"""A durable local spool: every batch lands on disk before the database sees it, and leaves once stored.

One file per batch, named by its cycle start so that names sort in time order. A file is written under a
temporary name, fsynced, renamed and its directory fsynced: after a crash it is either whole or absent. Its
first line carries a SHA-256 of the rest, so a file changed on disk is quarantined rather than replayed.

Nothing a file holds can stop the spool: a file that cannot be read, or holds anything but a batch of the
shape the records define, is moved aside to ``unreadable/`` and the others go on. A directory that cannot be
written is SpoolUnavailable (like a full one), never an exception out of a cycle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from collector.records import Batch, OpenInterest, PairRun, RejectedRow, clean_text

log = logging.getLogger("collector.spool")
_FORMAT = 3  # 3: rows carry their venue (revision 0007); 1 and 2 were Binance's alone, and are read as such
_SUFFIX = ".batch.json"
_HEADER = re.compile(rb"oi-spool ([23]) sha256=([0-9a-f]{64})")
UNREADABLE = "unreadable"
Row = TypeVar("Row", PairRun, OpenInterest, RejectedRow)


class SpoolUnavailable(Exception):
    """The spool cannot take this batch: full, or its directory cannot be written."""


class SpoolFull(SpoolUnavailable):
    """Writing this batch would take the spool past its configured size."""


class SpoolFileError(ValueError):
    """A spooled file that is not a whole, unchanged batch."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for leftover in self.directory.glob("*.tmp"):  # a write cut short by a crash: not data
                leftover.unlink()
        except OSError as error:
            log.error(
                "spool directory %s cannot be used (%s): batches go straight to the database, and are lost"
                " while it is away",
                directory,
                error.strerror or error,
            )

    def put(self, batch: Batch) -> Path:
        """Write ``batch`` durably; SpoolFull when it does not fit, SpoolUnavailable when it cannot be
        written."""
        data = encode(batch)
        used = self.size_bytes()
        if used + len(data) > self.max_bytes:
            raise SpoolFull(
                f"spool {self.directory} is full: {used / 1e6:.1f} MB used of {self.max_bytes / 1e6:.1f} MB,"
                f" this batch needs {len(data) / 1e6:.2f} MB"
            )
        start = batch.runs[0].cycle_start if batch.runs else datetime.now(UTC)
        path = self.directory / f"{start:%Y%m%dT%H%M%S%f}-{os.getpid()}{_SUFFIX}"
        temporary = path.with_suffix(".tmp")
        try:
            with temporary.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(path)
            _fsync_directory(self.directory)
        except OSError as error:
            _unlink_quietly(temporary)
            raise SpoolUnavailable(
                f"spool {self.directory} cannot be written: {error.strerror or error}"
            ) from None
        return path

    def pending(self) -> list[Path]:
        """Every spooled batch, oldest first (none when the directory cannot be read)."""
        try:
            return sorted(self.directory.glob(f"*{_SUFFIX}"))
        except OSError:
            return []

    def read(self, path: Path) -> Batch:
        """The batch in ``path``; SpoolFileError (or OSError) when it is not one, whatever it holds."""
        return decode(path.read_bytes())

    def remove(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
            _fsync_directory(self.directory)
        except OSError as error:
            log.error(
                "cannot remove stored batch %s (%s): it will be written again, which stores nothing new",
                path,
                error.strerror or error,
            )

    def quarantine(self, path: Path, reason: str) -> Path | None:
        """Move an unreadable batch aside (never delete data we could not read) and say where."""
        target = self.directory / UNREADABLE / path.name
        reason = clean_text(reason, 300)
        try:
            target.parent.mkdir(exist_ok=True)
            path.replace(target)
        except OSError as error:
            log.error(
                "spooled batch %s is unreadable (%s) and cannot be moved aside (%s): skipped",
                path,
                reason,
                error.strerror or error,
            )
            return None
        log.error(
            "spooled batch %s is unreadable (%s): moved to %s to be looked at",
            path,
            reason,
            target,
            extra={"spool_file": str(path), "quarantined_to": str(target)},
        )
        return target

    def set_aside(self, name: str, lines: list[str]) -> Path | None:
        """Keep ``lines`` (rows the database refused, with the reason) in ``refused/name``, for a person."""
        target = self.directory / "refused" / name
        try:
            target.parent.mkdir(exist_ok=True)
            with target.open("a", encoding="utf-8") as file:
                file.writelines(line + "\n" for line in lines)
        except OSError as error:
            log.error(
                "cannot keep refused rows in %s (%s); they are in the log above",
                target,
                error.strerror or error,
            )
            return None
        return target

    def size_bytes(self) -> int:
        total = 0
        for path in self.pending():
            try:
                total += path.stat().st_size
            except OSError:  # removed meanwhile
                continue
        return total


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


# ---- the codec: derived from the records' own fields, so a new column is one edit in records.py


def encode(batch: Batch) -> bytes:
    payload = json.dumps(
        {
            "runs": [as_values(run) for run in batch.runs],
            "records": [as_values(record) for record in batch.records],
            "rejections": [as_values(rejection) for rejection in batch.rejections],
        },
        separators=(",", ":"),
    ).encode()
    checksum = hashlib.sha256(payload).hexdigest().encode()
    return b"oi-spool %d sha256=%s\n" % (_FORMAT, checksum) + payload


def decode(data: bytes) -> Batch:
    """A spooled file's bytes → its batch; SpoolFileError for anything else, whatever the bytes are."""
    try:
        return _decode(data)
    except SpoolFileError:
        raise
    except Exception as error:  # RecursionError, MemoryError's smaller cousins, anything: not a batch
        raise SpoolFileError(f"{type(error).__name__}: {clean_text(str(error), 200)}") from None


def _decode(data: bytes) -> Batch:
    if data.startswith(b"{"):  # format 1, written before checksums: no header line
        document = _json_object(data)
        if document.get("format") != 1:
            raise SpoolFileError(f"unknown spool format {clean_text(repr(document.get('format')), 40)}")
        version = 1
    else:
        header, _, payload = data.partition(b"\n")
        match = _HEADER.fullmatch(header)
        if match is None:
            raise SpoolFileError("no oi-spool header line")
        if hashlib.sha256(payload).hexdigest().encode() != match[2]:
            raise SpoolFileError("checksum mismatch: the file changed after it was written")
        document = _json_object(payload)
        version = int(match[1])
    runs, records, rejections = document.get("runs"), document.get("records"), document.get("rejections", [])
    if version < 3:  # spooled by a version that collected Binance alone: its rows are Binance's
        runs, records, rejections = (
            _binance_runs(runs),
            _binance_records(records),
            _binance_rejections(rejections),
        )
    return Batch(_rows(PairRun, runs), _rows(OpenInterest, records), _rows(RejectedRow, rejections))


def _binance_records(rows: object) -> object:
    """(symbol, ts, …, open_interest_usd, collected_at) → with venue first and no underlying_price."""
    if not isinstance(rows, list):
        return rows
    return [["binance", *row[:-1], None, row[-1]] if isinstance(row, list) and row else row for row in rows]


def _binance_runs(rows: object) -> object:
    """(cycle_start, underlying, expiry, …) → with venue and scope (the pair, as Binance names it)."""
    if not isinstance(rows, list):
        return rows
    return [_binance_run(row) if isinstance(row, list) and len(row) >= 3 else row for row in rows]


def _binance_run(row: list[object]) -> list[object]:
    underlying, expiry = row[1], row[2]
    yymmdd = f"{expiry[2:4]}{expiry[5:7]}{expiry[8:10]}" if isinstance(expiry, str) else expiry
    return [row[0], "binance", f"{underlying} {yymmdd}", *row[1:]]


def _binance_rejections(rows: object) -> object:
    if not isinstance(rows, list):
        return rows
    return [[row[0], _venue_of(row), *row[1:]] if isinstance(row, list) and row else row for row in rows]


def _venue_of(rejection: list[object]) -> str | None:
    """An unreadable spool file's rejection (stage ``spool``) has no venue; every other one was Binance's."""
    return None if len(rejection) > 3 and rejection[3] == "spool" else "binance"


def _json_object(data: bytes) -> dict[str, Any]:
    document = json.loads(data)
    if not isinstance(document, dict):
        raise SpoolFileError(f"holds a JSON {type(document).__name__}, not a batch object")
    return document


def as_values(row: PairRun | OpenInterest | RejectedRow) -> list[object]:
    """A record's fields in order, as JSON values (exact text for decimals and times)."""
    return [_text(getattr(row, field.name)) for field in fields(row)]


def _text(value: object) -> object:
    """Exact text for Decimal and time values (a JSON number would go through float)."""
    if isinstance(value, date):  # datetime included
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(kind: type[Row], rows: object) -> list[Row]:
    if not isinstance(rows, list):
        raise SpoolFileError(f"{kind.__name__} rows are {type(rows).__name__}, not a list")
    parsers = _parsers(kind)
    decoded = []
    for index, values in enumerate(rows):
        if not isinstance(values, list) or len(values) != len(parsers):
            raise SpoolFileError(f"{kind.__name__} {index} is not a list of {len(parsers)} values")
        try:
            parsed: list[Any] = [parse(value) for parse, value in zip(parsers, values, strict=True)]
            decoded.append(kind(*parsed))
        except ValueError as error:
            raise SpoolFileError(f"{kind.__name__} {index}: {error}") from None
    return decoded


_PARSER_CACHE: dict[type, list[Callable[[object], object]]] = {}


def _parsers(kind: type) -> list[Callable[[object], object]]:
    """One parser per field of ``kind``, from its type hints."""
    if kind not in _PARSER_CACHE:
        hints = typing.get_type_hints(kind)
        _PARSER_CACHE[kind] = [_parser(hints[field.name], field.name) for field in fields(kind)]
    return _PARSER_CACHE[kind]


def _parser(hint: object, name: str) -> Callable[[object], object]:
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        [inner] = [arg for arg in args if arg is not type(None)]
        parse_inner = _parser(inner, name)
        return lambda value: None if value is None else parse_inner(value)
    if typing.get_origin(hint) is typing.Literal:
        return _literal(args, name)
    simple: dict[object, Callable[[object, str], object]] = {
        str: _str,
        int: _int,
        Decimal: _decimal,
        datetime: _datetime,
        date: _date,
    }
    parse = simple[hint]
    return lambda value: parse(value, name)


def _literal(allowed: tuple[object, ...], name: str) -> Callable[[object], object]:
    def parse(value: object) -> object:
        if value not in allowed:
            raise ValueError(f"{name} is {clean_text(repr(value), 40)}, not one of {allowed}")
        return value

    return parse


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} is {type(value).__name__}, not text")
    return value


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} is {type(value).__name__}, not an integer")
    return value


def _decimal(value: object, name: str) -> Decimal:
    try:
        number = Decimal(_str(value, name))
    except InvalidOperation:
        raise ValueError(f"{name} is {clean_text(repr(value), 40)}, not a number") from None
    if not number.is_finite():
        raise ValueError(f"{name} is {value}, not a finite number")
    return number


def _datetime(value: object, name: str) -> datetime:
    moment = datetime.fromisoformat(_str(value, name))
    if moment.tzinfo is None:
        raise ValueError(f"{name} {clean_text(str(value), 40)} has no time zone")
    return moment


def _date(value: object, name: str) -> date:
    text = _str(value, name)
    if len(text) != 10:
        raise ValueError(f"{name} {clean_text(text, 40)} is not YYYY-MM-DD")
    return date.fromisoformat(text)
