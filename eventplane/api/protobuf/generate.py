"""Derives the protobuf message table the decoder needs from a kubectl binary.

Run at development time, not at run time:

    python -m eventplane.api.protobuf.generate [BINARY ...]

Without arguments it takes the newest kubectl beside the one on PATH
(kubectl, kubectl.1.NN) and, for what kubectl does not carry, the anthoscli
beside it (the only binary here that embeds apiextensions v1). Earlier binaries
win: a later one only adds .proto files the earlier ones lack.

Two facts are read from each Go binary, and only the table derived from them
(messages.json, beside this module) is committed:
- the gzipped FileDescriptorProtos that gogo-protobuf registers for every
  k8s.io generated.proto: field numbers, proto types, message references;
- Go's reflection data for the same types: each field's json tag (the JSON name,
  omitempty, inline) and whether its Go type is a pointer. The wire cannot tell
  an omitted field from a written zero, because gogo always writes non-pointer
  scalars; the pointer flag says which present zeros carry meaning
  (replicas: 0, automountServiceAccountToken: false, emptyDir: {}).

Kept: every message of the proto packages that back the served group-versions
(eventplane/objects/schema/resources.json, subresources included), meta/v1,
runtime, resource and intstr, and whatever those reference.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
RESOURCES = HERE.parent.parent / "objects" / "schema" / "resources.json"
META = "k8s.io.apimachinery.pkg.apis.meta.v1"
ALWAYS = (META, "k8s.io.apimachinery.pkg.runtime", "k8s.io.apimachinery.pkg.api.resource",
          "k8s.io.apimachinery.pkg.util.intstr")
APIEXT = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1"
# Messages whose JSON form is not an object of their fields; decode.py knows each kind.
SPECIAL = {
    f"{META}.Time": "time",
    f"{META}.MicroTime": "microtime",
    f"{META}.Duration": "duration",
    f"{META}.FieldsV1": "raw",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "raw",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    f"{APIEXT}.JSON": "raw",
    f"{APIEXT}.JSONSchemaPropsOrArray": "schemaorarray",
    f"{APIEXT}.JSONSchemaPropsOrBool": "schemaorbool",
    f"{APIEXT}.JSONSchemaPropsOrStringArray": "schemaorstringarray",
}
_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
_TYPE_MESSAGE = 11


# --- protobuf wire format, just enough for descriptor.proto ---------------------------------------------------

def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out, i, n = [], 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 2:
            ln, i = _varint(buf, i)
            val, i = buf[i:i + ln], i + ln
        elif wire == 1:
            val, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wire == 5:
            val, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((num, val))
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    val = shift = 0
    while True:
        b = buf[i]
        i += 1
        val |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return val, i


@dataclass
class ProtoField:
    number: int
    name: str
    type: int
    repeated: bool
    type_name: str = ""  # fully qualified, without the leading dot


@dataclass
class ProtoMessage:
    name: str  # fully qualified
    fields: list[ProtoField] = field(default_factory=list)
    map_entry: bool = False


@dataclass
class ProtoFile:
    name: str
    package: str
    go_package: str
    messages: list[ProtoMessage]


def parse_file(buf: bytes) -> ProtoFile:
    name = package = go_package = ""
    messages: list[ProtoMessage] = []
    for num, val in _fields(buf):
        if num == 1:
            name = val.decode()
        elif num == 2:
            package = val.decode()
        elif num == 8:
            go_package = next((v.decode() for n, v in _fields(val) if n == 11), "")
    for num, val in _fields(buf):
        if num == 4:
            _parse_message(val, package, messages)
    return ProtoFile(name, package, go_package, messages)


def _parse_message(buf: bytes, scope: str, out: list[ProtoMessage]) -> None:
    parts = _fields(buf)
    msg = ProtoMessage(f"{scope}.{next(v.decode() for n, v in parts if n == 1)}")
    out.append(msg)
    for num, val in parts:
        if num == 2:
            f = dict(_fields(val))
            msg.fields.append(ProtoField(number=f[3], name=f[1].decode(), type=f[5], repeated=f.get(4) == 3,
                                         type_name=f.get(6, b"").decode().lstrip(".")))
        elif num == 3:
            _parse_message(val, msg.name, out)
        elif num == 7:
            msg.map_entry = dict(_fields(val)).get(7) == 1


def embedded_files(data: bytes) -> list[ProtoFile]:
    """The generated.proto descriptors a Go binary registers, gzipped, in its read-only data."""
    found, i = [], data.find(_GZIP)
    while i >= 0:
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[i:i + (4 << 20)])
        except zlib.error:
            raw = b""
        if raw[:1] == b"\x0a" and b"generated.proto" in raw[:200]:
            try:
                f = parse_file(raw)
            except (ValueError, IndexError, KeyError, StopIteration):
                f = None
            if f and f.name.endswith("/generated.proto") and f.package.startswith("k8s.io."):
                found.append(f)
        i = data.find(_GZIP, i + 1)
    return found


# --- Go reflection data (ELF, amd64, Go 1.22+ abi.Type layout) -----------------------------------------------

_KIND_ARRAY, _KIND_MAP, _KIND_PTR, _KIND_SLICE, _KIND_STRING, _KIND_STRUCT = 17, 21, 22, 23, 24, 25
# Where the uncommon part (the package path of a named type) follows each kind's own header.
_UNCOMMON_AT = {_KIND_STRUCT: 80, _KIND_PTR: 56, _KIND_SLICE: 56, _KIND_ARRAY: 72}


@dataclass(frozen=True)
class GoField:
    json_name: str  # "" for an inlined embedded struct, "-" for a field JSON never shows
    omitempty: bool
    pointer: bool
    embedded: bool


@dataclass
class GoTypes:
    """Named k8s.io types: struct fields by protobuf field number, and the kind of every named type."""

    structs: dict[tuple[str, str], dict[int, GoField]] = field(default_factory=dict)
    kinds: dict[tuple[str, str], int] = field(default_factory=dict)


class _Elf:
    def __init__(self, data: bytes) -> None:
        self.data = data
        shoff, = struct.unpack_from("<Q", data, 0x28)
        size, count, strndx = struct.unpack_from("<HHH", data, 0x3A)
        heads = [struct.unpack_from("<IIQQQQ", data, shoff + k * size) for k in range(count)]
        names_at = heads[strndx][4]
        self.sections = {}
        for name, _, _, addr, off, sz in heads:
            end = data.index(b"\0", names_at + name)
            self.sections[data[names_at + name:end].decode()] = (addr, off, sz)
        self._ranges = sorted((a, o, s) for a, o, s in self.sections.values() if a)

    def at(self, addr: int) -> int:
        for a, o, s in self._ranges:
            if a <= addr < a + s:
                return addr - a + o
        raise ValueError(f"address {addr:#x} is in no section")


def go_types(data: bytes) -> GoTypes:
    """Walks every type reachable from .typelink and records the k8s.io ones.

    abi.Type on amd64: TFlag at 20 (1 uncommon, 2 extra star, 4 named), Kind at 23,
    Str (a name offset from the start of .rodata) at 40, then each kind's own part
    at 48: Elem of a pointer, slice or array; Key and Elem of a map; PkgPath and the
    Fields slice of a struct, whose fields are {Name *byte, Typ *Type, Offset}.
    A Name is a flag byte (2: a tag follows, 8: embedded), varint length, bytes.
    """
    elf = _Elf(data)
    if ".typelink" not in elf.sections:
        raise ValueError("not a Go binary with a .typelink section")
    base = elf.sections[".rodata"][0]
    _, off, size = elf.sections[".typelink"]
    todo = [base + o for o in struct.unpack_from(f"<{size // 4}i", data, off)]
    seen: set[int] = set()
    out = GoTypes()

    def name_at(addr: int) -> tuple[int, str, str]:
        i = elf.at(addr)
        flags = data[i]
        ln, i = _varint(data, i + 1)
        name, i = data[i:i + ln].decode("utf-8", "replace"), i + ln
        tag = ""
        if flags & 2:
            ln, i = _varint(data, i)
            tag = data[i:i + ln].decode("utf-8", "replace")
        return flags, name, tag

    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        try:
            i = elf.at(t)
        except ValueError:
            continue
        tflag, kind = data[i + 20], data[i + 23] & 31
        named = None
        uncommon_at = _UNCOMMON_AT.get(kind, 48 if kind < _KIND_ARRAY or kind == _KIND_STRING else 0)
        if tflag & 1 and tflag & 4 and uncommon_at:  # uncommon and named
            pkg = name_at(base + struct.unpack_from("<i", data, i + uncommon_at)[0])[1]
            tname = name_at(base + struct.unpack_from("<i", data, i + 40)[0])[1]
            tname = tname[1:] if tflag & 2 else tname
            if pkg.startswith("k8s.io/"):
                named = (pkg, tname.rsplit(".", 1)[-1])
                out.kinds[named] = kind
        if kind in (_KIND_PTR, _KIND_SLICE, _KIND_ARRAY):
            todo.append(struct.unpack_from("<Q", data, i + 48)[0])
        elif kind == _KIND_MAP:
            todo.extend(struct.unpack_from("<QQ", data, i + 48))
        elif kind == _KIND_STRUCT:
            fields_at, count = struct.unpack_from("<QQ", data, i + 56)
            by_number: dict[int, GoField] = {}
            for k in range(count):
                name_ptr, ftype, _ = struct.unpack_from("<QQQ", data, elf.at(fields_at) + 24 * k)
                todo.append(ftype)
                flags, fname, tag = name_at(name_ptr)
                number = _protobuf_number(tag)
                if named and number:
                    by_number[number] = _go_field(fname, tag, embedded=bool(flags & 8),
                                                  pointer=data[elf.at(ftype) + 23] & 31 == _KIND_PTR)
            if named:
                out.structs[named] = by_number
    return out


_TAG = re.compile(r'(\w+):"([^"]*)"')


def _protobuf_number(tag: str) -> int:
    spec = dict(_TAG.findall(tag)).get("protobuf", "")
    parts = spec.split(",")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _go_field(name: str, tag: str, *, embedded: bool, pointer: bool) -> GoField:
    tags = dict(_TAG.findall(tag))
    json_tag = tags.get("json")
    if json_tag is None:
        return GoField(json_name="" if embedded else name, omitempty=False, pointer=pointer, embedded=embedded)
    json_name, *opts = json_tag.split(",")
    if json_name == "-" and not opts:
        return GoField(json_name="-", omitempty=True, pointer=pointer, embedded=embedded)
    if not json_name and not embedded:
        json_name = name
    return GoField(json_name=json_name, omitempty="omitempty" in opts, pointer=pointer, embedded=embedded)


# --- the table -------------------------------------------------------------------------------------------------

def go_package(f: ProtoFile) -> str:
    if f.go_package:
        return f.go_package.split(";")[0]
    assert f.package.startswith("k8s.io."), f.package
    return "k8s.io/" + f.package[len("k8s.io."):].replace(".", "/").replace("_", "-")


def proto_package(definition: str) -> str:
    """io.k8s.api.apps.v1.Deployment -> k8s.io.api.apps.v1 (the swagger name's package, as proto spells it)."""
    pkg = definition.rsplit(".", 1)[0]
    assert pkg.startswith("io.k8s."), definition
    return "k8s.io." + pkg[len("io.k8s."):].replace("-", "_")


def served_api_versions(resources: list[dict]) -> dict[str, str]:
    out = {}
    for r in resources:
        gvs = [(r["group"], r["version"], r["definition"])]
        gvs += [(s["group"], s["version"], s["definition"]) for s in r["subresources"].values()]
        for group, version, definition in gvs:
            api_version = f"{group}/{version}" if group else version
            out.setdefault(api_version, proto_package(definition))
    return dict(sorted(out.items()))


def build(files: list[tuple[ProtoFile, GoTypes]], api_versions: dict[str, str]) -> tuple[dict, list[str]]:
    messages: dict[str, tuple[ProtoMessage, str, GoTypes]] = {}
    for f, types in files:
        for m in f.messages:
            messages.setdefault(m.name, (m, go_package(f), types))
    roots = set(api_versions.values()) | set(ALWAYS)
    todo = [name for name, (m, _, _) in messages.items() if name.rsplit(".", 1)[0] in roots and not m.map_entry]
    kept: dict[str, list] = {}
    special: dict[str, str] = {}
    notes: list[str] = []
    while todo:
        name = todo.pop()
        if name in kept or name in special:
            continue
        if name not in messages:
            raise SystemExit(f"message {name} is referenced but no binary carries its .proto")
        msg, gopkg, types = messages[name]
        short = name[len(name.rsplit(".", 1)[0]) + 1:]
        kind = types.kinds.get((gopkg, short))
        if name in SPECIAL:
            special[name] = SPECIAL[name]
        elif kind in (_KIND_SLICE, _KIND_ARRAY) and [f.name for f in msg.fields] == ["items"]:
            special[name] = "items"  # a named Go slice (ExtraValue): the JSON is the list itself
        # A special message is read by field number in decode.py: its rows keep the .proto names.
        go = None if name in special else types.structs.get((gopkg, short))
        if go is None and name not in special:
            notes.append(f"no Go struct for {name}: proto names, every field treated as omitempty")
        rows = []
        for f in msg.fields:
            gf = (go or {}).get(f.number) or GoField(json_name=f.name, omitempty=go is not None or name not in special,
                                                     pointer=False, embedded=False)
            if gf.json_name == "-":
                continue
            flags = ("r" if f.repeated else "") + ("p" if gf.pointer else "") + ("o" if gf.omitempty else "")
            ref = None
            if f.type == _TYPE_MESSAGE:
                target = messages.get(f.type_name)
                if target and target[0].map_entry:
                    key, value = sorted(target[0].fields, key=lambda x: x.number)
                    flags = flags.replace("r", "m")
                    ref = [key.type, value.type, value.type_name or None]
                    if value.type_name:
                        todo.append(value.type_name)
                else:
                    ref = f.type_name
                    todo.append(f.type_name)
            if gf.embedded and not gf.json_name:
                flags += "i"
            rows.append([f.number, gf.json_name, f.type, "".join(sorted(flags)), ref])
        kept[name] = sorted(rows)
    return {"apiVersions": api_versions, "messages": dict(sorted(kept.items())),
            "special": dict(sorted(special.items()))}, notes


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
    kubectls = [p for p in here.glob("kubectl*") if re.fullmatch(r"kubectl(\.\d+\.\d+)?", p.name)]
    newest = max(kubectls, key=_client_version)
    extra = here / "anthoscli"
    return [newest] + ([extra] if extra.exists() else [])


def _client_version(binary: Path) -> tuple[int, ...]:
    try:
        out = subprocess.run([str(binary), "version", "--client", "-o", "json"], capture_output=True, text=True,
                             timeout=30).stdout
        info = json.loads(out)["clientVersion"]
        return int(info["major"]), int(re.match(r"\d+", info["minor"])[0])
    except (OSError, ValueError, KeyError, TypeError, subprocess.TimeoutExpired):
        return (0, 0)


def main(argv: list[str]) -> int:
    binaries = [Path(a) for a in argv] or default_binaries()
    files: list[tuple[ProtoFile, GoTypes]] = []
    sources: dict[str, str] = {}
    for binary in binaries:
        data = binary.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        protos = [f for f in embedded_files(data) if f.package not in {p.package for p, _ in files}]
        if not protos:
            continue
        types = go_types(data)
        if not types.structs:
            raise SystemExit(f"{binary}: no Go type data read (a Go release with another abi.Type layout?)")
        for f in protos:
            files.append((f, types))
            sources[f.package] = binary.name
    api_versions = served_api_versions(json.loads(RESOURCES.read_text()))
    table, notes = build(files, api_versions)
    used = {name.rsplit(".", 1)[0] for name in table["messages"]}
    table["sources"] = {pkg: src for pkg, src in sorted(sources.items()) if pkg in used}
    text = _dump(table)
    (HERE / "messages.json").write_text(text)
    for note in notes:
        print(note, file=sys.stderr)
    print(f"{len(table['messages'])} messages from {len(used)} packages "
          f"({', '.join(sorted(set(sources.values())))}), {len(text) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
