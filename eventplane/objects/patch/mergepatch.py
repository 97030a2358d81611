"""JSON Merge Patch (RFC 7386) for `application/merge-patch+json` requests.

The only patch type custom resources accept besides JSON Patch and apply. A
null deletes a member, an object merges member by member, anything else
(lists included) replaces. Nulls inside a replacing value are dropped, as the
RFC requires and evanphx/json-patch (kube-apiserver's library) does.
"""
from __future__ import annotations

import copy
from typing import Any

from ..errors import BadRequestError


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """`doc` merged with `patch`; `doc` is not modified. A patch that is not an object is refused
    (400), since a resource must stay an object."""
    if not isinstance(patch, dict):
        raise BadRequestError("Invalid JSON Patch")
    return _merge(copy.deepcopy(doc), patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return _without_nulls(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return copy.deepcopy(value)
