"""Kubernetes protobuf request bodies to the JSON objects the rest of the server works on.

Fed by codec.decode with the raw body of an `application/vnd.kubernetes.protobuf`
request (kubectl 1.31+ sends built-in kinds so); its output is the same dict a
JSON body for that object would have decoded to.

The wire: `k8s\\x00`, then a runtime.Unknown {typeMeta{apiVersion, kind}, raw,
contentEncoding, contentType} whose raw is the object as its generated.proto
message. The message table (messages.json) is derived from kubectl by
generate.py. Each field carries its JSON name and two facts of its Go type,
because gogo-protobuf writes every non-pointer scalar even when it is zero:
- pointer ("p"): the field is on the wire only when it was set, so a present
  zero is kept (replicas: 0, automountServiceAccountToken: false, emptyDir: {});
- omitempty ("o"): a zero of a non-pointer field is dropped, as Go's JSON
  encoder drops it; without omitempty the zero is shown, as Go shows it.
Empty lists, maps and messages follow the same rules (Go would print an empty
non-pointer struct; we drop it, as a JSON client leaves out `status: {}`).
"""
from __future__ import annotations

import base64
import json
import struct
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from eventplane.objects.errors import BadRequestError

MAGIC = b"k8s\x00"
MAX_DEPTH = 100

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
# descriptor.proto FieldDescriptorProto.Type -> wire type
_WIRE = {1: _FIXED64, 2: _FIXED32, 3: _VARINT, 4: _VARINT, 5: _VARINT, 6: _FIXED64, 7: _FIXED32, 8: _VARINT,
         9: _BYTES, 11: _BYTES, 12: _BYTES, 13: _VARINT, 14: _VARINT, 15: _FIXED32, 16: _FIXED64, 17: _VARINT,
         18: _VARINT}
_STRING, _MESSAGE, _BYTES_TYPE, _BOOL = 9, 11, 12, 8
_SIGNED = {3, 5, 14}  # int64, int32, enum: two's complement in ten bytes when negative
_ZIGZAG = {17, 18}
_FIXED_FORMAT = {1: "<d", 2: "<f", 6: "<Q", 7: "<I", 15: "<i", 16: "<q"}


class _Malformed(Exception):
    """Raised inside the reader; decode_protobuf turns it into a 400."""


class _Field:
    __slots__ = ("number", "name", "type", "wire", "repeated", "map", "pointer", "omitempty", "inline",
                 "message", "key_type", "value_type", "value_message", "zero", "_ref")

    def __init__(self, row: list) -> None:
        self.number, self.name, self.type, flags, ref = row
        self.wire = _WIRE[self.type]
        self.repeated, self.map = "r" in flags, "m" in flags
        self.pointer, self.omitempty, self.inline = "p" in flags, "o" in flags, "i" in flags
        self.message: _Message | None = None
        self.key_type = self.value_type = 0
        self.value_message: _Message | None = None
        self.zero: Any = None
        self._ref = ref

    def resolve(self, messages: dict[str, _Message]) -> None:
        ref = self._ref
        if self.map:
            self.key_type, self.value_type, value = ref
            self.value_message = messages[value] if value else None
        elif ref:
            self.message = messages[ref]
        if self.repeated:
            self.zero = []
        elif self.map:
            self.zero = {}
        elif self.message is not None:
            self.zero = _SPECIAL_ZERO.get(self.message.special, {})
        else:
            self.zero = _SCALAR_ZERO.get(self.type, 0)


class _Message:
    __slots__ = ("name", "fields", "special", "always")

    def __init__(self, name: str, rows: list, special: str | None) -> None:
        self.name = name
        self.fields = {row[0]: _Field(row) for row in rows}
        self.special = special
        # Non-pointer fields without omitempty: Go's JSON shows them even when the wire left them out.
        self.always: tuple[_Field, ...] = ()

    def resolve(self, messages: dict[str, _Message]) -> None:
        for f in self.fields.values():
            f.resolve(messages)
        if self.special is None:
            self.always = tuple(f for f in self.fields.values()
                                if not f.pointer and not f.omitempty and not f.inline and f.zero is not None)


_SCALAR_ZERO = {_STRING: "", _BOOL: False, 1: 0.0, 2: 0.0, _BYTES_TYPE: None}
# The JSON zero of each special message; None: never shown when zero (a zero time is unset).
_SPECIAL_ZERO = {"time": None, "microtime": None, "raw": None, "duration": "0s", "quantity": "0",
                 "intorstring": 0, "items": [], "schemaorarray": None, "schemaorbool": None,
                 "schemaorstringarray": None}


def _load() -> tuple[dict[str, _Message], dict[str, str]]:
    table = json.loads((Path(__file__).parent / "messages.json").read_text())
    special = table["special"]
    messages = {name: _Message(name, rows, special.get(name)) for name, rows in table["messages"].items()}
    for m in messages.values():
        m.resolve(messages)
    return messages, table["apiVersions"]


MESSAGES, API_VERSIONS = _load()
_META = "k8s.io.apimachinery.pkg.apis.meta.v1"


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """The JSON form of a Kubernetes protobuf body; a malformed or unknown body is a 400 that says why."""
    if body[:4] != MAGIC:
        raise BadRequestError("protobuf body does not start with the Kubernetes magic number k8s\\x00")
    try:
        api_version, kind, raw, encoding = _envelope(body)
    except (_Malformed, IndexError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"error decoding protobuf envelope (runtime.Unknown): {_why(exc)}") from None
    if not api_version or not kind:
        raise BadRequestError("protobuf body has no apiVersion and kind in its runtime.Unknown typeMeta")
    if encoding:
        raise BadRequestError(f"protobuf body with contentEncoding {encoding!r} is not supported")
    msg = _message_for(api_version, kind)
    try:
        obj = _object(raw, 0, len(raw), msg, 0)
    except (_Malformed, IndexError, UnicodeDecodeError, OverflowError, OSError, ValueError, struct.error) as exc:
        raise BadRequestError(f"error decoding protobuf {api_version} {kind}: {_why(exc)}") from None
    out = {"apiVersion": api_version, "kind": kind}
    out.update(obj)
    return out


def _message_for(api_version: str, kind: str) -> _Message:
    package = API_VERSIONS.get(api_version)
    if package is None:
        raise BadRequestError(f"protobuf bodies of apiVersion {api_version!r} are not supported; send JSON")
    msg = MESSAGES.get(f"{package}.{kind}") or MESSAGES.get(f"{_META}.{kind}")  # DeleteOptions is in every group
    if msg is None or msg.special:
        raise BadRequestError(f"unknown protobuf message type for {api_version} {kind}")
    return msg


def _why(exc: Exception) -> str:
    if isinstance(exc, IndexError):
        return "truncated message (a varint or field runs past the end)"
    return str(exc) or type(exc).__name__


def _envelope(body: bytes) -> tuple[str, str, bytes, str]:
    """runtime.Unknown: typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3 (contentType=4 is unused)."""
    unknown = _delimited_fields(body, 4, len(body))
    type_meta = unknown.get(1, b"")
    meta = _delimited_fields(type_meta, 0, len(type_meta))
    return (meta.get(1, b"").decode(), meta.get(2, b"").decode(), unknown.get(2, b""),
            unknown.get(3, b"").decode())


def _delimited_fields(buf: bytes, i: int, end: int) -> dict[int, bytes]:
    out = {}
    while i < end:
        key, i = _varint(buf, i)
        if key & 7 != _BYTES:
            i = _skip(buf, i, end, key & 7)
            continue
        ln, i = _varint(buf, i)
        stop = _bounded(i, ln, end)
        out[key >> 3] = buf[i:stop]
        i = stop
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    b = buf[i]
    if b < 0x80:
        return b, i + 1
    val, shift = b & 0x7F, 7
    while True:
        i += 1
        b = buf[i]
        val |= (b & 0x7F) << shift
        if b < 0x80:
            return val, i + 1
        shift += 7
        if shift > 63:
            raise _Malformed("varint longer than ten bytes")


def _bounded(i: int, ln: int, end: int) -> int:
    stop = i + ln
    if stop > end:
        raise _Malformed(f"a length-delimited field of {ln} bytes runs past the end of its message")
    return stop


def _skip(buf: bytes, i: int, end: int, wire: int) -> int:
    if wire == _VARINT:
        return _varint(buf, i)[1]
    if wire == _BYTES:
        ln, i = _varint(buf, i)
        return _bounded(i, ln, end)
    if wire == _FIXED64:
        return _bounded(i, 8, end)
    if wire == _FIXED32:
        return _bounded(i, 4, end)
    raise _Malformed(f"unsupported wire type {wire}")


def _scalar(buf: bytes, i: int, end: int, ftype: int, wire: int) -> tuple[Any, int]:
    if wire == _VARINT:
        v, i = _varint(buf, i)
        if ftype == _BOOL:
            return v != 0, i
        if ftype in _SIGNED:
            if v >= 1 << 63:
                v -= 1 << 64
            if ftype != 3 and not -(1 << 31) <= v < 1 << 31:
                v = (v + (1 << 31)) % (1 << 32) - (1 << 31)
        elif ftype in _ZIGZAG:
            v = (v >> 1) ^ -(v & 1)
        return v, i
    size = 8 if wire == _FIXED64 else 4
    stop = _bounded(i, size, end)
    v = struct.unpack(_FIXED_FORMAT[ftype], buf[i:stop])[0]
    if ftype in (1, 2) and v.is_integer() and abs(v) < 1 << 53:
        v = int(v)  # Go's JSON writes 10, not 10.0
    return v, stop


def _object(buf: bytes, i: int, end: int, msg: _Message, depth: int) -> Any:
    """One message as its JSON value: a dict, or a string/number/list for the special types."""
    if depth > MAX_DEPTH:
        raise _Malformed(f"messages nested deeper than {MAX_DEPTH}")
    fields = msg.fields
    present: dict[int, Any] = {}
    while i < end:
        key = buf[i]
        i += 1
        if key >= 0x80:
            key, i = _varint(buf, i - 1)
        num, wire = key >> 3, key & 7
        f = fields.get(num)
        if f is None:
            i = _skip(buf, i, end, wire)
            continue
        if wire != f.wire:
            if wire == _BYTES and f.repeated and f.wire != _BYTES:  # a packed repeated scalar
                ln, i = _varint(buf, i)
                stop = _bounded(i, ln, end)
                items = present.setdefault(num, [])
                while i < stop:
                    v, i = _scalar(buf, i, stop, f.type, f.wire)
                    items.append(v)
                continue
            raise _Malformed(f"field {msg.name.rsplit('.', 1)[1]}.{f.name or num} has wire type {wire}, "
                            f"expected {f.wire}")
        if wire == _BYTES:
            ln, i = _varint(buf, i)
            stop = _bounded(i, ln, end)
            if f.type == _STRING:
                v = buf[i:stop].decode("utf-8", "replace")
            elif f.type == _BYTES_TYPE:
                v = buf[i:stop]
            elif f.map:
                k, v = _entry(buf, i, stop, f, depth + 1)
                present.setdefault(num, {})[k] = v
                i = stop
                continue
            else:
                v = _object(buf, i, stop, f.message, depth + 1)
            i = stop
        else:
            v, i = _scalar(buf, i, end, f.type, wire)
        if f.repeated:
            present.setdefault(num, []).append(v)
        else:
            present[num] = v
    if i != end:
        raise _Malformed(f"the last field of {msg.name.rsplit('.', 1)[1]} runs past the end of the message")
    if msg.special is not None:
        return _special(msg, present)
    out: dict[str, Any] = {}
    for num, v in present.items():
        f = fields[num]
        if f.type == _BYTES_TYPE:
            if f.repeated:
                v = [base64.b64encode(b).decode() for b in v]
            elif v:
                v = base64.b64encode(v).decode()
            else:
                continue
        if f.repeated or f.map:
            if v or not f.omitempty:
                out[f.name] = v
        elif f.inline:
            if v:
                out.update(v)
        elif v is None:
            continue  # a zero time, an empty raw extension
        elif f.pointer or v != f.zero or not f.omitempty:
            out[f.name] = v
    for f in msg.always:
        if f.number not in present:
            out[f.name] = f.zero.copy() if isinstance(f.zero, (list, dict)) else f.zero
    return out


def _entry(buf: bytes, i: int, end: int, f: _Field, depth: int) -> tuple[Any, Any]:
    key: Any = "" if f.key_type == _STRING else 0
    value: Any = None
    while i < end:
        tag, i = _varint(buf, i)
        num, wire = tag >> 3, tag & 7
        ftype = f.key_type if num == 1 else f.value_type if num == 2 else 0
        if not ftype:
            i = _skip(buf, i, end, wire)
            continue
        if wire != _WIRE[ftype]:
            raise _Malformed(f"map entry of {f.name} has wire type {wire} for field {num}")
        if wire == _BYTES:
            ln, i = _varint(buf, i)
            stop = _bounded(i, ln, end)
            if ftype == _STRING:
                v: Any = buf[i:stop].decode("utf-8", "replace")
            elif ftype == _BYTES_TYPE:
                v = base64.b64encode(buf[i:stop]).decode()
            else:
                v = _object(buf, i, stop, f.value_message, depth)
            i = stop
        else:
            v, i = _scalar(buf, i, end, ftype, wire)
        if num == 1:
            key = v
        else:
            value = v
    if i != end:
        raise _Malformed(f"a map entry of {f.name} runs past its end")
    if value is None:
        if f.value_message is not None:
            value = _object(b"", 0, 0, f.value_message, depth)
        else:
            value = "" if f.value_type in (_STRING, _BYTES_TYPE) else _SCALAR_ZERO.get(f.value_type, 0)
    return (key if isinstance(key, str) else str(key)), value


# --- the special types ------------------------------------------------------------------------------------------

def _special(msg: _Message, present: dict[int, Any]) -> Any:
    kind = msg.special
    if kind == "time" or kind == "microtime":
        seconds, nanos = present.get(1, 0), present.get(2, 0)
        if not seconds and not nanos:
            return None
        t = datetime.fromtimestamp(seconds, tz=timezone.utc)
        if kind == "time":
            return t.strftime("%Y-%m-%dT%H:%M:%SZ")
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    if kind == "quantity":
        return present.get(1) or "0"
    if kind == "intorstring":
        return present.get(3, "") if present.get(1, 0) == 1 else present.get(2, 0)
    if kind == "duration":
        return go_duration(present.get(1, 0))
    if kind == "raw":
        return _raw(present.get(1, b""))
    if kind == "items":
        return present.get(1, [])
    if kind == "schemaorarray":
        return present.get(2) or present.get(1)
    if kind == "schemaorbool":
        return present[2] if 2 in present else bool(present.get(1, False))
    if kind == "schemaorstringarray":
        return present.get(2) or present.get(1)
    raise _Malformed(f"no JSON form for special message kind {kind!r}")


def _raw(raw: bytes) -> Any:
    """An embedded JSON document (RawExtension, FieldsV1, apiextensions JSON); a nested protobuf object too."""
    if not raw:
        return None
    if raw[:4] == MAGIC:
        return decode_protobuf(raw)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _Malformed(f"embedded raw JSON does not parse: {exc}") from None


def go_duration(ns: int) -> str:
    """time.Duration.String(): 1h2m3s, 1.5s, 300ms, 0s."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 1_000_000_000:
        unit, prec = ("ns", 0) if u < 1000 else ("µs", 3) if u < 1_000_000 else ("ms", 6)
        return sign + _fraction(u, prec) + unit
    text = _fraction(u % 60_000_000_000, 9) + "s"
    minutes = u // 60_000_000_000
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes // 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _fraction(v: int, prec: int) -> str:
    if not prec:
        return str(v)
    whole, frac = divmod(v, 10 ** prec)
    digits = f"{frac:0{prec}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)
