"""metadata.managedFields: who owns which fields, and how ordinary writes move ownership.

The API layer calls `update_managed_fields` on every create, update and patch
(server-side apply goes through apply.py instead) with the object before and
after the write. The fields that changed go to the writing manager's Update
entry and are taken from every other entry; entries left empty are dropped.
This is kube-apiserver's FieldManager.Update (structured-merge-diff's
Updater.Update plus the managedFieldsUpdater, capManagers and stripMeta layers).

Entries are keyed as Kubernetes keys them: manager, operation, subresource and,
for Update entries only, apiVersion — an applier keeps one entry whatever
version it applies with. The list is written sorted as Kubernetes sorts it:
by operation ("Apply" before "Update"), then by time, manager, apiVersion and
subresource.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from ..errors import BadRequestError
from ..schema import Node
from .fieldpaths import FieldSet, compare, created_fields_v1, from_fields_v1, schema, scope_for, to_fields_v1

APPLY = "Apply"
UPDATE = "Update"
MAX_UPDATE_MANAGERS = 10  # Kubernetes' DefaultMaxUpdateManagers
ANCIENT_CHANGES = "ancient-changes"  # the bucket the oldest Update entries are merged into

Identity = tuple[str, str, str, str]  # manager, operation, apiVersion ("" for Apply), subresource


@dataclass(frozen=True)
class Entry:
    """One managedFields entry, decoded."""

    manager: str
    operation: str
    api_version: str
    time: str | None
    fields: FieldSet
    subresource: str = ""

    @property
    def identity(self) -> Identity:
        return identity(self.manager, self.operation, self.api_version, self.subresource)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                               "apiVersion": self.api_version}
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = _encode_fields(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    def describe(self) -> str:
        """The manager as Kubernetes names it in a conflict: `"kubectl-client-side-apply" using apps/v1`."""
        text = _go_quote(self.manager)
        if self.subresource:
            text += f" with subresource {_go_quote(self.subresource)}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text


Managed = dict[Identity, Entry]


def identity(manager: str, operation: str, api_version: str, subresource: str = "") -> Identity:
    return (manager, operation, api_version if operation == UPDATE else "", subresource)


def _go_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


# --- decoding and encoding -----------------------------------------------------------------------

# Every write decodes the stored entries and encodes the new ones, and objects of one kind written
# by one client carry the same few field sets: both directions are remembered. Field sets are
# immutable and shared; an encoding is kept as bytes, so each caller gets dicts of its own.
_MEMO_SIZE = 2048
_decoded: dict[bytes, FieldSet] = {}
_encoded: dict[FieldSet, bytes] = {}


def _decode_fields(raw: Any) -> FieldSet:
    try:
        key = orjson.dumps(raw)
    except TypeError:  # not JSON (msgpack bytes, an integer beyond 64 bits): decoded, not remembered
        return from_fields_v1(raw)
    fields = _decoded.get(key)
    if fields is None:
        fields = from_fields_v1(raw)  # a malformed one raises, and is not remembered
        if len(_decoded) >= _MEMO_SIZE:
            _decoded.clear()
        _decoded[key] = fields
    return fields


def _encode_fields(fields: FieldSet) -> dict[str, Any]:
    encoded = _encoded.get(fields)
    if encoded is None:
        encoded = orjson.dumps(to_fields_v1(fields))
        if len(_encoded) >= _MEMO_SIZE:
            _encoded.clear()
        _encoded[fields] = encoded
    return orjson.loads(encoded)


def decode_managed_fields(entries: Any) -> Managed:
    """Decode a managedFields list; BadRequestError when an entry is malformed or repeated."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise BadRequestError("invalid managed fields: metadata.managedFields must be a list")
    out: Managed = {}
    for raw in entries:
        if not isinstance(raw, Mapping):
            raise BadRequestError("invalid managed fields: each entry must be an object")
        operation = raw.get("operation")
        if operation not in (APPLY, UPDATE):
            raise BadRequestError(f"invalid managed fields: unknown operation {operation!r}")
        if raw.get("fieldsType", "FieldsV1") != "FieldsV1":
            raise BadRequestError(f"invalid managed fields: unknown fieldsType {raw.get('fieldsType')!r}")
        entry = Entry(manager=str(raw.get("manager") or ""), operation=operation,
                      api_version=str(raw.get("apiVersion") or ""), time=raw.get("time"),
                      fields=_decode_fields(raw.get("fieldsV1") or {}),
                      subresource=str(raw.get("subresource") or ""))
        if entry.identity in out:
            raise BadRequestError(f"invalid managed fields: duplicate entry for manager {entry.manager!r}")
        out[entry.identity] = entry
    return out


@lru_cache(maxsize=1024)  # entries' times repeat (one per second at most, per writer)
def _seconds(time: str | None) -> float:
    if not time:
        return 0.0
    try:
        return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def encode_managed_fields(managed: Mapping[Identity, Entry]) -> list[dict[str, Any]]:
    """Entries in Kubernetes' order: operation, time, manager, apiVersion, subresource."""
    entries = sorted(managed.values(), key=lambda e: (e.operation, _seconds(e.time), e.manager,
                                                      e.api_version, e.subresource))
    return [e.encode() for e in entries]


def with_managed_fields(obj: Mapping[str, Any], managed: Mapping[Identity, Entry]) -> dict[str, Any]:
    """A copy of `obj` whose metadata.managedFields is `managed` (absent when there is none)."""
    out = dict(obj)
    metadata = dict(out.get("metadata") or {})
    if managed:
        metadata["managedFields"] = encode_managed_fields(managed)
    else:
        metadata.pop("managedFields", None)
    out["metadata"] = metadata
    return out


def without_managed_fields(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(obj or {})
    if isinstance(out.get("metadata"), Mapping) and "managedFields" in out["metadata"]:
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "managedFields"}
    return out


def _entries_of(obj: Mapping[str, Any] | None) -> Any:
    metadata = (obj or {}).get("metadata")
    return metadata.get("managedFields") if isinstance(metadata, dict) or isinstance(metadata, Mapping) else None


def live_managed(obj: Mapping[str, Any] | None) -> Managed:
    """The entries of a stored object; ones that do not decode are forgotten, as Kubernetes does."""
    try:
        return decode_managed_fields(_entries_of(obj))
    except BadRequestError:
        return {}


def _base_managed(old: Mapping[str, Any] | None, new: Mapping[str, Any], subresource: str) -> Managed:
    """The entries an update starts from (Kubernetes' decodeLiveOrNew): a subresource write never sets
    managedFields; `[]` or `[{}]` in the new object resets them; valid entries in the new object
    replace the stored ones; anything else keeps the stored ones, so that clients unaware of
    managedFields do not wipe them."""
    if subresource:
        return live_managed(old)
    requested = _entries_of(new)
    if isinstance(requested, list) and (requested == [] or requested == [{}]):
        return {}
    try:
        managed = decode_managed_fields(requested)
    except BadRequestError:
        managed = {}
    return managed or live_managed(old)


# --- ordinary writes -----------------------------------------------------------------------------

def update_managed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any], node: Node, *,
                          manager: str, operation: str = UPDATE, api_version: str, now: str,
                          subresource: str = "", reset: Collection[str] | None = None) -> dict[str, Any]:
    """`new` with metadata.managedFields updated for a create (`old` None), update or patch by `manager`.

    `reset` names the top-level fields the request may not change (default: `status` on the main
    resource of a kind that has one; all but `status` and `metadata` on the status subresource).
    Returns a new dict; the inputs are not modified."""
    if operation != UPDATE:
        raise ValueError(f"update_managed_fields records Update operations, not {operation!r}")
    node = schema(node)
    scope = scope_for(node, subresource, reset)
    if old is None and _entries_of(new) is None:
        # A create that brings no managedFields: the writer owns every field it set. One walk
        # writes its entry directly (the general path below gives the same entry, more slowly).
        fields_v1 = created_fields_v1(new, node, scope)
        if fields_v1 is not None:
            return _with_created_entry(new, fields_v1, manager=manager, api_version=api_version, now=now,
                                       subresource=subresource)
    managed = _base_managed(old, new, subresource)
    change = compare(without_managed_fields(old), without_managed_fields(new), node).filter(scope)
    changed = change.added | change.modified
    out: Managed = {}
    for key, entry in managed.items():
        fields = entry.fields - changed - change.removed
        if fields:
            out[key] = entry if fields == entry.fields else Entry(
                entry.manager, entry.operation, entry.api_version, entry.time, fields, entry.subresource)
    if changed:
        # Only a write that changed something refreshes the writer's entry and its time.
        key = identity(manager, UPDATE, api_version, subresource)
        previous = out.get(key)
        out[key] = Entry(manager, UPDATE, api_version, now,
                         (previous.fields if previous else frozenset()) | changed, subresource)
    return with_managed_fields(new, cap_update_managers(out))


def _with_created_entry(new: Mapping[str, Any], fields_v1: dict[str, Any], *, manager: str, api_version: str,
                        now: str, subresource: str) -> dict[str, Any]:
    out = dict(new)
    metadata = dict(out.get("metadata") or {})
    if fields_v1:
        entry = {"manager": manager, "operation": UPDATE, "apiVersion": api_version, "time": now,
                 "fieldsType": "FieldsV1", "fieldsV1": fields_v1}
        if subresource:
            entry["subresource"] = subresource
        metadata["managedFields"] = [entry]
    else:
        metadata.pop("managedFields", None)
    out["metadata"] = metadata
    return out


def cap_update_managers(managed: Managed, limit: int = MAX_UPDATE_MANAGERS) -> Managed:
    """Merge the oldest Update entries into an `ancient-changes` entry per apiVersion until at most
    `limit` Update entries remain, so that managedFields cannot grow without bound."""
    updaters = [e for e in managed.values() if e.operation == UPDATE]
    if len(updaters) <= limit:
        return managed
    out = dict(managed)
    for entry in sorted(updaters, key=lambda e: (_seconds(e.time), e.identity)):
        if sum(1 for e in out.values() if e.operation == UPDATE) <= limit:
            break
        if entry.manager == ANCIENT_CHANGES and not entry.subresource:
            continue
        bucket_key = identity(ANCIENT_CHANGES, UPDATE, entry.api_version)
        bucket = out.get(bucket_key)
        fields = entry.fields | (bucket.fields if bucket else frozenset())
        del out[entry.identity]
        out[bucket_key] = Entry(ANCIENT_CHANGES, UPDATE, entry.api_version, entry.time, fields)
    return out
