"""Export → import into a fresh database gives the same log, byte for byte, and the same objects;
a file with one changed byte, a gap or a truncation is refused, naming the position."""
from __future__ import annotations

import base64
import json

import asyncpg
import pytest

from eventplane.store import EventStore
from eventplane.store.exporting import export_lines
from eventplane.store.importing import ImportRefusedError, import_log
from eventplane.store.portable import FormatError, microseconds, timestamp
from tests.support.builders import ALICE, configmap, create, ctx, delete, update
from tests.support.servers import drop_database, fresh_database


@pytest.fixture
async def history(store):
    """Creates, updates (with an idempotency key and a causation) and a delete: 9 events."""
    web = configmap("web", color="blue")
    await store.append(create(web), ALICE)
    for name in ("a", "b", "c"):
        await store.append(create(configmap(name, "shop")), ALICE)
    await store.append(update({**web, "data": {"color": "green"}}, expected=1),
                       ctx("bob", "update", idempotency_key="k-1", causation=2))
    obj = (await store.read_stream(create(configmap("b", "shop")).stream))[0].object()
    await store.append(delete(obj), ctx("bob", "delete"))
    await store.append(create(configmap("b", "shop", again="yes")), ALICE)
    await store.append(update({**web, "data": {"color": "red"}}, expected=5), ctx("carol", "update"))
    await store.append(create(configmap("ü-ñ", "shop", text="ünïcödé ✓")), ALICE)
    return store


@pytest.fixture
async def empty_url(servers, template):
    url = await fresh_database(servers)
    yield url
    await drop_database(servers, url)


async def _export(store: EventStore, **kw) -> list[bytes]:
    return [line async for line in export_lines(store.pool, **kw)]


async def _rows(url: str, table: str, order: str) -> list[tuple]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")]
    finally:
        await conn.close()


async def _import(url: str, lines) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await import_log(conn, lines)
    finally:
        await conn.close()


async def test_the_file_is_a_header_and_one_line_per_event(history):
    lines = await _export(history)
    header = json.loads(lines[0])
    assert header == {"kind": "EventplaneExport", "version": 1, "events": 9, "first": 1, "head": 9}
    events = [json.loads(line) for line in lines[1:]]
    assert [e["position"] for e in events] == list(range(1, 10))
    fifth = events[4]
    assert set(fifth) == {"position", "stream", "streamVersion", "type", "uid", "actor", "verb", "requestId",
                          "idempotencyKey", "traceId", "causation", "occurredAt", "payload", "prevHash", "hash"}
    assert (fifth["actor"], fifth["idempotencyKey"], fifth["causation"]) == ("bob", "k-1", 2)
    stored = (await history.read_all(after=4, limit=1))[0]
    assert base64.b64decode(fifth["payload"]) == stored.payload and fifth["hash"] == stored.hash.hex()
    assert fifth["occurredAt"].endswith("Z") and len(fifth["occurredAt"]) == len("2026-11-28T03:57:23.123456Z")
    assert microseconds(fifth["occurredAt"]) == stored.occurred_at_us


def test_timestamps_round_trip_to_the_microsecond():
    for us in (0, 1, 1_764_302_243_000_001, 1_764_302_243_999_999):
        assert microseconds(timestamp(us)) == us


async def test_until_stops_at_a_position(history):
    lines = await _export(history, until=4)
    assert json.loads(lines[0])["events"] == 4 and len(lines) == 5


async def test_import_reproduces_events_and_objects(history, database_url, empty_url):
    result = await _import(empty_url, await _export(history))
    assert (result.events, result.first, result.head, result.objects) == (9, 1, 9, 5)
    assert await _rows(empty_url, "events", "position") == await _rows(database_url, "events", "position")
    assert await _rows(empty_url, "objects", "stream") == await _rows(database_url, "objects", "stream")
    async with EventStore.connect(empty_url) as imported:
        assert (await imported.verify()).ok
        # appends continue the imported chain
        await imported.append(create(configmap("after-import")), ALICE)
        assert (await imported.verify()).checked == 10


async def test_a_changed_byte_is_refused_naming_its_position(history, empty_url):
    lines = await _export(history)
    event = json.loads(lines[6])
    payload = bytearray(base64.b64decode(event["payload"]))
    payload[-1] ^= 1
    event["payload"] = base64.b64encode(bytes(payload)).decode()
    lines[6] = json.dumps(event).encode() + b"\n"
    with pytest.raises(ImportRefusedError, match="position 6: hash does not match") as caught:
        await _import(empty_url, lines)
    assert caught.value.position == 6
    assert await _rows(empty_url, "events", "position") == []  # nothing of a refused file stays


async def test_a_changed_field_a_gap_and_a_truncation_are_refused(history, empty_url):
    lines = await _export(history)
    tampered = [*lines]
    tampered[3] = tampered[3].replace(b'"actor":"alice"', b'"actor":"mallory"')
    with pytest.raises(ImportRefusedError, match="position 3"):
        await _import(empty_url, tampered)
    with pytest.raises(ImportRefusedError, match="position 4 is missing"):
        await _import(empty_url, lines[:4] + lines[5:])
    with pytest.raises(ImportRefusedError, match="truncated"):
        await _import(empty_url, lines[:-1])
    with pytest.raises(FormatError, match="line 1"):
        await _import(empty_url, [b'{"kind":"Something"}\n'])


async def test_import_refuses_a_log_that_is_not_empty(history):
    with pytest.raises(ImportRefusedError, match="not empty") as caught:
        async with history.pool.acquire() as conn:
            await import_log(conn, await _export(history))
    assert caught.value.not_empty
