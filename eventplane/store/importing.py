"""Loads a portable history file (portable.py) into an empty log, verbatim.

Fed by `eventplane import` (and the REST import endpoint) with the file's lines; writes
the `events` table with the same positions, hashes and timestamps, checking the chain
as it goes, then rebuilds the `objects` projection. Everything happens in one
transaction under the append lock: a file that breaks anywhere leaves the log empty.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from eventplane.objects.events import GENESIS_HASH, Event

from . import portable
from .append import APPEND_LOCK
from .rebuild import rebuild_objects

BATCH = 5000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLUMNS = ("position", "stream", "stream_version", "type", "uid", "actor", "verb", "request_id",
            "idempotency_key", "trace_id", "causation", "occurred_at", "payload", "prev_hash", "hash")


class ImportRefusedError(Exception):
    """The log is not empty, or the file is not an intact export; `position` names the bad event."""

    def __init__(self, message: str, *, position: int | None = None, not_empty: bool = False) -> None:
        super().__init__(message)
        self.position = position
        self.not_empty = not_empty


@dataclass(frozen=True)
class ImportResult:
    events: int
    first: int
    head: int
    objects: int


async def import_log(conn: asyncpg.Connection, lines: AsyncIterable[bytes] | Iterable[bytes]) -> ImportResult:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        head = await conn.fetchval("SELECT max(position) FROM events")
        if head is not None:
            raise ImportRefusedError(
                f"the log is not empty (it holds events up to position {head}): import needs an empty log; "
                "run `eventplane import` on a new database before the API server first starts there",
                not_empty=True)
        checker: _ChainCheck | None = None
        batch: list[tuple] = []
        number = 0
        async for line in _aiter(lines):
            number += 1
            if not line.strip():
                continue
            if checker is None:
                checker = _ChainCheck(portable.check_header(_json(line)))
                await conn.execute("SELECT eventplane_ensure_partitions($1)", checker.head)
                continue
            event = portable.decode(line, line_number=number)
            checker.check(event)
            batch.append(_record(event))
            if len(batch) >= BATCH:
                await conn.copy_records_to_table("events", records=batch, columns=_COLUMNS)
                batch = []
        if checker is None:
            raise portable.FormatError("the file is empty: no header line")
        if batch:
            await conn.copy_records_to_table("events", records=batch, columns=_COLUMNS)
        checker.finish()
        if checker.first > 1:
            # The events before `first` were detached before the export: keep the anchor so verify checks
            # the first event's link as it did on the source.
            await conn.execute("INSERT INTO events_detached (name, from_position, to_position, last_hash) "
                               "VALUES ($1, 1, $2, $3)", f"before-import-{checker.first}", checker.first,
                               checker.anchor)
        objects = await rebuild_objects(conn)
        return ImportResult(checker.count, checker.first, checker.head, objects)


class _ChainCheck:
    """The file's events must be dense from the header's `first`, each linked to the one before
    and hashing to its own `hash`: the same rules as verify_chain."""

    def __init__(self, header: dict) -> None:
        self.first, self.head, self.expected_count = header["first"], header["head"], header["events"]
        self.position = self.first
        self.prev: bytes | None = GENESIS_HASH if self.first == 1 else None
        self.anchor: bytes | None = None
        self.count = 0

    def check(self, e: Event) -> None:
        if e.position != self.position:
            raise ImportRefusedError(f"position {self.position} is missing from the file (next is {e.position})",
                                     position=self.position)
        if self.prev is None:
            self.anchor = e.prev_hash
        elif e.prev_hash != self.prev:
            raise ImportRefusedError(f"broken chain at position {e.position}: prev_hash does not match the hash "
                                     "of the event before it", position=e.position)
        if not e.verifies():
            raise ImportRefusedError(f"broken chain at position {e.position}: hash does not match the event's "
                                     "contents", position=e.position)
        self.prev, self.position, self.count = e.hash, self.position + 1, self.count + 1

    def finish(self) -> None:
        last = self.position - 1
        if self.count != self.expected_count or (self.count and last != self.head):
            raise ImportRefusedError(f"the file is truncated or padded: the header promises {self.expected_count} "
                                     f"events up to position {self.head}, the file has {self.count} up to {last}",
                                     position=self.position)


def _record(e: Event) -> tuple:
    return (e.position, e.stream.key, e.stream_version, e.type, e.uid, e.actor, e.verb, e.request_id,
            e.idempotency_key, e.trace_id, e.causation, _EPOCH + timedelta(microseconds=e.occurred_at_us),
            e.payload, e.prev_hash, e.hash)


def _json(line: bytes):
    try:
        return json.loads(line)
    except ValueError as exc:
        raise portable.FormatError(f"line 1: not JSON ({exc})") from exc


async def _aiter(lines: AsyncIterable[bytes] | Iterable[bytes]):
    if hasattr(lines, "__aiter__"):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line
