"""Informers against a running API server: list, then watch; cache, indexes, handlers, resume, relist."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from eventplane.client import Client
from reconcilers.informer import (BY_LABEL, BY_NAMESPACE, BY_NODE, BY_OWNER, Informer, SharedInformerFactory,
                                  causation_of, key_of, label_value)


def _client(api) -> Client:
    return Client.from_kubeconfig(str(api.kubeconfig))


def _cm(name: str, *, ns: str = "default", labels: dict | None = None, owner: str | None = None,
        data: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def _drop_connections(client: Client) -> int:
    """Abort the client's open TCP connections (the watch's among them), as a network failure would."""
    connector = client.transport.session().connector
    protocols = list(connector._acquired)  # aiohttp: connections in use by a response
    for proto in protocols:
        if proto.transport is not None:
            proto.transport.abort()
    return len(protocols)


class Recorder:
    """Handlers that record (event, key, resourceVersion) and let a test await the n-th event."""

    def __init__(self, informer: Informer) -> None:
        self.events: list[tuple[str, str, str]] = []
        self._changed = asyncio.Event()
        informer.add_handler(on_add=lambda o: self._record("add", o),
                             on_update=lambda old, new: self._record("update", new),
                             on_delete=lambda o: self._record("delete", o))

    def _record(self, what: str, obj: dict) -> None:
        self.events.append((what, key_of(obj), obj["metadata"]["resourceVersion"]))
        self._changed.set()

    async def seen(self, what: str, key: str, timeout: float = 10) -> None:
        async def wait():
            while (what, key) not in [(w, k) for w, k, _ in self.events]:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), timeout)

    async def until(self, n: int, timeout: float = 10) -> list[tuple[str, str]]:
        async def wait():
            while len(self.events) < n:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), timeout)
        return [(what, key) for what, key, _ in self.events]


async def test_list_then_watch_reaches_handlers_and_cache_in_order(api):
    async with _client(api) as c:
        a = await c.create(_cm("a", data={"v": "1"}))
        inf = Informer(c, "configmaps", namespace="default")
        rec = Recorder(inf)
        async with inf:
            await inf.wait_synced(10)
            assert inf.has_synced
            assert inf.store.get("default/a")["data"] == {"v": "1"}
            listed_at = int(inf.resource_version)
            assert listed_at >= int(a["metadata"]["resourceVersion"])

            b = await c.create(_cm("b"))
            a2 = await c.patch("configmaps", "a", {"data": {"v": "2"}})
            await c.delete("configmaps", "b")
            got = await rec.until(4)
            assert got[got.index(("add", "default/a")):] == [
                ("add", "default/a"), ("add", "default/b"), ("update", "default/a"), ("delete", "default/b")]
            versions = [int(rv) for _, _, rv in rec.events[-3:]]
            assert versions == sorted(versions) and versions[0] == int(b["metadata"]["resourceVersion"])

            assert inf.store.keys() == ["default/a"]
            assert inf.store.get("default/a")["data"] == {"v": "2"}
            # Causation: the position of the events the informer applied.
            assert inf.position_of("default/a") == causation_of(a2) == int(a2["metadata"]["resourceVersion"])
            assert inf.position_of("default/b") == versions[-1]  # its deletion
            assert int(inf.resource_version) == versions[-1]


async def test_indexes(api):
    async with _client(api) as c:
        await c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
        await c.create(_cm("a", labels={"app": "web"}, owner="uid-1"))
        await c.create(_cm("b", labels={"app": "db"}, owner="uid-1"))
        await c.create(_cm("c", ns="other", labels={"app": "web"}))
        inf = Informer(c, "configmaps")
        inf.add_indexer("data-v", lambda o: [(o.get("data") or {}).get("v", "")])  # pluggable
        async with inf:
            await inf.wait_synced(10)
            names = lambda objs: [key_of(o) for o in objs]  # noqa: E731
            assert "default/a" in names(inf.store.by_index(BY_NAMESPACE, "default"))
            assert names(inf.store.by_index(BY_NAMESPACE, "other")) == ["other/c"]
            assert names(inf.store.by_index(BY_OWNER, "uid-1")) == ["default/a", "default/b"]
            assert names(inf.store.by_index(BY_LABEL, label_value("app", "web"))) == ["default/a", "other/c"]
            assert names(inf.store.by_index(BY_NODE, "n1")) == []

            rec = Recorder(inf)
            await c.patch("configmaps", "a", {"metadata": {"labels": {"app": "db"}}, "data": {"v": "x"}})
            await rec.seen("update", "default/a")
            # An update moves the key between index values.
            assert names(inf.store.by_index(BY_LABEL, label_value("app", "web"))) == ["other/c"]
            assert names(inf.store.by_index(BY_LABEL, label_value("app", "db"))) == ["default/a", "default/b"]
            assert names(inf.store.by_index("data-v", "x")) == ["default/a"]
            with pytest.raises(KeyError, match="no index named 'nope'"):
                inf.store.by_index("nope", "x")


async def test_index_by_node_for_pods(api):
    pod = lambda name, node: {  # noqa: E731
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]} if node else
        {"containers": [{"name": "c", "image": "nginx"}]}}
    async with _client(api) as c:
        await c.create(pod("p1", "n1"))
        await c.create(pod("p2", None))
        async with Informer(c, "pods") as inf:
            await inf.wait_synced(10)
            assert [key_of(p) for p in inf.store.by_index(BY_NODE, "n1")] == ["default/p1"]
            assert inf.store.index_values(BY_NODE) == ["n1"]


async def test_shared_factory_gives_one_informer_per_resource(api):
    async with _client(api) as c:
        async with SharedInformerFactory(c) as factory:
            first = factory.informer("configmaps")
            assert factory.informer("configmaps") is first
            assert factory.informer("secrets") is not first
            seen_by = {"one": [], "two": []}
            first.add_handler(on_add=lambda o: seen_by["one"].append(key_of(o)))
            factory.informer("configmaps").add_handler(on_add=lambda o: seen_by["two"].append(key_of(o)))
            factory.start()
            await factory.wait_synced(10)
            rec = Recorder(first)
            await c.create(_cm("shared"))
            await rec.seen("add", "default/shared")
            assert "default/shared" in seen_by["one"] and "default/shared" in seen_by["two"]
            late: list[str] = []
            first.add_handler(on_add=lambda o: late.append(key_of(o)))  # after sync: replays the cache
            assert "default/shared" in late


async def test_resume_after_the_watch_connection_is_dropped_loses_nothing(api):
    async with _client(api) as c, _client(api) as writer:
        async with Informer(c, "configmaps", namespace="default") as inf:
            rec = Recorder(inf)
            await inf.wait_synced(10)
            await writer.create(_cm("before"))
            await rec.until(1)
            for round_ in range(3):
                assert _drop_connections(c) >= 1
                for i in range(3):
                    await writer.create(_cm(f"r{round_}-{i}"))
            got = await rec.until(10)
            assert got == [("add", "default/before")] + [("add", f"default/r{r}-{i}")
                                                         for r in range(3) for i in range(3)]
            assert len(inf.store) == 10 and inf.relists == 0


async def test_relist_turns_the_difference_into_notifications(api):
    """What a relist after 410 Gone does: the cache becomes the list, and handlers see the changes."""
    async with _client(api) as c:
        await c.create(_cm("kept"))
        await c.create(_cm("changed", data={"v": "1"}))
        await c.create(_cm("gone"))
        async with Informer(c, "configmaps", namespace="default") as inf:
            await inf.wait_synced(10)
        rec = Recorder(inf)
        rec.events.clear()  # the replay of the cache to a late handler
        await c.delete("configmaps", "gone")
        await c.patch("configmaps", "changed", {"data": {"v": "2"}})
        await c.create(_cm("new"))
        await inf._list_and_replace()  # the informer is stopped: this is the relist alone
        assert sorted(rec.events[i][:2] for i in range(len(rec.events))) == [
            ("add", "default/new"), ("delete", "default/gone"), ("update", "default/changed")]
        assert inf.store.get("default/changed")["data"] == {"v": "2"}
        assert sorted(inf.store.keys()) == ["default/changed", "default/kept", "default/new"]
        assert inf.relists == 1


async def test_a_controller_writes_with_the_causation_of_the_event_it_handles(api):
    """runner.Controller: informer → queue → reconcile; the write carries the event's position."""
    from reconcilers.runner import Controller, Request

    async with _client(api) as c:
        inf = Informer(c, "configmaps", namespace="default", label_selector="role=source")
        handled: list[Request] = []
        copied = asyncio.Event()

        async def reconcile(req: Request) -> None:
            handled.append(req)
            src = inf.store.get(req.key)
            if src is None:
                return
            await c.apply({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": f"{req.name}-copy", "namespace": req.namespace},
                           "data": src.get("data") or {}}, field_manager="copier", causation=req.causation)
            copied.set()

        controller = Controller("copier", inf, reconcile, workers=2)
        runner = asyncio.create_task(controller.run())
        try:
            src = await c.create(_cm("x", labels={"role": "source"}, data={"k": "v"}))
            await asyncio.wait_for(copied.wait(), 10)
            assert handled[0].key == "default/x"
            assert handled[0].causation == int(src["metadata"]["resourceVersion"])
            history = await c.history("configmaps", "x-copy")
            assert history["items"][0]["causation"] == src["metadata"]["resourceVersion"]
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await inf.stop()
