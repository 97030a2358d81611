"""What epctl prints, in kubectl's formats: tables from the server's meta.k8s.io Tables,
`-o yaml|json|name`, and kubectl's wording for errors.

Fed by the epctl commands with objects, Tables and errors; writes nothing
itself — every function returns text, so the commands decide stdout or stderr.
"""
from __future__ import annotations

import json
from typing import Any

import yaml

from eventplane.client import kind_name
from eventplane.objects import errors
from eventplane.objects.schema import ResourceInfo

# kubectl's tabwriter: minimum cell width 6, three spaces between columns.
MIN_WIDTH = 6
PADDING = 3


class UsageError(Exception):
    """The command line asks for something that cannot be done; printed as `error: …`."""


def object_name(info: ResourceInfo, obj: dict[str, Any]) -> str:
    """`deployment.apps/web`: -o name, and the subject of apply's lines."""
    return f"{kind_name(info)}/{(obj.get('metadata') or {}).get('name', '')}"


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def dump(value: Any, output: str) -> str:
    if output == "json":
        return json.dumps(value, indent=4, sort_keys=True, ensure_ascii=False) + "\n"
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False, allow_unicode=True)


def error_text(exc: BaseException) -> str:
    """As kubectl: `Error from server (NotFound): …` for the server's answers, `error: …` for ours."""
    if isinstance(exc, errors.EventplaneError) and getattr(exc, "status", None) is not None:
        return f"Error from server ({exc.reason}): {exc.message}"
    if exc.__class__.__name__ == "UnreachableError":
        return str(exc)
    return f"error: {exc}"


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    return str(value)


def _labels(row: dict[str, Any]) -> str:
    labels = (((row.get("object") or {}).get("metadata") or {}).get("labels")) or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def table_lines(info: ResourceInfo, table: dict[str, Any], *, wide: bool = False, namespace_column: bool = False,
                with_kind: bool = False, show_labels: bool = False, headers: bool = True) -> list[list[str]]:
    """The table's rows as cells, header first, with the columns kubectl would show."""
    columns = [(i, c) for i, c in enumerate(table.get("columnDefinitions") or [])
               if wide or not c.get("priority")]
    namespace_column = namespace_column and info.namespaced
    out: list[list[str]] = []
    if headers:
        out.append((["NAMESPACE"] if namespace_column else []) + [c["name"].upper() for _, c in columns]
                   + (["LABELS"] if show_labels else []))
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        line = [_cell(cells[i] if i < len(cells) else None) for i, _ in columns]
        if with_kind and line:
            line[0] = f"{kind_name(info)}/{line[0]}"
        if namespace_column:
            line.insert(0, ((row.get("object") or {}).get("metadata") or {}).get("namespace", ""))
        if show_labels:
            line.append(_labels(row))
        out.append(line)
    return out


def render(lines: list[list[str]]) -> str:
    """Aligned as Go's tabwriter aligns kubectl's tables: every column but the last padded."""
    if not lines:
        return ""
    n = max(len(line) for line in lines)
    widths = [max(MIN_WIDTH, max((len(line[i]) for line in lines if i < len(line)), default=0) + PADDING)
              for i in range(n)]
    text = []
    for line in lines:
        cells = [c.ljust(widths[i]) if i < len(line) - 1 else c for i, c in enumerate(line)]
        text.append("".join(cells) + "\n")
    return "".join(text)
