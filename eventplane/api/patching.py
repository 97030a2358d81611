"""The four patch types applied to the current object: JSON Patch, JSON merge patch,
strategic merge patch (built-in kinds only; custom resources answer 415, as
Kubernetes does) and server-side apply.

Fed by the registry with the current object and the decoded patch; returns the
patched object and the resourceVersion precondition the patch carried.
"""
from __future__ import annotations

import copy
from typing import Any

from eventplane.objects import errors
from eventplane.objects.patch import (apply_json_patch, apply_merge_patch, apply_strategic_merge_patch,
                                      server_side_apply)
from eventplane.objects.schema import ResourceInfo

from . import strategy
from .codec import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH


def patch_object(info: ResourceInfo, old: dict[str, Any] | None, patch: Any, patch_type: str, *, caller: Any,
                 opts: Any, subresource: str, now: str) -> tuple[dict[str, Any], int | None]:
    base = copy.deepcopy(old) if old is not None else None
    if patch_type == APPLY_PATCH:
        if not opts.field_manager:
            raise errors.InvalidError('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                                      "is required for apply patch",
                                      causes=(errors.Cause("FieldValueRequired", "Required value: is required "
                                                                                 "for apply patch", "fieldManager"),))
        if not isinstance(patch, dict):
            raise errors.BadRequestError("error decoding YAML: the apply configuration must be an object")
        applied = strategy.check_type_meta(info, copy.deepcopy(patch))
        new = server_side_apply(base, applied, strategy.schema_node(info), manager=opts.field_manager,
                                force=opts.force, api_version=info.api_version, now=now, subresource=subresource)
        return new, _precondition(patch)
    if base is None:
        raise errors.EventplaneError("no object to patch")
    if patch_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise errors.BadRequestError("the JSON patch must be a list of operations")
        new = apply_json_patch(base, patch)
        rv = (new.get("metadata") or {}).get("resourceVersion")
        precondition = int(rv) if rv and str(rv) != (old or {}).get("metadata", {}).get("resourceVersion") else None
        return new, precondition
    if not isinstance(patch, dict):
        raise errors.BadRequestError("the patch must be a JSON object")
    if patch_type == MERGE_PATCH:
        return apply_merge_patch(base, patch), _precondition(patch)
    if patch_type == STRATEGIC_PATCH:
        if info.custom:
            raise errors.UnsupportedMediaTypeError(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
        return apply_strategic_merge_patch(base, patch, strategy.schema_node(info)), _precondition(patch)
    raise errors.UnsupportedMediaTypeError(
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}, {APPLY_PATCH}")


def _precondition(patch: Any) -> int | None:
    rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
    if not rv:
        return None
    try:
        return int(str(rv))
    except ValueError:
        raise errors.BadRequestError(f'invalid resource version "{rv}"') from None
