"""Value validation of custom resources against their openAPIV3Schema: required,
enum, pattern, lengths, bounds, item counts, uniqueness, formats — worded as
kube-apiserver words each rule, so `kubectl apply` prints what users know.

Runs after fields.check_fields (types and unknown fields); returns causes for
an Invalid (422) error.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from typing import Any

from eventplane.objects.errors import Cause

from .nodes import Node


@lru_cache(maxsize=512)
def _pattern(p: str) -> re.Pattern[str]:
    return re.compile(p)


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else (
        "true" if value is True else "false" if value is False else str(value))


def validate_values(obj: Any, node: Node, path: str = "") -> list[Cause]:
    causes: list[Cause] = []
    _walk(obj, node, path, causes)
    return causes


def _walk(value: Any, node: Node, path: str, causes: list[Cause]) -> None:
    s = node.raw
    where = path or "<root>"
    if value is None:
        if not s.get("nullable") and node.type is not None:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: \"null\": {where} in body must be of type "
                                                     f"{node.type}: \"null\"", where))
        return
    if "enum" in s and value not in s["enum"]:
        allowed = ", ".join(_show(v) for v in s["enum"])
        causes.append(Cause("FieldValueNotSupported", f"Unsupported value: {_show(value)}: supported values: "
                                                      f"{allowed}", where))
    if isinstance(value, str):
        if "maxLength" in s and len(value) > s["maxLength"]:
            causes.append(Cause("FieldValueTooLong", f"Too long: may not be more than {s['maxLength']} bytes",
                                where))
        if "minLength" in s and len(value) < s["minLength"]:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {_show(value)}: {where} in body should be at "
                                                     f"least {s['minLength']} chars long", where))
        if "pattern" in s and not _pattern(s["pattern"]).search(value):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {_show(value)}: {where} in body should "
                                                     f"match '{s['pattern']}'", where))
        fmt = s.get("format")
        if fmt == "date-time" and not _is_datetime(value):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {_show(value)}: {where} in body must be of "
                                                     "type date-time", where))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "maximum" in s:
            if s.get("exclusiveMaximum") and value >= s["maximum"]:
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {value}: {where} in body should be less "
                                                         f"than {s['maximum']}", where))
            elif value > s["maximum"]:
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {value}: {where} in body should be less "
                                                         f"than or equal to {s['maximum']}", where))
        if "minimum" in s:
            if s.get("exclusiveMinimum") and value <= s["minimum"]:
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {value}: {where} in body should be "
                                                         f"greater than {s['minimum']}", where))
            elif value < s["minimum"]:
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {value}: {where} in body should be "
                                                         f"greater than or equal to {s['minimum']}", where))
        if "multipleOf" in s and s["multipleOf"] and (value / s["multipleOf"]) % 1:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {value}: {where} in body should be a "
                                                     f"multiple of {s['multipleOf']}", where))
    if isinstance(value, list):
        if "maxItems" in s and len(value) > s["maxItems"]:
            causes.append(Cause("FieldValueTooMany", f"Too many: {len(value)}: must have at most {s['maxItems']} "
                                                     "items", where))
        if "minItems" in s and len(value) < s["minItems"]:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {len(value)}: {where} in body should have "
                                                     f"at least {s['minItems']} items", where))
        if s.get("uniqueItems") or node.list_type == "set":
            seen = []
            for i, item in enumerate(value):
                if item in seen:
                    causes.append(Cause("FieldValueDuplicate", f"Duplicate value: {_show(item)}", f"{where}[{i}]"))
                seen.append(item)
        items = node.items()
        if items is not None:
            for i, item in enumerate(value):
                _walk(item, items, f"{path}[{i}]", causes)
    if isinstance(value, dict):
        if "maxProperties" in s and len(value) > s["maxProperties"]:
            causes.append(Cause("FieldValueTooMany", f"Too many: {len(value)}: must have at most "
                                                     f"{s['maxProperties']} items", where))
        for req in node.required:
            if req not in value:
                sub = f"{path}.{req}" if path else req
                causes.append(Cause("FieldValueRequired", "Required value", sub))
        if node.is_map:
            values = node.values()
            if values is not None:
                for k, v in value.items():
                    _walk(v, values, f"{path}.{k}" if path else k, causes)
        elif not node.is_open:
            for k, v in value.items():
                child = node.field(k)
                if child is not None and not (path == "" and k == "metadata"):
                    _walk(v, child, f"{path}.{k}" if path else k, causes)


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False
