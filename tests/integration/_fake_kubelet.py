"""A stand-in for the node agent in controller tests: it writes pods' status as a kubelet would.

Pods of one namespace go Pending → Running and Ready, then, as `script(pod)` says, stay
running, succeed or fail with an exit code after a delay. Only pods/status is written (and
pods/binding when `node` is given and the pod is unbound), so the controllers under test see
exactly the events a real agent would cause.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from eventplane.client import Client
from eventplane.objects import errors
from reconcilers.informer import Informer

Script = Callable[[dict[str, Any]], tuple | None]   # None: run forever; ("Succeeded", after) / ("Failed", after, code)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(pod: dict[str, Any], *, ready: bool = True) -> dict[str, Any]:
    t = _now()
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    return {**(pod.get("status") or {}), "phase": "Running", "startTime": t, "podIP": "10.244.0.9",
            "conditions": [{"type": t_, "status": "True" if ready or t_ in ("PodScheduled", "Initialized") else "False",
                            "lastProbeTime": None, "lastTransitionTime": t}
                           for t_ in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": n, "ready": ready, "restartCount": 0, "image": "x", "imageID": "",
                                   "started": True, "state": {"running": {"startedAt": t}}} for n in names]}


def finished_status(pod: dict[str, Any], phase: str, code: int) -> dict[str, Any]:
    t = _now()
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    return {**(pod.get("status") or {}), "phase": phase,
            "conditions": [{"type": t_, "status": "False" if t_ in ("Ready", "ContainersReady") else "True",
                            "lastProbeTime": None, "lastTransitionTime": t}
                           for t_ in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": n, "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                                   "started": False, "state": {"terminated": {
                                       "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                       "startedAt": t, "finishedAt": t}}} for n in names]}


class FakeKubelet:
    def __init__(self, client: Client, namespace: str, script: Script | None = None, *,
                 ready: Callable[[dict[str, Any]], bool] | None = None,
                 node: str | Callable[[dict[str, Any]], str | None] | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.script = script or (lambda pod: None)
        self.ready = ready or (lambda pod: True)
        self.node = node
        self.informer = Informer(client, "pods", namespace=namespace)
        self.informer.add_handler(on_add=self._seen, on_update=lambda old, new: self._seen(new))
        self._started: set[str] = set()
        self._stopping: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self.paused = False

    async def __aenter__(self) -> FakeKubelet:
        self.informer.start()
        await self.informer.wait_synced()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        await self.informer.stop()

    def _seen(self, pod: dict[str, Any]) -> None:
        m = pod["metadata"]
        if m.get("deletionTimestamp") and (pod.get("spec") or {}).get("nodeName") and m["uid"] not in self._stopping:
            self._stopping.add(m["uid"])   # a bound pod is deleted gracefully: confirm its end as a kubelet does
            self._spawn(self._confirm_deletion(pod))
            return
        if self.paused or m.get("deletionTimestamp") or m["uid"] in self._started:
            return
        if (pod.get("status") or {}).get("phase", "Pending") != "Pending":
            return
        self._started.add(m["uid"])
        self._spawn(self._run(pod))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm_deletion(self, pod: dict[str, Any]) -> None:
        with contextlib.suppress(errors.NotFoundError, errors.ConflictError):
            await self.client.delete("pods", pod["metadata"]["name"], namespace=self.namespace, grace_period_seconds=0)

    async def _write(self, pod: dict[str, Any], status: dict[str, Any]) -> dict[str, Any] | None:
        name = pod["metadata"]["name"]
        for _ in range(20):
            current = self.informer.store.get(f"{self.namespace}/{name}") or pod
            if current["metadata"]["uid"] != pod["metadata"]["uid"] or current["metadata"].get("deletionTimestamp"):
                return None
            try:
                return await self.client.update({**current, "status": status}, subresource="status")
            except errors.ConflictError:
                await asyncio.sleep(0.05)
            except errors.NotFoundError:
                return None
        return None

    async def _run(self, pod: dict[str, Any]) -> None:
        node = self.node(pod) if callable(self.node) else self.node
        if node and not (pod.get("spec") or {}).get("nodeName"):
            with contextlib.suppress(errors.ConflictError, errors.NotFoundError):
                await self.client.create_subresource("pods", pod["metadata"]["name"], "binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod["metadata"]["name"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}}, namespace=self.namespace)
        out = await self._write(pod, running_status(pod, ready=self.ready(pod)))
        if out is None:
            return
        plan = self.script(pod)
        if plan is None:
            return
        await asyncio.sleep(plan[1])
        await self._write(pod, finished_status(pod, plan[0], plan[2] if len(plan) > 2 else 0))

    async def set_ready(self, name: str, ready: bool = True) -> None:
        pod = self.informer.store.get(f"{self.namespace}/{name}")
        assert pod is not None, name
        await self._write(pod, running_status(pod, ready=ready))
