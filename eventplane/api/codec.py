"""Bodies in and out: JSON and YAML decoding with duplicate-field detection, media
type negotiation (Table, aggregated discovery), and encoding of responses.

Fed by the REST handlers with raw request bytes and the Accept header;
its output goes straight onto the wire.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from eventplane.objects import errors

from . import protobuf

JSON = "application/json"
YAML = "application/yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


@dataclass(frozen=True)
class MediaType:
    type: str
    params: dict[str, str] = field(default_factory=dict)


_ACCEPTS: dict[str, tuple[MediaType, ...]] = {}  # clients send the same few Accept headers


def parse_accept(header: str | None) -> list[MediaType]:
    if not header:
        return [MediaType(JSON)]
    known = _ACCEPTS.get(header)
    if known is None:
        known = tuple(_parse_accept(header))
        if len(_ACCEPTS) >= 256:
            _ACCEPTS.clear()
        _ACCEPTS[header] = known
    return list(known)


def _parse_accept(header: str) -> list[MediaType]:
    out = []
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        params = {}
        for b in bits[1:]:
            if "=" in b:
                k, v = b.split("=", 1)
                params[k.strip()] = v.strip()
        out.append(MediaType(bits[0].lower(), params))
    return out


def wants_table(accept: list[MediaType]) -> bool:
    """The first acceptable answer is a meta.k8s.io Table (kubectl get)."""
    for m in accept:
        if m.params.get("as") == "Table" and m.params.get("g") == "meta.k8s.io" and \
                m.params.get("v") in ("v1", "v1beta1"):
            return True
        if m.type in (JSON, YAML, "*/*", "application/*") and "as" not in m.params:
            return False
    return False


def response_type(accept: list[MediaType]) -> str:
    for m in accept:
        if m.type in (JSON, YAML):
            return m.type
        if m.type in ("*/*", "application/*", "application/vnd.kubernetes.protobuf"):
            return JSON
    return JSON


class _Pairs(dict):
    """A decoded JSON object that remembers the keys it saw twice."""

    duplicates: tuple[str, ...] = ()


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _Pairs:
    obj = _Pairs()
    dups = []
    for k, v in pairs:
        if k in obj:
            dups.append(k)
        obj[k] = v
    if dups:
        obj.duplicates = tuple(dups)
    return obj


def duplicate_fields(value: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(value, dict):
        for k in getattr(value, "duplicates", ()):
            found.append(f"{path}.{k}" if path else k)
        for k, v in value.items():
            found.extend(duplicate_fields(v, f"{path}.{k}" if path else k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(duplicate_fields(v, f"{path}[{i}]"))
    return found


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> _Pairs:
    loader.flatten_mapping(node)
    pairs = [(loader.construct_object(k, deep=deep), loader.construct_object(v, deep=deep)) for k, v in node.value]
    return _pairs_hook(pairs)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def decode(body: bytes, content_type: str | None) -> Any:
    """Decode a request body; malformed input is a 400 with the decoder's words."""
    ctype = (content_type or JSON).split(";")[0].strip().lower()
    if not body:
        raise errors.BadRequestError("the request body is empty")
    if ctype == protobuf.MEDIA_TYPE:
        return protobuf.decode_protobuf(body)  # kubectl 1.32+ sends built-in kinds this way
    try:
        if ctype in (YAML, APPLY_PATCH, "application/yml", "text/yaml"):
            return yaml.load(body.decode("utf-8"), Loader=_UniqueKeyLoader)
        return json.loads(body, object_pairs_hook=_pairs_hook)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "yaml" if ctype in (YAML, APPLY_PATCH) else "json"
        raise errors.BadRequestError(f"error decoding {kind} body: {exc}") from None


# Every string of a JSON text, with the colon that makes it a key: the text's strings are
# consecutive matches, since outside strings valid JSON has no quote.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"(\s*+:)?')
_BIG = float(2**63)


def decode_body(body: bytes, content_type: str | None) -> tuple[Any, list[str]]:
    """`(plain(decode(...)), duplicate_fields(decode(...)))`, faster for JSON: orjson parses it, and
    when the text names as many keys as the parsed objects hold (no key was named twice) and no
    integer was too big for orjson (it turns those into floats), that is the answer; otherwise the
    slow decoder runs, so duplicates, big integers and error messages are exactly its own."""
    ctype = (content_type or JSON).split(";")[0].strip().lower()
    if body and ctype in (JSON, MERGE_PATCH, STRATEGIC_PATCH, JSON_PATCH):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            value = _UNDECIDED
        if value is not _UNDECIDED:
            keys = _keys_if_plain(value)
            if keys is not None and keys == _named_keys_quickly(body, keys):
                return value, []
    value = decode(body, content_type)
    return plain(value), duplicate_fields(value)


_UNDECIDED: Any = object()


def _named_keys(body: bytes) -> int:
    return sum(1 for colon in _STRING.findall(body) if colon)


def _named_keys_quickly(body: bytes, keys: int) -> int:
    """`_named_keys(body)` of a text orjson parsed into objects holding `keys` keys, mostly without
    the regular expression: outside its strings valid JSON has a colon only after each key it names.
    So when the text has no more colons than the parsed objects have keys, no key was named twice; and without
    a backslash in the text no string has an escaped quote, so the text between quotes alternates
    outside, inside, outside… and the colons outside are counted directly."""
    if body.count(b":") == keys:
        return keys  # no colon in any string: every colon is a key's
    if b"\\" in body:
        return _named_keys(body)
    return b"".join(body.split(b'"')[0::2]).count(b":")


def _keys_if_plain(value: Any) -> int | None:
    """How many keys the objects in `value` hold; None when it holds a float orjson may have made
    of an integer beyond 64 bits."""
    keys, stack = 0, [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is dict:
            keys += len(v)
            stack.extend(v.values())
        elif t is list:
            stack.extend(v)
        elif t is float and not -_BIG < v < _BIG:
            return None
    return keys


def plain(value: Any) -> Any:
    """Turn decoded _Pairs into plain dicts (what the store and patches work on)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def encode(value: Any, media: str = JSON) -> bytes:
    if media == YAML:
        return yaml.safe_dump(value, sort_keys=False, default_flow_style=False).encode()
    try:
        return orjson.dumps(value)  # a 1,000-object list encodes several times faster than with json
    except TypeError:  # an integer beyond 64 bits, or another value orjson refuses
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
