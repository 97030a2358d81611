"""Swagger 2.0 JSON -> gnostic's `openapi.v2.Document`, the protobuf kubectl 1.27-1.30 read /openapi/v2 as.

Fed the decoded JSON document of openapi.OpenAPI.v2(); its bytes are what the
/openapi/v2 handler answers a protobuf Accept with. Field numbers and proto
types come from messages.json (derived from kubectl by generate.py); this
module knows only how gnostic's compiler maps JSON onto those messages:

- a JSON key names the field of the same name in snake_case (`$ref` is `_ref`);
  an `x-*` key becomes a `vendor_extension` NamedAny{name, value: Any{yaml}};
- a message whose one field besides `vendor_extension` is a repeated Named*
  (`additional_properties`, `path`, `response_code`) is a JSON object, each
  member a Named*{name, value};
- `Any` is any JSON value, written as YAML text (kubectl parses it with a
  YAML 1.1 reader, so strings that it would take for something else are quoted);
- the oneof wrappers (TypeItem, ItemsItem, ParametersItem, ...) take the branch
  _SHAPES picks from the value, as gnostic's compiler does.

Keys that name no field (OpenAPI v3 words in a custom resource's schema:
nullable, anyOf, oneOf, not) are left out, as kube-apiserver drops them from v2.
Fields are written in number order and proto3 zero scalars are left out, as Go's
proto.Marshal does; a oneof member is written even when zero (false says which
branch is set: additionalProperties: false).
"""
from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = "openapi.v2."
_ANY = PACKAGE + "Any"
_DOUBLE, _FLOAT, _INT64, _UINT64, _INT32, _BOOL, _STRING, _MESSAGE, _UINT32 = 1, 2, 3, 4, 5, 8, 9, 11, 13
_WIRE = {_DOUBLE: 1, _FLOAT: 5, _INT64: 0, _UINT64: 0, _INT32: 0, _BOOL: 0, _STRING: 2, _MESSAGE: 2, _UINT32: 0}
_INTEGERS = (_INT64, _UINT64, _INT32, _UINT32)


class EncodeError(ValueError):
    """A document value that its field cannot hold; `path` says where (JSON keys and list indexes)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    @property
    def location(self) -> list[str]:
        return self.path[::-1]  # gathered on the way out, innermost first

    def __str__(self) -> str:
        return f"{'.'.join(self.location) or '(document)'}: {self.message}"


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Field:
    __slots__ = ("number", "name", "type", "repeated", "oneof", "message", "tag")

    def __init__(self, row: list) -> None:
        self.number, self.name, self.type, flags, self.message = row
        self.repeated = "r" in flags
        self.oneof = "1" in flags
        self.tag = _varint(self.number << 3 | _WIRE[self.type]) if self.type in _WIRE else b""


class _Message:
    __slots__ = ("name", "fields", "named", "vendor")

    def __init__(self, name: str, rows: list) -> None:
        self.name = name
        self.fields = {row[1]: _Field(row) for row in rows}
        self.vendor = self.fields.get("vendor_extension")
        self.named: _Field | None = None  # set for the messages that are a JSON object of named values


def _load() -> dict[str, _Message]:
    table = json.loads((Path(__file__).parent / "messages.json").read_text())
    messages = {name: _Message(name, rows) for name, rows in table["messages"].items()}
    for m in messages.values():
        rest = [f for f in m.fields.values() if f is not m.vendor]
        if len(rest) == 1 and rest[0].repeated and rest[0].message in messages and \
                list(messages[rest[0].message].fields) == ["name", "value"]:
            m.named = rest[0]
    return messages


MESSAGES = _load()


# --- oneof wrappers and other messages whose JSON is not an object of their fields ------------------------------

def _listed(field: str) -> Callable[[Any], dict]:
    return lambda v: {field: v if isinstance(v, list) else [v]}


def _reference_or(field: str) -> Callable[[Any], dict]:
    return lambda v: {"json_reference" if isinstance(v, dict) and "$ref" in v else field: v}


_NON_BODY = {"header": "header_parameter_sub_schema", "formData": "form_data_parameter_sub_schema",
             "query": "query_parameter_sub_schema", "path": "path_parameter_sub_schema"}
_SECURITY = {"basic": "basic_authentication_security", "apiKey": "api_key_security",
             ("oauth2", "implicit"): "oauth2_implicit_security", ("oauth2", "password"): "oauth2_password_security",
             ("oauth2", "application"): "oauth2_application_security",
             ("oauth2", "accessCode"): "oauth2_access_code_security"}


def _branch(table: dict, key: Any, what: str) -> str:
    if key not in table:
        raise EncodeError(f"no {what} {key!r}")
    return table[key]


def _security(v: dict) -> dict:
    kind = v.get("type")
    return {_branch(_SECURITY, (kind, v.get("flow")) if kind == "oauth2" else kind, "security scheme"): v}


# Each takes the JSON value and returns the message's fields by their proto names.
_SHAPES: dict[str, Callable[[Any], dict]] = {
    "Any": lambda v: {"yaml": to_yaml(v)},
    "TypeItem": _listed("value"),
    "StringArray": _listed("value"),
    "ItemsItem": _listed("schema"),
    "AdditionalPropertiesItem": lambda v: {"boolean" if isinstance(v, bool) else "schema": v},
    "ParametersItem": _reference_or("parameter"),
    "ResponseValue": _reference_or("response"),
    "Parameter": lambda v: {"body_parameter" if v.get("in") == "body" else "non_body_parameter": v},
    "NonBodyParameter": lambda v: {_branch(_NON_BODY, v.get("in"), "parameter location"): v},
    "SchemaItem": lambda v: {"file_schema" if v.get("type") == "file" else "schema": v},
    "SecurityDefinitionsItem": _security,
}
_SHAPES = {PACKAGE + name: shape for name, shape in _SHAPES.items()}
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


@cache
def _field_name(key: str) -> str:
    return "_ref" if key == "$ref" else _CAMEL.sub(r"_\1", key).lower()


# --- the encoder ------------------------------------------------------------------------------------------------

def encode_document(doc: dict) -> bytes:
    """The protobuf `openapi.v2.Document` for a Swagger 2.0 document (as json.loads returns it)."""
    if not isinstance(doc, dict):
        raise EncodeError(f"a Swagger document is a JSON object, not {type(doc).__name__}")
    return _message(doc, MESSAGES[PACKAGE + "Document"])


def _message(value: Any, msg: _Message) -> bytes:
    shape = _SHAPES.get(msg.name)
    if shape is not None:
        return _fields(shape(value), msg, by_proto_name=True)
    if not isinstance(value, dict):
        raise EncodeError(f"{msg.name[len(PACKAGE):]} is a JSON object, not {type(value).__name__}")
    if msg.named is not None:
        return _named(value, msg)
    return _fields(value, msg, by_proto_name=False)


def _fields(value: dict, msg: _Message, *, by_proto_name: bool) -> bytes:
    chunks: list[tuple[int, bytes]] = []
    for key, v in value.items():
        try:
            if key.startswith("x-") and not by_proto_name:
                if msg.vendor is not None:
                    chunks.append((msg.vendor.number, _entry(key, v, msg.vendor)))
                continue
            f = msg.fields.get(key if by_proto_name else _field_name(key))
            if f is None or v is None and f.message != _ANY:  # null is a value only where any value is
                continue
            if f.repeated:
                if not isinstance(v, list):
                    raise EncodeError(f"expected a list, not {type(v).__name__}")
                for i, item in enumerate(v):
                    try:
                        chunks.append((f.number, _value(item, f, always=True)))
                    except EncodeError as exc:
                        exc.path.append(str(i))
                        raise
            else:
                chunk = _value(v, f, always=f.oneof)
                if chunk:
                    chunks.append((f.number, chunk))
        except EncodeError as exc:
            if not by_proto_name:  # a wrapper's branch is no JSON key
                exc.path.append(key)
            raise
    chunks.sort(key=lambda c: c[0])  # stable: repeated fields keep their order
    return b"".join(c for _, c in chunks)


def _named(value: dict, msg: _Message) -> bytes:
    """A JSON object as repeated Named*{name, value}; x-* members as vendor extensions where the message has them."""
    chunks: list[tuple[int, bytes]] = []
    for key, v in value.items():
        f = msg.vendor if key.startswith("x-") and msg.vendor is not None else msg.named
        try:
            chunks.append((f.number, _entry(key, v, f)))
        except EncodeError as exc:
            exc.path.append(key)
            raise
    chunks.sort(key=lambda c: c[0])
    return b"".join(c for _, c in chunks)


def _entry(key: str, value: Any, f: _Field) -> bytes:
    """One Named*{name, value} of the repeated field f."""
    fields = MESSAGES[f.message].fields
    entry = _value(key, fields["name"], always=False) + _value(value, fields["value"], always=False)
    return f.tag + _varint(len(entry)) + entry


def _value(v: Any, f: _Field, *, always: bool) -> bytes:
    """One field: tag and value; b"" for a proto3 zero that Go would not write."""
    t = f.type
    if t == _MESSAGE:
        body = _message(v, MESSAGES[f.message])
        return f.tag + _varint(len(body)) + body
    if t == _STRING:
        if not isinstance(v, str):
            raise EncodeError(f"expected a string, not {type(v).__name__}")
        if not v and not always:
            return b""
        data = v.encode()
        return f.tag + _varint(len(data)) + data
    if t == _BOOL:
        if not isinstance(v, bool):
            raise EncodeError(f"expected a boolean, not {type(v).__name__}")
        return (f.tag + (b"\x01" if v else b"\x00")) if v or always else b""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EncodeError(f"expected a number, not {type(v).__name__}")
    if not v and not always:
        return b""
    if t in _INTEGERS:
        if isinstance(v, float):
            if not v.is_integer():
                raise EncodeError(f"expected an integer, not {v}")
            v = int(v)
        if not -(1 << 63) <= v < 1 << 64:
            raise EncodeError(f"{v} does not fit in 64 bits")
        return f.tag + _varint(v & 0xFFFFFFFFFFFFFFFF)
    if t == _DOUBLE:
        return f.tag + struct.pack("<d", v)
    if t == _FLOAT:
        return f.tag + struct.pack("<f", v)
    raise EncodeError(f"field {f.name} has proto type {t}, which this encoder does not write")


# --- Any.yaml ---------------------------------------------------------------------------------------------------

# Plain scalars a YAML 1.1 reader (kubectl's go-yaml v2) takes for a string; bools, nulls and numbers look alike.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*")
_NOT_STRINGS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
# What a double-quoted YAML scalar may not carry raw, besides what json.dumps escapes: the non-printable
# characters, and the line breaks of YAML 1.1 (NEL, LS, PS), which a reader would fold.
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def to_yaml(value: Any) -> str:
    """Block-style YAML of a JSON value, as gnostic writes Any.yaml: `- group: apps\\n  kind: Deployment\\n`."""
    if isinstance(value, (dict, list)) and value:
        return "".join(_yaml_lines(value, 0))
    return _yaml_scalar(value) + "\n"


def _yaml_lines(value: dict | list, indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    items = value.items() if isinstance(value, dict) else (("-", v) for v in value)
    for k, v in items:
        head = pad + ("-" if isinstance(value, list) else _yaml_string(str(k)) + ":")
        if isinstance(v, dict) and v and isinstance(value, list):
            # "- key: value" with the mapping's other keys under the first
            nested = _yaml_lines(v, indent + 2)
            lines.append(head + " " + nested[0][indent + 2:])
            lines.extend(nested[1:])
        elif isinstance(v, (dict, list)) and v:
            lines.append(head + "\n")
            lines.extend(_yaml_lines(v, indent + 2))
        else:
            lines.append(f"{head} {_yaml_scalar(v)}\n")
    return lines


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise EncodeError(f"{v} is not a JSON number")
        text = repr(v)  # 1e-05 reads as a string in YAML 1.1; 1.0e-05 as a number everywhere
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if isinstance(v, str):
        return _yaml_string(v)
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    raise EncodeError(f"{type(v).__name__} is not a JSON value")


def _yaml_string(s: str) -> str:
    if _PLAIN.fullmatch(s) and s.lower() not in _NOT_STRINGS:
        return s
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(s, ensure_ascii=False))
