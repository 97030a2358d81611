"""Derives the message table encode.py needs from a kubectl binary.

Run at development time, not at run time:

    python -m eventplane.api.openapiv2pb.generate [BINARY ...]

kubectl reads /openapi/v2 as gnostic's `openapi.v2.Document` (the file
openapiv2/OpenAPIv2.proto of github.com/google/gnostic-models). Unlike the
k8s.io generated.proto files, which gogo-protobuf registers gzipped, this one is
compiled by protoc-gen-go, which embeds the FileDescriptorProto uncompressed:
it is found by its leading name field and read with the descriptor reader of
eventplane.api.protobuf.generate. Only the derived table (messages.json, beside
this module) is committed.

Without arguments it reads kubectl.1.27, the oldest client that asks for
protobuf, beside the kubectl on PATH; every kubectl from 1.27 on carries the
same file, and main() refuses binaries that disagree.
"""
from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

from eventplane.api.protobuf.generate import _fields, _varint, parse_file

HERE = Path(__file__).parent
FILE = "openapiv2/OpenAPIv2.proto"
PACKAGE = "openapi.v2"
# The name field (1, length-delimited) that opens the serialized FileDescriptorProto.
_OPENING = b"\x0a" + bytes([len(FILE)]) + FILE.encode()
# FileDescriptorProto's fields and their wire types; protoc writes them in number order.
_FILE_FIELDS = {1: {2}, 2: {2}, 3: {2}, 4: {2}, 5: {2}, 6: {2}, 7: {2}, 8: {2}, 9: {2}, 10: {0, 2}, 11: {0, 2},
                12: {2}, 14: {0}}
_TYPE_MESSAGE = 11
_ORDER = ("kubectl.1.27", "kubectl.1.28", "kubectl.1.29", "kubectl.1.30", "kubectl")


def raw_descriptor(data: bytes) -> bytes:
    """The serialized FileDescriptorProto of openapiv2/OpenAPIv2.proto in a Go binary's read-only data.

    The embedded bytes carry no length: the descriptor ends where the fields stop
    being FileDescriptorProto's, in ascending number order (whatever the linker
    put next, often another descriptor opening with its own field 1).
    """
    start = data.find(_OPENING)
    if start < 0:
        raise ValueError(f"no {FILE} descriptor in this binary")
    i, last = start, 0
    while i < len(data):
        key, j = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire not in _FILE_FIELDS.get(number, ()) or number < last or (number == last and number in (1, 2, 12)):
            break
        if wire == 0:
            _, j = _varint(data, j)
        else:
            length, j = _varint(data, j)
            j += length
        i, last = j, number
    return data[start:i]


def _oneof_members(message: bytes, scope: str, out: set[tuple[str, int]]) -> None:
    """(message, field number) of every field declared in a oneof (FieldDescriptorProto.oneof_index, 9)."""
    parts = _fields(message)
    name = f"{scope}.{next(v.decode() for n, v in parts if n == 1)}"
    for number, value in parts:
        if number == 2:
            f = dict(_fields(value))
            if 9 in f:
                out.add((name, f[3]))
        elif number == 3:
            _oneof_members(value, name, out)


def build(raw: bytes) -> dict:
    """{"messages": {full name: [[number, name, type, flags, message type or null], ...]}}.

    flags: "r" repeated, "1" a member of a oneof (written even when zero: it says which branch is set).
    """
    f = parse_file(raw)
    if f.name != FILE or f.package != PACKAGE:
        raise ValueError(f"expected {FILE} in package {PACKAGE}, found {f.name} in {f.package}")
    oneofs: set[tuple[str, int]] = set()
    for number, value in _fields(raw):
        if number == 4:
            _oneof_members(value, f.package, oneofs)
    messages = {}
    for m in f.messages:
        rows = []
        for field in sorted(m.fields, key=lambda x: x.number):
            flags = ("r" if field.repeated else "") + ("1" if (m.name, field.number) in oneofs else "")
            rows.append([field.number, field.name, field.type, flags,
                         field.type_name if field.type == _TYPE_MESSAGE else None])
        messages[m.name] = rows
    return {"file": f.name, "package": f.package, "go_package": f.go_package,
            "messages": dict(sorted(messages.items()))}


def _dump(table: dict) -> str:
    """Compact JSON with sorted keys, one message per line so that a regeneration diffs readably."""
    def compact(value) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    lines = [f"{compact(k)}:{compact(v)}" for k, v in sorted(table.items()) if k != "messages"]
    messages = ",\n".join(f"{compact(k)}:{compact(v)}" for k, v in table["messages"].items())
    return "{" + ",\n".join(lines + ['"messages":{\n' + messages + "}"]) + "}\n"


def default_binaries() -> list[Path]:
    found = shutil.which("kubectl")
    if not found:
        raise SystemExit("no kubectl on PATH; name the binaries to read")
    here = Path(found).resolve().parent
    binaries = [here / name for name in _ORDER if (here / name).exists()]
    return binaries[:1] + binaries[-1:] if len(binaries) > 1 else binaries


def main(argv: list[str]) -> int:
    binaries = [Path(a) for a in argv] or default_binaries()
    table = None
    for binary in binaries:
        data = binary.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        found = build(raw_descriptor(data))
        if table is None:
            table, source = found, binary.name
        elif found["messages"] != table["messages"]:
            raise SystemExit(f"{binary.name} and {source} carry different {FILE} descriptors")
    if table is None:
        raise SystemExit("no binaries to read")
    table["source"] = source
    text = _dump(table)
    (HERE / "messages.json").write_text(text)
    print(f"{len(table['messages'])} messages of {FILE} from {', '.join(b.name for b in binaries)}, "
          f"{len(text) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
