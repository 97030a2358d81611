"""Server-side apply: merge an applied configuration into the live object and move ownership.

The API layer calls `server_side_apply` for `application/apply-patch+yaml`
requests (live None for a create). It follows kube-apiserver's field manager
over structured-merge-diff v4:

1. merge: the configuration is merged into the live object — struct fields and
   granular maps key by key, associative lists by their map keys, sets as a
   union, atomic values replaced whole;
2. the applier's Apply entry becomes exactly the fields of the configuration;
3. prune: fields the applier applied last time and no longer applies are
   removed, unless some other manager (applier or updater) owns them;
4. conflicts: a field another manager owns whose value this request adds or
   changes is a conflict (409) unless `force`, which moves it to the applier.
   Equal values are no conflict: both managers then own the field. The
   manager "kubectl" may take over, without force, the fields that kubectl's
   client-side apply recorded in the last-applied-configuration annotation,
   and keeps that annotation in step (Kubernetes' lastApplied managers);
5. every other manager loses what the request removed; empty entries go.

An existing object without managedFields (written before tracking, or with its
entries reset) is first given to the placeholder Update manager
"before-first-apply", as Kubernetes does.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from ..errors import ApplyConflictError, BadRequestError, Cause
from ..schema import Node
from .fieldpaths import (
    ASSOC, ATOMIC, FIELDS, LEAF, MISSING, SET, FieldSet, Path, Schema, canonical_json, child, common_shape,
    compare, element_order, empty, ensure_named_fields, indexed, item_element, items, json_equal,
    path_string, raw_fieldset, schema, scope_for, shape, trie,
)
from .managed import (
    APPLY, UPDATE, Entry, Identity, Managed, cap_update_managers, identity, live_managed, with_managed_fields,
    without_managed_fields,
)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL = "kubectl"  # the only manager that upgrades from client-side apply, as in Kubernetes
BEFORE_FIRST_APPLY = "before-first-apply"


def server_side_apply(live: Mapping[str, Any] | None, applied: Mapping[str, Any], node: Node, *,
                      manager: str, force: bool, api_version: str, now: str, subresource: str = "",
                      reset: Collection[str] | None = None) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `live`, with managedFields updated.

    Raises BadRequestError for a malformed configuration and ApplyConflictError for conflicts.
    `reset` names the top-level fields the request may not change (see fieldpaths.scope_for).
    The inputs are not modified."""
    _check_applied(applied, api_version)
    node = schema(node)
    scope = scope_for(node, subresource, reset)
    current = copy.deepcopy(without_managed_fields(live))
    config = {k: copy.deepcopy(v) for k, v in applied.items()
              if k in ("apiVersion", "kind", "metadata") or scope.allows(k)}
    managed = live_managed(live)
    if live is not None and not managed:
        # An object no write has tracked yet: its fields belong to a placeholder, so that the first
        # applier conflicts on what it would change rather than silently claiming it (Kubernetes).
        fields = scope.filter(raw_fieldset(current, node))
        if fields:
            entry = Entry(BEFORE_FIRST_APPLY, UPDATE, api_version, now, fields)
            managed = {entry.identity: entry}

    merged = merge(current, config, node)
    me = identity(manager, APPLY, api_version, subresource)
    previous = managed.get(me)
    applying = dict(managed)
    applying[me] = Entry(manager, APPLY, api_version, previous.time if previous else None,
                         scope.filter(raw_fieldset(config, node, strict=True)), subresource)
    if previous is not None and previous.fields - applying[me].fields:
        # Only what the applier no longer applies can go; re-applying as much or more prunes nothing.
        merged = _prune(merged, applying, previous.fields, node)

    change = compare(current, merged, node).filter(scope)
    conflicts = _conflicts(applying, me, change.added | change.modified)
    if conflicts and not force:
        if manager == KUBECTL:
            allowed = _client_side_applied(current, node)
            conflicts = {k: fields - allowed for k, fields in conflicts.items() if fields - allowed}
        if conflicts:
            raise _conflict_error(applying, conflicts)
        conflicts = _conflicts(applying, me, change.added | change.modified)

    result: Managed = {}
    for key, entry in applying.items():
        fields = entry.fields
        if key != me:
            fields = fields - conflicts.get(key, frozenset()) - change.removed
        if fields or (key == me and (previous is None or not previous.fields)):
            # An applier that never owned anything (a bare Namespace) keeps its entry, so the object
            # records that it was applied and the next identical apply is a no-op; one that withdraws
            # everything it owned goes.
            result[key] = replace(entry, fields=fields)
    if me in result and (previous is None or not json_equal(current, merged)):
        # The applier's time moves when the object changed (or the entry is new), as in Kubernetes.
        result[me] = replace(result[me], time=now)

    if manager == KUBECTL and _annotation(merged, LAST_APPLIED):
        merged = _with_annotation(merged, LAST_APPLIED, last_applied_configuration(applied))
    return with_managed_fields(merged, cap_update_managers(result))


def _check_applied(applied: Mapping[str, Any], api_version: str) -> None:
    if not isinstance(applied, Mapping):
        raise BadRequestError("error decoding YAML: the applied configuration must be an object")
    version = applied.get("apiVersion")
    if version != api_version:
        raise BadRequestError(f"Incorrect version specified in apply patch. Specified patch version: "
                              f"{version or ''}, expected: {api_version}")
    if not applied.get("kind"):
        raise BadRequestError("invalid object type: the applied configuration has no kind")
    metadata = applied.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("managedFields") is not None:
        raise BadRequestError("metadata.managedFields must be nil")


# --- merging -------------------------------------------------------------------------------------

def merge(live: Any, config: Any, node: Node | Schema | None) -> Any:
    """`config` merged into `live` (structured-merge-diff's Merge); both are consumed, not copied."""
    return _merge(live, config, schema(node))


def _merge(live: Any, config: Any, node: Schema | None) -> Any:
    if config is MISSING:
        return live
    if live is MISSING:
        return config
    kind, keys = common_shape(node, live, config)
    if kind in (LEAF, ATOMIC) or (empty(live) and empty(config)):
        return config
    if config is None:
        # A typed map or list keeps its content under an explicit null; an untyped one is replaced.
        return live if node is not None and node.typed else None
    if kind == FIELDS:
        left = live if isinstance(live, dict) else {}
        out = {k: _merge(v, config.get(k, MISSING), child(node, k)) for k, v in left.items()}
        out.update((k, v) for k, v in config.items() if k not in left)
        return out
    return _merge_items(live if isinstance(live, list) else [], config, kind, keys, items(node))


def _merge_items(live: list, config: list, kind: str, keys: tuple[str, ...], item_node: Schema | None) -> list:
    """Merge two sets or associative lists. Items only in the live list keep their place; items in
    both follow the configuration's order; new items come where the configuration puts them."""
    lhs = [(item_element(kind, keys, item, item_node), item) for item in live]  # duplicates kept
    rhs = indexed(kind, keys, config, item_node)
    lmap: dict = {}
    for pe, item in lhs:
        lmap.setdefault(pe, item)
    rmap = dict(rhs)
    shared = [pe for pe, _ in rhs if pe in lmap]
    next_shared = shared.pop(0) if shared else None
    merged_rhs: set = set()
    out: list = []
    li = ri = 0
    while li < len(lhs) or ri < len(rhs):
        if li < len(lhs) and ri < len(rhs):
            pe = lhs[li][0]
            if pe == rhs[ri][0]:
                merged_rhs.add(pe)
                out.append(_merge(lmap[pe], rmap[pe], item_node))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in rmap and next_shared is not None and next_shared != pe:
                li += 1  # a shared item, but not the one due now: it comes in the configuration's order
                continue
        if li < len(lhs):
            pe, item = lhs[li]
            if pe not in rmap:
                out.append(item)
                li += 1
                continue
            if pe in merged_rhs:
                li += 1
                continue
        if ri < len(rhs):
            pe = rhs[ri][0]
            merged_rhs.add(pe)
            out.append(_merge(lmap.get(pe, MISSING), rmap[pe], item_node))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


# --- pruning -------------------------------------------------------------------------------------

def remove_items(value: Any, paths: Collection[Path], node: Node | Schema | None) -> Any:
    """`value` without the given paths (and everything below them) — structured-merge-diff's
    RemoveItems. A map or list emptied by the removal disappears."""
    result = _remove(value, schema(node), trie(paths))
    return {} if result is MISSING else result


def _remove(value: Any, node: Schema | None, tree: dict) -> Any:
    kind, keys = shape(node, value)
    if kind == FIELDS:
        out = {}
        for name, sub in value.items():
            below = tree.get(("f", name))
            if below is None:
                out[name] = sub
            elif None not in below:
                kept = _remove(sub, child(node, name), below)
                if kept is not MISSING:
                    out[name] = kept
        return out if out or not value else MISSING
    if kind in (SET, ASSOC):
        item_node = items(node)
        kept_items = []
        for item in value:
            below = tree.get(item_element(kind, keys, item, item_node))
            if below is None:
                kept_items.append(item)
            elif None not in below:
                kept = _remove(item, item_node, below)
                if kept is not MISSING:
                    kept_items.append(kept)
        return kept_items if kept_items or not value else MISSING
    return value


def _prune(merged: Any, managers: Managed, last: FieldSet, node: Schema) -> Any:
    """Remove what the applier applied last time and no longer applies, unless another manager owns
    it — structured-merge-diff's prune, addBackOwnedItems and addBackDanglingItems."""
    last = ensure_named_fields(last, node)
    owned = ensure_named_fields(frozenset().union(*(e.fields for e in managers.values())), node)
    everything = ensure_named_fields(raw_fieldset(merged, node), node)
    pruned = remove_items(merged, last, node)
    kept = ensure_named_fields(raw_fieldset(pruned, node), node)
    pruned = remove_items(merged, everything - (kept | owned), node)
    kept = ensure_named_fields(raw_fieldset(pruned, node), node)
    return remove_items(merged, (everything - kept) & last, node)


# --- conflicts -----------------------------------------------------------------------------------

def _conflicts(managers: Managed, me: Identity, changed: FieldSet) -> dict[Identity, FieldSet]:
    out = {}
    for key, entry in managers.items():
        if key != me and (clash := entry.fields & changed):
            out[key] = clash
    return out


def _conflict_error(managers: Managed, conflicts: dict[Identity, FieldSet]) -> ApplyConflictError:
    """Worded as kube-apiserver words it, one cause per conflicting field."""
    ordered = sorted(conflicts, key=lambda k: managers[k].identity)
    pairs = [(managers[k], path) for k in ordered
             for path in sorted(conflicts[k], key=lambda p: tuple(element_order(pe) for pe in p))]
    causes = tuple(Cause("FieldManagerConflict", f"conflict with {e.describe()}", path_string(p))
                   for e, p in pairs)
    if len(pairs) == 1:
        entry, path = pairs[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: {path_string(path)}"
    else:
        lines = []
        for k in ordered:
            lines.append(f"conflicts with {managers[k].describe()}:")
            lines.extend(f"- {path_string(p)}" for e, p in pairs if e.identity == k)
        message = f"Apply failed with {len(pairs)} conflicts: " + "\n".join(lines)
    return ApplyConflictError(message, causes=causes)


# --- client-side apply annotation ----------------------------------------------------------------

def _annotation(obj: Mapping[str, Any], key: str) -> str:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(key) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) else ""


def _with_annotation(obj: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    metadata = dict(obj.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), key: value}
    return {**obj, "metadata": metadata}


def _client_side_applied(live: Mapping[str, Any], node: Schema) -> FieldSet:
    """Fields kubectl's last-applied-configuration still describes truthfully: those kubectl may take
    over from client-side apply without force."""
    text = _annotation(live, LAST_APPLIED)
    try:
        last = json.loads(text) if text else None
    except ValueError:
        last = None
    if not isinstance(last, dict):
        return frozenset()
    diff = compare(last, live, node)
    return raw_fieldset(last, node) - diff.modified - diff.added - diff.removed


def last_applied_configuration(applied: Mapping[str, Any]) -> str:
    """The annotation value kubectl would write for `applied`: its JSON with sorted keys, less the
    annotation itself, ending in a newline as Kubernetes' encoder ends it."""
    obj = copy.deepcopy(dict(applied))
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
    return canonical_json(obj) + "\n"


__all__ = ["LAST_APPLIED", "last_applied_configuration", "merge", "remove_items", "server_side_apply"]
