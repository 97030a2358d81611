"""The one-line summary of what one event changed in an object, for `epctl history`
(`spec.replicas 3→5`, `image nginx:1.25→1.27`, `labels +tier=front`, `created`).

Pure: fed two versions of an object (before/after one event) by the history API;
the line is for people, not for parsing.
"""
from __future__ import annotations

from typing import Any

# Bookkeeping the server changes on every write: never news to a reader of history.
IGNORED = {("metadata", "resourceVersion"), ("metadata", "managedFields"), ("metadata", "generation"),
           ("metadata", "selfLink"), ("metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration")}
MAX_CHANGES = 4
MAX_VALUE = 40

Path = tuple[Any, ...]


def summarize(before: dict[str, Any] | None, after: dict[str, Any] | None, *, event_type: str = "") -> str:
    """`created`, `deleted`, or the changes from `before` to `after`, most telling first."""
    if event_type == "Deleted" or after is None:
        return "deleted"
    if before is None:
        return "created"
    parts = changes(before, after)
    if event_type == "Deleting":
        parts.insert(0, "deletion requested")
    if not parts:
        return "no change"
    if len(parts) > MAX_CHANGES:
        parts = parts[:MAX_CHANGES - 1] + [f"(+{len(parts) - MAX_CHANGES + 1} more)"]
    return ", ".join(parts)


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out: list[str] = []
    meta_b, meta_a = before.get("metadata") or {}, after.get("metadata") or {}
    for field in ("labels", "annotations"):
        out.extend(_map_changes(field, meta_b.get(field) or {}, meta_a.get(field) or {}))
    if meta_b.get("deletionTimestamp") is None and meta_a.get("deletionTimestamp") is not None:
        out.append("deletionTimestamp set")
    for path, old, new in _leaf_diff((), before, after):
        if path[:1] == ("metadata",) and (path[1:2] in (("labels",), ("annotations",), ("deletionTimestamp",))):
            continue
        if any(path[:len(i)] == i for i in IGNORED):
            continue
        out.append(_leaf_text(path, old, new))
    return out


def _map_changes(field: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    items = []
    for k in sorted(set(old) | set(new)):
        if ("metadata", field, k) in IGNORED:
            continue
        if k not in old:
            items.append(f"+{k}={_short(new[k])}")
        elif k not in new:
            items.append(f"-{k}")
        elif old[k] != new[k]:
            items.append(f"{k}={_short(old[k])}→{_short(new[k])}")
    return [f"{field} {' '.join(items)}"] if items else []


_MISSING = object()


def _leaf_diff(path: Path, old: Any, new: Any) -> list[tuple[Path, Any, Any]]:
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            out.extend(_leaf_diff(path + (k,), old.get(k, _MISSING), new.get(k, _MISSING)))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (o, n) in enumerate(zip(old, new)):
            out.extend(_leaf_diff(path + (i,), o, n))
        return out
    return [(path, old, new)]


def _leaf_text(path: Path, old: Any, new: Any) -> str:
    if path and path[-1] == "image" and len(path) >= 3 and path[-3] in ("containers", "initContainers"):
        if isinstance(old, str) and isinstance(new, str) and ":" in old and ":" in new and \
                old.rsplit(":", 1)[0] == new.rsplit(":", 1)[0]:
            return f"image {_short(old)}→{_short(new.rsplit(':', 1)[1])}"  # the same image, another tag
        return f"image {_short(old)}→{_short(new)}"
    name = _path_text(path)
    if old is _MISSING:
        return f"+{name}={_short(new)}"
    if new is _MISSING:
        return f"-{name}"
    return f"{name} {_short(old)}→{_short(new)}"


def _path_text(path: Path) -> str:
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def _short(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, (dict, list)):
        text = "{…}" if isinstance(value, dict) else f"[{len(value)} items]"
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"
