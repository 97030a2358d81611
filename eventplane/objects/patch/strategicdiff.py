"""Computing strategic merge patches, as kubectl does client-side.

`create_two_way_merge_patch(original, modified, node)` is the patch that turns
`original` into `modified` (kubectl edit, label, annotate); its result applied
with strategic.apply_strategic_merge_patch yields `modified`.
`create_three_way_merge_patch(original, modified, current, node)` is kubectl's
client-side apply: the changes from `current` (the live object) to `modified`
(the new configuration), plus the deletions from `original` (the
last-applied configuration) to `modified`; fields others set since stay.

The server does not need these (clients send finished patches); epctl and
tests do. Ported from apimachinery's strategicpatch diff functions, with the
field strategies read from the schema `Node`. The three-way patch always
overwrites (kubectl's default, `--overwrite=true`); conflict detection for
`--overwrite=false` is left out.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import BadRequestError
from ..schema import Node
from .fieldpaths import json_equal
from .strategic import (
    DELETE_PREFIX, DIRECTIVE, ERR_LIST_OF_LISTS, ORDER_PREFIX, PATCHES, RETAIN_KEYS, field_meta,
    go_format, merge_map,
)


@dataclass(frozen=True)
class _Diff:
    set_element_order: bool = True
    ignore_changes: bool = False     # leave additions and changes out of the patch
    ignore_deletions: bool = False   # leave deletions out of the patch
    retain_keys: bool = False        # build a $retainKeys directive for this map


def create_two_way_merge_patch(original: Mapping[str, Any], modified: Mapping[str, Any],
                               node: Node) -> dict[str, Any]:
    """The strategic merge patch from `original` to `modified`."""
    return _diff_maps(dict(original or {}), dict(modified or {}), node, _Diff())


def create_three_way_merge_patch(original: Mapping[str, Any] | None, modified: Mapping[str, Any],
                                 current: Mapping[str, Any], node: Node) -> dict[str, Any]:
    """kubectl apply's patch: `current` → `modified` without deletions, plus the deletions from
    `original` (the last-applied configuration) to `modified`."""
    original, modified, current = dict(original or {}), dict(modified or {}), dict(current or {})
    delta = _diff_maps(current, modified, node, _Diff(ignore_deletions=True))
    deletions = _diff_maps(original, modified, node, _Diff(ignore_changes=True))
    return merge_map(copy.deepcopy(deletions), copy.deepcopy(delta), node, PATCHES)


def _diff_maps(original: dict, modified: dict, node: Node | None, opts: _Diff) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    retained = []
    for key, new in modified.items():
        if opts.retain_keys and new is not None:
            retained.append(key)
        if key not in original:
            if not opts.ignore_changes:
                patch[key] = new
            continue
        old = original[key]
        if key == DIRECTIVE:
            if not isinstance(old, str) or not isinstance(new, str):
                raise BadRequestError(f"invalid value for special key: {DIRECTIVE}")
            if old != new:
                patch[key] = new
            continue
        if type(old) is not type(new) and not (_number(old) and _number(new)):
            if not opts.ignore_changes:
                patch[key] = new
            continue
        if isinstance(old, dict):
            _diff_map_field(key, old, new, patch, node, opts)
        elif isinstance(old, list):
            _diff_list_field(key, old, new, patch, node, opts)
        elif not opts.ignore_changes and not json_equal(old, new):
            patch[key] = new
    if not opts.ignore_deletions:
        for key in original:
            if key not in modified:
                patch[key] = None
    if retained and (patch or any(v is not None and k not in modified for k, v in original.items())):
        patch[RETAIN_KEYS] = sorted(retained, key=go_format)
    return patch


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _diff_map_field(key: str, old: dict, new: dict, patch: dict, node: Node | None, opts: _Diff) -> None:
    sub, strategy, retain, _ = field_meta(node, key)
    if strategy == "replace":
        if not opts.ignore_changes and not json_equal(old, new):
            patch[key] = new
        return
    value = _diff_maps(old, new, sub, replace(opts, retain_keys=retain))
    if value:
        patch[key] = value


def _diff_list_field(key: str, old: list, new: list, patch: dict, node: Node | None, opts: _Diff) -> None:
    sub, strategy, retain, merge_key = field_meta(node, key)
    if strategy != "merge":
        if not opts.ignore_changes and not json_equal(old, new):
            patch[key] = new
        return
    items = sub.items() if sub is not None else None
    additions, deletions, order = _diff_lists(old, new, items, merge_key, replace(opts, retain_keys=retain))
    if additions:
        patch[key] = additions
    if deletions:
        patch[f"{DELETE_PREFIX}/{key}"] = deletions
    if order:
        patch[f"{ORDER_PREFIX}/{key}"] = order


def _diff_lists(old: list, new: list, items: Node | None, merge_key: str,
                opts: _Diff) -> tuple[list, list, list]:
    """Additions and changes, a parallel deletion list (scalars only), and a $setElementOrder list."""
    if not old:
        if not new or opts.ignore_changes:
            return [], [], []
        return list(new), [], []
    kinds = {_kind(v) for v in [*old, *new]}
    if "list" in kinds:
        raise BadRequestError(ERR_LIST_OF_LISTS)
    order: list = []
    if kinds == {"map"}:
        if not merge_key:
            raise BadRequestError(f"cannot merge lists without merge key for {items!r}")
        changes, deletions = _diff_lists_of_maps(old, new, items, merge_key, opts)
        changes = _ordered(changes, new, merge_key)
        same_order = len(old) == len(new) and all(
            _key(o, merge_key) == _key(n, merge_key) for o, n in zip(old, new))
        changes = changes + deletions
        if opts.set_element_order and ((not opts.ignore_changes and (changes or not same_order))
                                       or (not opts.ignore_deletions and changes)):
            order = [{merge_key: v[merge_key]} for v in new]
        return changes, [], order
    additions, deletions = _diff_scalars(old, new, opts)
    additions = _ordered(additions, new, "")
    if opts.set_element_order and ((not opts.ignore_deletions and deletions)
                                   or (not opts.ignore_changes and not json_equal(old, new))):
        order = list(new)
    return additions, deletions, order


def _kind(value: Any) -> str:
    return "map" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def _key(item: Any, merge_key: str) -> str:
    if not isinstance(item, dict) or merge_key not in item:
        raise BadRequestError(f"map: {go_format(item)} does not contain declared merge key: {merge_key}")
    return go_format(item[merge_key])


def _ordered(values: list, order: list, merge_key: str) -> list:
    index: dict[str, int] = {}
    for i, v in enumerate(order):
        index.setdefault(_key(v, merge_key) if merge_key else go_format(v), i)
    rank = {id(v): index.get(_key(v, merge_key) if merge_key else go_format(v), len(order)) for v in values}
    return sorted(values, key=lambda v: rank[id(v)])


def _diff_lists_of_maps(old: list, new: list, items: Node | None, merge_key: str,
                        opts: _Diff) -> tuple[list, list]:
    """Walk both lists sorted by merge key: changed items become patches, new items are added
    whole, missing items get `$patch: delete`."""
    olds = sorted(old, key=lambda v: _key(v, merge_key))
    news = sorted(new, key=lambda v: _key(v, merge_key))
    changes, deletions = [], []
    i = j = 0
    while i < len(olds) or j < len(news):
        ok, nk = (_key(olds[i], merge_key) if i < len(olds) else None,
                  _key(news[j], merge_key) if j < len(news) else None)
        if ok is not None and ok == nk:
            value = _diff_maps(olds[i], news[j], items, opts)
            if value:
                value[merge_key] = news[j][merge_key]
                changes.append(value)
            i += 1
            j += 1
        elif ok is None or (nk is not None and ok > nk):
            if not opts.ignore_changes:
                changes.append(news[j])
            j += 1
        else:
            if not opts.ignore_deletions:
                deletions.append({DIRECTIVE: "delete", merge_key: olds[i][merge_key]})
            i += 1
    return changes, deletions


def _diff_scalars(old: list, new: list, opts: _Diff) -> tuple[list, list]:
    olds = sorted(old, key=go_format)
    news = sorted(new, key=go_format)
    additions, deletions = [], []
    i = j = 0
    while i < len(olds) or j < len(news):
        os_, ns = (go_format(olds[i]) if i < len(olds) else None,
                   go_format(news[j]) if j < len(news) else None)
        if os_ is not None and os_ == ns:
            i += 1
            j += 1
        elif os_ is None or (ns is not None and os_ > ns):
            if not opts.ignore_changes:
                additions.append(news[j])
            j += 1
        else:
            if not opts.ignore_deletions and all(go_format(d) != os_ for d in deletions):
                deletions.append(olds[i])
            i += 1
    return additions, deletions
