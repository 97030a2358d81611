"""The portable history file written by `epctl export` and read by `eventplane import`.

NDJSON, UTF-8, one JSON object per line. The first line is the header:

    {"kind": "EventplaneExport", "version": 1, "events": N, "first": F, "head": H}

`events` lines follow, in position order F..H (dense, so N = H - F + 1; F is 1 unless
old partitions were detached), each with every envelope field of the event:

    {"position": 7, "stream": "apps/deployments/shop/web", "streamVersion": 2,
     "type": "Updated", "uid": "…", "actor": "alice", "verb": "update", "requestId": "…",
     "idempotencyKey": null, "traceId": "…", "causation": null,
     "occurredAt": "2026-11-28T03:57:23.123456Z", "payload": "<base64 of the msgpack bytes>",
     "prevHash": "<hex>", "hash": "<hex>"}

`occurredAt` is RFC 3339 in UTC with exactly six fractional digits, so it converts back to
the microsecond the hash covers. Nothing is re-encoded: payload, prevHash and hash are the
stored bytes, so an import reproduces the log byte for byte and the chain still verifies.
"""
from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from eventplane.objects.events import Event, StreamId

KIND = "EventplaneExport"
VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class FormatError(ValueError):
    """A line is not what the format says; the message names the line."""


def header(*, events: int, first: int, head: int) -> dict[str, Any]:
    return {"kind": KIND, "version": VERSION, "events": events, "first": first, "head": head}


def json_line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def check_header(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise FormatError(f"line 1: not an eventplane export (the header's kind is not {KIND!r})")
    if doc.get("version") != VERSION:
        raise FormatError(f"line 1: export version {doc.get('version')!r} is not supported (only {VERSION})")
    for key in ("events", "first", "head"):
        if not isinstance(doc.get(key), int):
            raise FormatError(f"line 1: the header has no integer {key!r}")
    return doc


def timestamp(us: int) -> str:
    return (_EPOCH + us * _US).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def microseconds(text: str) -> int:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return (when - _EPOCH) // _US


def encode(e: Event) -> bytes:
    return json.dumps({
        "position": e.position, "stream": e.stream.key, "streamVersion": e.stream_version, "type": e.type,
        "uid": e.uid, "actor": e.actor, "verb": e.verb, "requestId": e.request_id,
        "idempotencyKey": e.idempotency_key, "traceId": e.trace_id, "causation": e.causation,
        "occurredAt": timestamp(e.occurred_at_us), "payload": base64.b64encode(e.payload).decode(),
        "prevHash": e.prev_hash.hex(), "hash": e.hash.hex(),
    }, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes | str, *, line_number: int) -> Event:
    try:
        d = json.loads(line)
        return Event(int(d["position"]), StreamId.parse(d["stream"]), int(d["streamVersion"]), d["type"], d["uid"],
                     d["actor"], d["verb"], d["requestId"], d["idempotencyKey"], d["traceId"], d["causation"],
                     microseconds(d["occurredAt"]), base64.b64decode(d["payload"], validate=True),
                     bytes.fromhex(d["prevHash"]), bytes.fromhex(d["hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"line {line_number}: not a valid event ({type(exc).__name__}: {exc})") from exc
