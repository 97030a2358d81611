"""Subject names of the EVENTS stream.

Every event is published on
    PREFIX.GROUP.RESOURCE.NAMESPACE.NAME.NODE
with `core` for the core group, `_` for no namespace and for no node. NODE is
the node a pod is bound to, so that an agent subscribes to its own pods only
(`PREFIX.core.pods.*.*.node-1`). Tokens are escaped so that every valid
Kubernetes name (dots, colons, anything but '/') is one valid subject token:
characters outside [A-Za-z0-9-] become ~XX (UTF-8 bytes in hex).
"""
from __future__ import annotations

import re

from eventplane.objects.events import StreamId

EMPTY = "_"
_SAFE = re.compile(r"[A-Za-z0-9-]+")
_ESCAPE = re.compile(r"~([0-9a-f]{2})")


def escape(value: str) -> str:
    if not value:
        return EMPTY
    if _SAFE.fullmatch(value):
        return value
    return "".join(c if _SAFE.fullmatch(c) else "".join(f"~{b:02x}" for b in c.encode()) for c in value)


def unescape(token: str) -> str:
    if token == EMPTY:
        return ""
    if "~" not in token:
        return token
    out, i = bytearray(), 0
    while i < len(token):
        m = _ESCAPE.match(token, i)
        if m:
            out.append(int(m.group(1), 16))
            i = m.end()
        else:
            out += token[i].encode()
            i += 1
    return out.decode("utf-8")


def event_subject(prefix: str, stream: StreamId, node: str = "") -> str:
    return ".".join((prefix, escape(stream.group or "core"), escape(stream.resource), escape(stream.namespace),
                     escape(stream.name), escape(node)))


def filter_subject(prefix: str, *, group: str | None = None, resource: str | None = None,
                   namespace: str | None = None, name: str | None = None, node: str | None = None) -> str:
    """A subject filter; None means any value of that token."""
    def tok(v: str | None) -> str:
        return "*" if v is None else escape(v)
    return ".".join((prefix, "*" if group is None else escape(group or "core"), tok(resource), tok(namespace),
                     tok(name), tok(node)))


def all_subjects(prefix: str) -> str:
    return f"{prefix}.>"
