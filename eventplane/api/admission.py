"""Admission: what the API server decides about a write beyond the kind's own strategy —
Kubernetes' admission plugins. Here the Priority plugin (plugin/pkg/admission/priority):

- a pod created gets `spec.priority` (and `spec.preemptionPolicy`) from its `priorityClassName`;
  without one, from the globalDefault PriorityClass (whose name it then takes), else priority 0
  and PreemptLowerPriority; an unknown class is 403 Forbidden (`pods "x" is forbidden: no
  PriorityClass with name y was found`), and a priority or preemptionPolicy in the pod that
  differs from the class's is 403 too;
- a PriorityClass may be globalDefault only while no other one is (403).
  (Its value and name rules — at most 1000000000 unless it is one of the system classes, value
  and preemptionPolicy immutable — are validation, a 422: `validate_priority_class`, called by
  strategy.validate_object.)

Fed by the registry: `admit_create` before a create's strategy, `admit_update` before an
update's append, `written` after each committed write of this server; and by the API server,
which runs `follow` (the PriorityClasses of the watch cache, as Kubernetes' plugin reads them
from an informer) and `bootstrap` (the two system classes Kubernetes creates at start). A pod
create reads no store: the classes are held here, loaded once.
"""
from __future__ import annotations

import asyncio
from typing import Any

from eventplane.objects import errors
from eventplane.objects.errors import Cause
from eventplane.objects.events import StreamId
from eventplane.objects.schema import ResourceInfo

GROUP, RESOURCE = "scheduling.k8s.io", "priorityclasses"
HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
SYSTEM_CRITICAL_PRIORITY = 2 * HIGHEST_USER_DEFINABLE_PRIORITY
SYSTEM_PRIORITY_CLASS_PREFIX = "system-"
DEFAULT_PREEMPTION_POLICY = "PreemptLowerPriority"

# Kubernetes' systemPriorityClasses (pkg/apis/scheduling/helpers.go), created at start.
SYSTEM_PRIORITY_CLASSES: tuple[dict[str, Any], ...] = (
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
     "metadata": {"name": "system-node-critical"}, "value": SYSTEM_CRITICAL_PRIORITY + 1000,
     "description": "Used for system critical pods that must not be moved from their current node."},
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
     "metadata": {"name": "system-cluster-critical"}, "value": SYSTEM_CRITICAL_PRIORITY,
     "description": "Used for system critical pods that must run in the cluster, but can be moved to another "
                    "node if necessary."},
)


def _forbidden(group: str, resource: str, name: str, message: str) -> errors.ForbiddenError:
    """admission.NewForbidden: named by the object's name, or its generateName before one is made."""
    qualified = f"{resource}.{group}" if group else resource
    return errors.ForbiddenError(f'{qualified} "{name}" is forbidden: {message}', name=name, group=group,
                                 kind=resource)


def _name_of(obj: dict[str, Any]) -> str:
    m = obj.get("metadata") or {}
    return m.get("name") or m.get("generateName") or "Unknown"


class Admission:
    """The PriorityClasses as this server knows them, and the plugin's decisions on them."""

    def __init__(self, store: Any) -> None:
        self.store = store
        # name → (the class, or None once deleted; the position it is known at)
        self._classes: dict[str, tuple[dict[str, Any] | None, int]] = {}
        self._default: dict[str, Any] | None = None
        self._default_stale = True
        self._loaded = asyncio.Event()
        self._loading: asyncio.Task | None = None

    # --- what this server knows ---------------------------------------------------------------

    async def _ready(self) -> None:
        if self._loaded.is_set():
            return
        if self._loading is None or self._loading.done():   # no follower yet, or its load failed: load here
            self._loading = asyncio.ensure_future(self._load())
        await asyncio.shield(self._loading)

    async def _load(self) -> int:
        head, rows = await self.store.list_snapshot(group=GROUP, resource=RESOURCE)
        for _, obj in rows:
            self.note(obj)
        self._loaded.set()
        return head

    def note(self, obj: dict[str, Any], *, deleted: bool = False) -> None:
        """A class as written at its resourceVersion: an older change than the one known is ignored
        (the watch cache may bring it after this server's own write)."""
        meta = obj.get("metadata") or {}
        name, position = meta.get("name") or "", int(meta.get("resourceVersion") or 0)
        known = self._classes.get(name)
        if known is not None and (known[1] > position or (known[1] == position and known[0] is None)):
            return
        self._classes[name] = (None if deleted else obj, position)
        self._default_stale = True

    def get(self, name: str) -> dict[str, Any] | None:
        known = self._classes.get(name)
        return known[0] if known else None

    def default_class(self) -> dict[str, Any] | None:
        """The globalDefault class; should a race have made two, the one of lowest value (as Kubernetes)."""
        if self._default_stale:
            found = None
            for obj, _ in self._classes.values():
                if obj is not None and obj.get("globalDefault") is True and \
                        (found is None or int(obj.get("value") or 0) < int(found.get("value") or 0)):
                    found = obj
            self._default, self._default_stale = found, False
        return self._default

    async def _lookup(self, name: str) -> dict[str, Any] | None:
        """A class by name; one this server has not seen yet (made through another server a moment
        ago) is asked of the store once."""
        known = self._classes.get(name)
        if known is not None:
            return known[0]
        obj = await self.store.get(StreamId(GROUP, RESOURCE, "", name))
        if obj is not None:
            self.note(obj)
        return obj

    async def follow(self, cache: Any) -> None:
        """Keep the classes current from the watch cache until cancelled: a snapshot, then every
        change after it."""
        self._loading = asyncio.ensure_future(self._load())
        head = await self._loading
        async for change in cache.changes(head, lambda e: (e.stream.group, e.stream.resource) == (GROUP, RESOURCE)):
            self.note(change.object, deleted=change.event.type == "Deleted")

    # --- the registry's calls -----------------------------------------------------------------

    async def admit_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info.group == "" and info.resource == "pods":
            await self._admit_pod(obj)
        elif info.group == GROUP and info.resource == RESOURCE:
            await self._check_default(obj, None)

    async def admit_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any]) -> None:
        if info.group == GROUP and info.resource == RESOURCE:
            await self._check_default(new, old)

    def written(self, info: ResourceInfo, obj: dict[str, Any], deleted: bool) -> None:
        if info.group == GROUP and info.resource == RESOURCE:
            self.note(obj, deleted=deleted)

    async def _admit_pod(self, pod: dict[str, Any]) -> None:
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return  # validation answers
        await self._ready()
        name = spec.get("priorityClassName")
        if not name:
            pc = self.default_class()
            if pc is not None:
                spec["priorityClassName"] = pc["metadata"]["name"]
                priority, policy = int(pc.get("value") or 0), pc.get("preemptionPolicy")
            else:
                priority, policy = 0, DEFAULT_PREEMPTION_POLICY
        else:
            pc = await self._lookup(str(name))
            if pc is None:
                raise _forbidden("", "pods", _name_of(pod), f"no PriorityClass with name {name} was found")
            priority, policy = int(pc.get("value") or 0), pc.get("preemptionPolicy")
        given = spec.get("priority")
        if given is not None and given != priority:
            raise _forbidden("", "pods", _name_of(pod), f"the integer value of priority ({given}) must not be provided "
                                                    f"in pod spec; priority admission controller computed {priority} "
                                                    "from the given PriorityClass name")
        spec["priority"] = priority
        if policy is not None:
            given = spec.get("preemptionPolicy")
            if given is not None and given != policy:
                raise _forbidden("", "pods", _name_of(pod), f"the string value of PreemptionPolicy ({given}) must not be "
                                                        f"provided in pod spec; priority admission controller "
                                                        f"computed {policy} from the given PriorityClass name")
            spec["preemptionPolicy"] = policy

    async def _check_default(self, pc: dict[str, Any], old: dict[str, Any] | None) -> None:
        if pc.get("globalDefault") is not True:
            return
        await self._ready()
        current = self.default_class()
        name = _name_of(pc)
        if current is not None and (old is None or current["metadata"]["name"] != name):
            raise _forbidden(GROUP, RESOURCE, name,
                             f"PriorityClass {current['metadata']['name']} is already marked as default. Only one "
                             "default can exist")

    async def bootstrap(self, registry: Any, info: ResourceInfo, caller: Any, options: Any) -> None:
        """The system classes, as kube-apiserver's scheduling storage makes them at start."""
        for body in SYSTEM_PRIORITY_CLASSES:
            if await self.store.get(StreamId(GROUP, RESOURCE, "", body["metadata"]["name"])) is None:
                try:
                    await registry.create(info, "", {**body, "metadata": dict(body["metadata"])}, caller, options)
                except errors.AlreadyExistsError:
                    pass  # another API server made it first


def validate_priority_class(pc: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """ValidatePriorityClass and ValidatePriorityClassUpdate (pkg/apis/scheduling/validation)."""
    causes: list[Cause] = []
    name = (pc.get("metadata") or {}).get("name") or ""
    value = pc.get("value") or 0   # an int32, 0 when left out
    if not isinstance(value, int) or isinstance(value, bool):
        return []   # a type error, answered by field validation
    if name.startswith(SYSTEM_PRIORITY_CLASS_PREFIX):
        problem = _system_class_problem(name, value, pc.get("globalDefault") is True)
        if problem:
            causes.append(Cause("FieldValueForbidden", f"Forbidden: priority class names with "
                                                       f"'{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for "
                                                       f"system use only. error: {problem}", "metadata.name"))
    elif value > HIGHEST_USER_DEFINABLE_PRIORITY:
        causes.append(Cause("FieldValueForbidden", f"Forbidden: maximum allowed value of a user defined priority "
                                                   f"is {HIGHEST_USER_DEFINABLE_PRIORITY}", "value"))
    policy = pc.get("preemptionPolicy")
    if policy is not None and policy not in ("PreemptLowerPriority", "Never"):
        causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{policy}": supported values: '
                                                      '"Never", "PreemptLowerPriority"', "preemptionPolicy"))
    if old is not None:
        if value != (old.get("value") or 0):
            causes.append(Cause("FieldValueForbidden", "Forbidden: may not be changed in an update.", "value"))
        if policy != old.get("preemptionPolicy"):
            causes.append(Cause("FieldValueInvalid", f'Invalid value: "{policy}": field is immutable',
                                "preemptionPolicy"))
    return causes


def _system_class_problem(name: str, value: int, global_default: bool) -> str:
    """IsKnownSystemPriorityClass's error, or "" for a known system class as it must be."""
    for spc in SYSTEM_PRIORITY_CLASSES:
        if spc["metadata"]["name"] == name:
            if spc["value"] != value:
                return f"value of {name} PriorityClass must be {spc['value']}"
            if global_default:
                return f"globalDefault of {name} PriorityClass must be false"
            return ""
    return f"{name} is not a known system priority class"
