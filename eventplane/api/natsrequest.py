"""NATS API requests in and answers out: decoding JSON or msgpack bodies, the caller from
the headers, and the request fields that become registry arguments (namespace,
selectors, resourceVersion, write and delete options), with REST's checks and
REST's error texts.

Fed by natsapi.py and natswatch.py with a message's headers and bytes.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

import msgpack

from eventplane.auth.identity import User
from eventplane.objects import errors
from eventplane.objects.schema import ResourceInfo

from . import codec
from .registry import Caller, WriteOptions

JSON = "application/json"
MSGPACK = "application/msgpack"


def media_type(headers: dict[str, str]) -> str:
    return (headers.get("Content-Type") or JSON).split(";")[0].strip().lower()


def decode_request(data: bytes, media: str) -> tuple[dict[str, Any], list[str]]:
    """The request and the duplicate fields of its body (JSON only: msgpack keeps the last)."""
    if not data:
        return {}, []
    if media == MSGPACK:
        try:
            value = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise errors.BadRequestError(f"error decoding msgpack body: {exc}") from None
        duplicates: list[str] = []
    else:
        value = codec.decode(data, JSON)
        duplicates = codec.duplicate_fields(value.get("body")) if isinstance(value, dict) else []
        value = codec.plain(value)
    if not isinstance(value, dict):
        raise errors.BadRequestError("the request must be an object: {\"resource\": …, \"name\": …, \"body\": …}")
    return value, duplicates


def encode(value: Any, media: str) -> bytes:
    if media == MSGPACK:
        return msgpack.packb(value, use_bin_type=True)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def caller_of(user: User, headers: dict[str, str]) -> Caller:
    request_id = headers.get("X-Request-Id") or str(uuid.uuid4())
    causation = headers.get("X-Eventplane-Causation", "")
    return Caller(user=user.name, groups=tuple(user.groups), request_id=request_id,
                  trace_id=headers.get("traceparent", request_id),
                  causation=int(causation) if causation.isdigit() else None,
                  idempotency_key=headers.get("Idempotency-Key") or None,
                  user_agent=headers.get("User-Agent", ""))


def namespace_of(info: ResourceInfo, req: dict[str, Any], body: Any = None, *, collection: bool = False) -> str:
    if not info.namespaced:
        return ""  # lenient where REST answers 404: a client's default namespace is no error here
    ns = req.get("namespace") or (((body or {}).get("metadata") or {}).get("namespace")
                                  if isinstance(body, dict) else None)
    return ns or ("" if collection else "default")


def subresource(req: dict[str, Any], info: ResourceInfo, allowed: tuple[str, ...]) -> str:
    """The request's subresource ("" for none), when this operation serves it on this resource."""
    sub = req.get("subresource") or ""
    if not sub:
        return ""
    if not isinstance(sub, str) or sub not in info.subresources:
        raise errors.NotFoundError(f'the server could not find the requested resource ({info.resource}/{sub})',
                                   group=info.group, kind=info.resource)
    if sub not in allowed:
        raise errors.MethodNotSupportedError(f'the NATS API does not serve this operation on {info.resource}/{sub}'
                                             + ("; use REST" if sub == "scale" else ""))
    return sub


def required_name(req: dict[str, Any]) -> str:
    name = req.get("name")
    if not name or not isinstance(name, str):
        raise errors.BadRequestError('the request has no "name"')
    return name


def required_body(req: dict[str, Any]) -> dict[str, Any]:
    body = req.get("body")
    if not isinstance(body, dict):
        raise errors.BadRequestError('the request\'s "body" must be an object')
    return body


def selectors(req: dict[str, Any]) -> tuple[Any, Any]:
    from eventplane.objects.selectors import FieldSelector, LabelSelector

    label = LabelSelector.parse(req["labelSelector"]) if req.get("labelSelector") else None
    fields = FieldSelector.parse(req["fieldSelector"]) if req.get("fieldSelector") else None
    return label, fields


def number(value: Any, what: str) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.BadRequestError(f'invalid {what} "{value}"') from None


def read_at(req: dict[str, Any], *, list_: bool = False, limit: int = 0) -> int | None:
    """As rest._read_at: only an Exact resourceVersion (or a paged list with one) reads the past."""
    rv = str(req.get("resourceVersion") or "")
    match = req.get("resourceVersionMatch") or ""
    if match and not rv:
        raise errors.BadRequestError("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if match and match not in ("Exact", "NotOlderThan"):
        raise errors.BadRequestError(f'resourceVersionMatch: Unsupported value: "{match}": supported values: '
                                     '"Exact", "NotOlderThan"')
    if not rv:
        return None
    if not rv.isdigit():
        raise errors.BadRequestError(f'invalid resource version "{rv}": resourceVersion must be an integer')
    if match == "Exact" or (list_ and limit and rv != "0" and match != "NotOlderThan"):
        return int(rv)
    return None


def query_of(req: dict[str, Any]) -> dict[str, str]:
    """The request's scalar fields as REST query parameters would be: what the shared query
    functions of history.py and integrity.py take."""
    return {k: str(v) for k, v in req.items() if v is not None and not isinstance(v, (dict, list))}


def write_options(req: dict[str, Any], duplicates: list[str]) -> WriteOptions:
    o = req.get("options") or {}
    if not isinstance(o, dict):
        raise errors.BadRequestError('"options" must be an object')
    dry = o.get("dryRun")
    dry_values = dry if isinstance(dry, list) else [] if dry in (None, False, "") else [dry]
    for d in dry_values:
        if d not in ("All", True):
            raise errors.BadRequestError(f'Invalid value: "{d}": supported values: "All"')
    validation = o.get("fieldValidation") or "Warn"
    if validation not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequestError(f'Invalid value: "{validation}": fieldValidation must be one of '
                                     '"Ignore", "Warn", or "Strict"')
    return WriteOptions(dry_run=bool(dry_values), field_validation=validation,
                        field_manager=o.get("fieldManager") or "", force=bool(o.get("force")),
                        duplicates=duplicates)


def delete_options(req: dict[str, Any]) -> dict[str, Any]:
    o = req.get("options") or {}
    out: dict[str, Any] = {}
    policy = o.get("propagationPolicy")
    if policy:
        if policy not in ("Orphan", "Background", "Foreground"):
            raise errors.BadRequestError(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                         '"Foreground", "Background", "Orphan"')
        out["propagationPolicy"] = policy
    if o.get("gracePeriodSeconds") is not None:
        out["gracePeriodSeconds"] = number(o["gracePeriodSeconds"], "gracePeriodSeconds")
    if isinstance(o.get("preconditions"), dict):
        out["preconditions"] = o["preconditions"]
    return out
