"""The NATS API against a real API server, PostgreSQL and NATS: every operation over
request/reply in JSON and msgpack, errors as Status with their code, watches with
their heartbeats, and the caller in the event envelope. Then the client's
operations, the same tests over both transports (REST and NATS).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os

import msgpack
import nats
import pytest

from eventplane.api import natsapi as natsapi_module
from eventplane.api import natswatch
from eventplane.api.natsapi import NatsApi
from eventplane.auth.tokens import ADMIN_USER
from eventplane.client import Client
from eventplane.objects import errors
from eventplane.objects.events import StreamId

_ids = itertools.count(1)
MSGPACK = "application/msgpack"


def configmap(name: str, data: dict | None = None, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}, "data": data or {"k": "v"}}


def deployment(name: str, replicas: int = 1) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}


@pytest.fixture
async def natsapi(api):
    """The NATS API on the test's API server, under a prefix of this test's own (the session's
    NATS is shared, and a queue group spanning tests would cross their databases)."""
    async with NatsApi(api.server, prefix=f"t{os.getpid()}x{next(_ids)}.api") as n:
        yield n


@pytest.fixture
async def nc(servers):
    c = await nats.connect(servers.nats_url)
    yield c
    await c.close()


class Raw:
    """Requests as any NATS client would send them, without eventplane.client."""

    def __init__(self, nc, natsapi: NatsApi, token: str) -> None:
        self.nc, self.prefix, self.token = nc, natsapi.prefix, token

    async def __call__(self, verb: str, body, *, media: str = "json", token: str | None = "default",
                       headers: dict | None = None, raw: bytes | None = None):
        h = dict(headers or {})
        token = self.token if token == "default" else token
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if media == "msgpack":
            h["Content-Type"] = MSGPACK
            data = msgpack.packb(body) if raw is None else raw
        else:
            data = json.dumps(body).encode() if raw is None else raw
        msg = await self.nc.request(f"{self.prefix}.{verb}", data, headers=h, timeout=10)
        assert msg.headers["Content-Type"] == (MSGPACK if media == "msgpack" else "application/json")
        value = msgpack.unpackb(msg.data) if media == "msgpack" else json.loads(msg.data)
        return int(msg.headers["Status"]), value


@pytest.fixture
def raw(nc, natsapi, api):
    return Raw(nc, natsapi, api.server.admin_token)


@pytest.mark.parametrize("media", ["json", "msgpack"])
async def test_every_verb_over_request_reply(raw, media):
    code, obj = await raw("create", {"resource": "configmaps", "namespace": "default", "body": configmap("a")},
                          media=media)
    assert code == 201 and obj["metadata"]["uid"] and obj["data"] == {"k": "v"}
    code, got = await raw("get", {"resource": "cm", "namespace": "default", "name": "a"}, media=media)
    assert code == 200 and got["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    code, listed = await raw("list", {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default"},
                             media=media)
    assert code == 200 and [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    code, patched = await raw("patch", {"resource": "configmaps", "name": "a", "body": {"data": {"k": "w"}}},
                              media=media)
    assert code == 200 and patched["data"] == {"k": "w"}
    code, patched = await raw("patch", {"resource": "configmaps", "name": "a", "patchType": "json",
                                        "body": [{"op": "add", "path": "/data/j", "value": "x"}]}, media=media)
    assert code == 200 and patched["data"] == {"k": "w", "j": "x"}
    updated = {**patched, "data": {"only": "this"}}
    code, updated = await raw("update", {"resource": "configmaps", "body": updated}, media=media)
    assert code == 200 and updated["data"] == {"only": "this"}
    code, _ = await raw("delete", {"resource": "configmaps", "namespace": "default", "name": "a"}, media=media)
    assert code == 200
    code, status = await raw("get", {"resource": "configmaps", "name": "a"}, media=media)
    assert code == 404 and status["kind"] == "Status" and status["reason"] == "NotFound"
    assert status["message"] == 'configmaps "a" not found'


async def test_apply_one_and_many(raw):
    code, obj = await raw("apply", {"body": configmap("one")})
    assert code == 201
    assert [m["manager"] for m in obj["metadata"]["managedFields"]] == ["epctl"]
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
            {**configmap("cfg"), "metadata": {"name": "cfg", "namespace": "shop"}},
            {"apiVersion": "v1", "kind": "Nope", "metadata": {"name": "x"}},
            {**deployment("web"), "metadata": {**deployment("web")["metadata"], "namespace": "shop"}}]
    code, answer = await raw("apply", {"body": docs, "options": {"fieldManager": "deployer"}})
    assert code == 200 and answer["kind"] == "List"
    kinds = [item["kind"] for item in answer["items"]]
    assert kinds == ["Namespace", "ConfigMap", "Status", "Deployment"]
    assert answer["items"][2]["code"] == 404
    assert answer["items"][3]["metadata"]["managedFields"][0]["manager"] == "deployer"
    # Applying the same again changes nothing: the same resourceVersions come back.
    code, again = await raw("apply", {"body": [d for d in docs if d["kind"] != "Nope"],
                                      "options": {"fieldManager": "deployer"}})
    assert [i["metadata"]["resourceVersion"] for i in again["items"]] == \
        [i["metadata"]["resourceVersion"] for i in answer["items"] if i["kind"] != "Status"]


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_wrong_or_missing_token_is_401(raw, token):
    code, status = await raw("get", {"resource": "namespaces", "name": "default"}, token=token)
    assert code == 401 and status["reason"] == "Unauthorized"


async def test_unknown_kind_or_operation_is_404(raw):
    code, status = await raw("list", {"resource": "widgets"})
    assert code == 404 and status["message"] == 'the server doesn\'t have a resource type "widgets"'
    code, status = await raw("create", {"body": {"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}}})
    assert code == 404 and "no matches for kind \"Widget\"" in status["message"]
    code, status = await raw("frobnicate", {})
    assert code == 404


@pytest.mark.parametrize("media", ["json", "msgpack"])
async def test_invalid_requests_are_400_or_422(raw, media):
    code, status = await raw("create", None, media=media, raw=b"\xc1not a body")
    assert code == 400 and status["reason"] == "BadRequest"
    code, status = await raw("create", ["a", "list"], media=media)
    assert code == 400
    code, status = await raw("create", {"resource": "configmaps", "body": "a string"}, media=media)
    assert code == 400
    code, status = await raw("create", {"body": configmap("Not_A_Name")}, media=media)
    assert code == 422 and status["reason"] == "Invalid"
    code, status = await raw("delete", {"resource": "configmaps", "name": "x",
                                        "options": {"propagationPolicy": "Sometimes"}}, media=media)
    assert code == 400


async def test_duplicate_fields_warn_or_fail_in_json(raw, nc, natsapi, api):
    data = (b'{"body": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, '
            b'"data": {"a": "1", "a": "2"}}, "options": {"fieldValidation": "Strict"}}')
    code, status = await raw("create", None, raw=data)
    assert code == 400 and 'duplicate field "data.a"' in status["message"]
    msg = await nc.request(f"{natsapi.prefix}.create", data.replace(b"Strict", b"Warn"), timeout=10,
                           headers={"Authorization": f"Bearer {api.server.admin_token}"})
    assert msg.headers["Status"] == "201" and "duplicate field" in msg.headers["Warning"]


async def test_the_caller_ends_in_the_envelope(raw, api):
    headers = {"Idempotency-Key": "key-1", "X-Eventplane-Causation": "1", "X-Request-Id": "req-7",
               "User-Agent": "tester/1.0"}
    code, obj = await raw("create", {"body": configmap("who")}, headers=headers)
    assert code == 201
    assert obj["metadata"]["managedFields"][0]["manager"] == "tester"
    [event] = await api.server.store.read_stream(StreamId("", "configmaps", "default", "who"))
    assert (event.actor, event.verb, event.request_id, event.causation, event.idempotency_key) == \
        (ADMIN_USER, "create", "req-7", 1, "key-1")
    # The same key again: the first result, nothing appended.
    code, again = await raw("create", {"body": configmap("who")}, headers=headers)
    assert len(await api.server.store.read_stream(StreamId("", "configmaps", "default", "who"))) == 1
    code, _ = await raw("delete", {"resource": "cm", "name": "who"}, headers={"X-Request-Id": "req-8"})
    deleted = (await api.server.store.read_stream(StreamId("", "configmaps", "default", "who")))[-1]
    assert (deleted.actor, deleted.verb, deleted.request_id) == (ADMIN_USER, "delete", "req-8")


async def test_large_answers_come_in_chunks(raw, nc, monkeypatch):
    big = "x" * 300_000
    for i in range(5):
        assert (await raw("create", {"body": configmap(f"big{i}", {"blob": big})}))[0] == 201
    # Chunks of 64 KiB, as if NATS took no more: the embedded server's max payload is 8 MiB.
    monkeypatch.setattr(natsapi_module, "CHUNK_HEADROOM", nc.max_payload - 65536)
    # nc.request takes the first message only: collect the chunks as the protocol says.
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(f"{raw.prefix}.list", json.dumps({"resource": "configmaps"}).encode(), reply=inbox,
                     headers={"Authorization": f"Bearer {raw.token}"})
    first = await sub.next_msg(timeout=10)
    count = int(first.headers["Eventplane-Chunks"])
    assert first.headers["Status"] == "200" and count > 20
    data = first.data + b"".join([(await sub.next_msg(timeout=10)).data for _ in range(count - 1)])
    assert [len(i["data"]["blob"]) for i in json.loads(data)["items"]] == [300_000] * 5


async def test_the_client_reassembles_chunks(api, natsapi, servers, monkeypatch):
    async with Client.via_nats(servers.nats_url, api.server.admin_token, prefix=natsapi.prefix) as c:
        await c.list("namespaces")  # connects, so that the max payload is known
        monkeypatch.setattr(natsapi_module, "CHUNK_HEADROOM", c.transport._nc.max_payload - 65536)
        created = await c.create(configmap("big", {"blob": "y" * 500_000}))
        assert len(created["data"]["blob"]) == 500_000
        events = c.watch("configmaps")
        kind, obj = await asyncio.wait_for(events.__anext__(), 10)
        await events.aclose()
        assert (kind, len(obj["data"]["blob"])) == ("ADDED", 500_000)


async def test_a_raw_watch(raw, nc, natsapi):
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    code, started = await raw("watch", {"resource": "configmaps", "namespace": "default", "inbox": inbox})
    assert code == 200 and started["subject"] == inbox and started["stop"].startswith(natsapi.prefix + ".stop.")

    async def next_event():
        while True:
            msg = await sub.next_msg(timeout=10)
            if msg.headers.get("Eventplane-Watch") == "heartbeat":
                await nc.publish(msg.reply, b"")
                continue
            return msg

    await raw("create", {"body": configmap("w1")})
    msg = await next_event()
    assert msg.headers["Eventplane-Watch-Seq"] == "1"
    assert json.loads(msg.data)["type"] == "ADDED"
    await raw("patch", {"resource": "cm", "name": "w1", "body": {"data": {"k": "2"}}})
    msg = await next_event()
    assert (msg.headers["Eventplane-Watch-Seq"], json.loads(msg.data)["type"]) == ("2", "MODIFIED")
    await nc.publish(started["stop"], b"")
    msg = await next_event()
    assert msg.headers["Eventplane-Watch"] == "end"
    await asyncio.sleep(0.1)
    assert not natsapi.watches._running


async def test_a_watch_ends_when_its_inbox_goes_away(raw, nc, natsapi, monkeypatch):
    monkeypatch.setattr(natswatch, "HEARTBEAT", 1.0)
    inbox = nc.new_inbox()

    async def answer_heartbeats(msg):
        if msg.reply:
            await nc.publish(msg.reply, b"")

    sub = await nc.subscribe(inbox, cb=answer_heartbeats)
    code, _ = await raw("watch", {"resource": "configmaps", "inbox": inbox})
    assert code == 200 and len(natsapi.watches._running) == 1
    await sub.unsubscribe()
    for _ in range(250):  # bounded: three missed heartbeats end it
        if not natsapi.watches._running:
            break
        await asyncio.sleep(0.1)
    assert not natsapi.watches._running


# --- the client, over both transports -------------------------------------------------------------

@pytest.fixture(params=["rest", "nats"])
async def client(request, api, natsapi, servers):
    if request.param == "rest":
        c = Client.from_kubeconfig(str(api.kubeconfig))
    else:
        c = Client.via_nats(servers.nats_url, api.server.admin_token, prefix=natsapi.prefix)
    async with c:
        yield c


async def test_client_reads_and_writes(client):
    created = await client.create(configmap("c1"))
    assert created["metadata"]["namespace"] == "default"
    assert (await client.get("configmap", "c1"))["data"] == {"k": "v"}
    assert (await client.get("cm", "c1", namespace="default"))["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(errors.AlreadyExistsError):
        await client.create(configmap("c1"))
    with pytest.raises(errors.NotFoundError) as caught:
        await client.get("configmaps", "missing")
    assert caught.value.status["message"] == 'configmaps "missing" not found'
    with pytest.raises(errors.NotFoundError, match='resource type "widgets"'):
        await client.list("widgets")
    patched = await client.patch("cm", "c1", {"data": {"k": "w"}})
    assert patched["data"] == {"k": "w"}
    patched = await client.patch("cm", "c1", [{"op": "replace", "path": "/data/k", "value": "z"}])
    assert patched["data"] == {"k": "z"}
    stale = {**created, "data": {"k": "stale"}}
    with pytest.raises(errors.ConflictError):
        await client.update(stale)
    await client.delete("cm", "c1")
    with pytest.raises(errors.NotFoundError):
        await client.delete("cm", "c1")


async def test_client_lists_with_selectors_and_namespaces(client):
    await client.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
                        configmap("a", labels={"tier": "web"}), configmap("b", labels={"tier": "db"}),
                        configmap("c", labels={"tier": "web"}, namespace="other")])
    names = lambda listed: sorted(i["metadata"]["name"] for i in listed["items"])  # noqa: E731
    assert names(await client.list("cm")) == ["a", "b"]
    assert names(await client.list("cm", label_selector="tier=web")) == ["a"]
    assert names(await client.list("cm", label_selector="tier=web", all_namespaces=True)) == ["a", "c"]
    assert names(await client.list("cm", field_selector="metadata.name=b")) == ["b"]
    assert names(await client.list("cm", namespace="other")) == ["c"]
    assert "default" in names(await client.list("namespaces", namespace="ignored-for-cluster-scope"))
    table = await client.list("configmaps", table=True)
    assert [c["name"] for c in table["columnDefinitions"]][:1] == ["Name"]
    assert [r["cells"][0] for r in table["rows"]] == ["a", "b"]


async def test_client_applies_and_reports_each_failure(client):
    results = await client.apply([deployment("web", 2), {"apiVersion": "v1", "kind": "ConfigMap",
                                                         "metadata": {"name": "x", "namespace": "nowhere"}}])
    assert results[0]["spec"]["replicas"] == 2
    assert isinstance(results[1], errors.NotFoundError)
    with pytest.raises(errors.ConflictError):  # epctl owns .spec.replicas
        await client.apply(deployment("web", 5), field_manager="someone-else")
    forced = await client.apply(deployment("web", 5), field_manager="someone-else", force=True)
    assert forced["spec"]["replicas"] == 5


async def test_client_watches(client):
    await client.create(configmap("before"))
    seen = []
    async with client.watch("configmaps") as events:
        async for kind, obj in events:
            seen.append((kind, obj["metadata"]["name"]))
            if len(seen) == 1:
                await client.create(configmap("after"))
            elif len(seen) == 2:
                await client.delete("configmaps", "before")
            else:
                break
    assert seen == [("ADDED", "before"), ("ADDED", "after"), ("DELETED", "before")]


async def test_nats_watch_resumes_when_the_api_restarts(api, servers):
    prefix = f"t{os.getpid()}x{next(_ids)}.api"
    first = NatsApi(api.server, prefix=prefix)
    await first.start()
    async with Client.via_nats(servers.nats_url, api.server.admin_token, prefix=prefix) as c:
        events = c.watch("configmaps", bookmarks=False)
        await c.create(configmap("one"))
        assert (await asyncio.wait_for(events.__anext__(), 10))[0] == "ADDED"
        await first.stop()  # every watch of this server ends; the client comes back to the next
        second = NatsApi(api.server, prefix=prefix)
        await second.start()
        try:
            await c.create(configmap("two"))
            kind, obj = await asyncio.wait_for(events.__anext__(), 15)
            assert (kind, obj["metadata"]["name"]) == ("ADDED", "two")
        finally:
            await events.aclose()
            await second.stop()


async def test_nats_client_without_servers_fails_fast(api, servers):
    async with Client.via_nats(servers.nats_url, api.server.admin_token, prefix="nobody.home", timeout=2,
                               attempts=2) as c:
        from eventplane.client import UnreachableError

        with pytest.raises(UnreachableError, match="no responders"):
            await c.get("configmaps", "x")


# --- subresources and lists of creates --------------------------------------------------------------

def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def binding(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


async def test_subresources_over_request_reply(raw, api):
    for name in ("p1", "p2", "p3"):
        assert (await raw("create", {"body": pod(name)}))[0] == 201
    code, status = await raw("create", {"resource": "pods", "subresource": "binding", "name": "p1",
                                        "body": binding("p1", "n1")})
    assert code == 201 and status["status"] == "Success"
    code, got = await raw("get", {"resource": "pods", "name": "p1", "subresource": "status"})
    assert got["spec"]["nodeName"] == "n1"
    assert [c["type"] for c in got["status"]["conditions"]] == ["PodScheduled"]
    code, conflict = await raw("create", {"resource": "pods", "subresource": "binding",
                                          "body": binding("p1", "n2")})
    assert code == 409 and 'already assigned to node "n1"' in conflict["message"]
    # status: an update and a patch change the status alone
    got["status"]["phase"] = "Running"
    got["metadata"]["labels"] = {"ignored": "yes"}
    code, updated = await raw("update", {"resource": "pods", "subresource": "status", "body": got})
    assert code == 200 and updated["status"]["phase"] == "Running"
    code, patched = await raw("patch", {"resource": "pods", "name": "p1", "subresource": "status",
                                        "body": {"status": {"message": "hello"}}})
    assert code == 200 and patched["status"]["message"] == "hello" and patched["status"]["phase"] == "Running"
    [*_, event] = await api.server.store.read_stream(StreamId("", "pods", "default", "p1"))
    assert event.verb == "patch"
    # eviction of an unbound pod: deleted
    code, _ = await raw("create", {"resource": "pods", "subresource": "eviction", "name": "p3",
                                   "body": {"apiVersion": "policy/v1", "kind": "Eviction",
                                            "metadata": {"name": "p3"}}})
    assert code == 201
    assert (await raw("get", {"resource": "pods", "name": "p3"}))[0] == 404
    # what is not served: scale (REST only), unknown subresources, a subresource on the wrong verb
    code, status = await raw("get", {"resource": "deployments", "name": "x", "subresource": "scale"})
    assert code == 405 and "use REST" in status["message"]
    code, status = await raw("get", {"resource": "pods", "name": "p1", "subresource": "nope"})
    assert code == 404 and status["message"] == "the server could not find the requested resource (pods/nope)"
    code, status = await raw("update", {"resource": "pods", "subresource": "binding", "body": got})
    assert code == 405
    code, status = await raw("create", {"resource": "pods", "subresource": "binding", "body": {"target": {}}})
    assert code == 400 and "metadata.name" in status["message"]


async def test_a_list_of_creates_each_with_its_cause(raw, api):
    code, answer = await raw("create", {"resource": "configmaps",
                                        "body": [configmap("l1"), configmap("l2"), configmap("bad_name"),
                                                 configmap("l1")],
                                        "causations": [1, 2, None, 4]})
    assert code == 200 and answer["kind"] == "List"
    assert [i["kind"] for i in answer["items"]] == ["ConfigMap", "ConfigMap", "Status", "Status"]
    assert answer["items"][2]["reason"] == "Invalid" and answer["items"][3]["reason"] == "AlreadyExists"
    for name, cause in (("l1", 1), ("l2", 2)):
        [event] = await api.server.store.read_stream(StreamId("", "configmaps", "default", name))
        assert (event.verb, event.causation) == ("create", cause)
    # bindings in one request, each naming its pod
    for name in ("b1", "b2"):
        await raw("create", {"body": pod(name)})
    code, answer = await raw("create", {"resource": "pods", "subresource": "binding",
                                        "body": [binding("b1", "n1"), binding("b2", "n2"), binding("b9", "n1")],
                                        "causations": [7, 8, None]})
    assert [i.get("status") or i["kind"] for i in answer["items"]] == ["Success", "Success", "Failure"]
    assert answer["items"][2]["reason"] == "NotFound"
    bound = await api.server.store.read_stream(StreamId("", "pods", "default", "b2"))
    assert (bound[-1].type, bound[-1].causation) == ("Bound", 8)
    # bad lists write nothing
    before = await api.server.store.head()
    code, status = await raw("create", {"resource": "configmaps", "body": [configmap("x1")], "causations": [1, 2]})
    assert code == 400 and "one per object" in status["message"]
    code, status = await raw("create", {"resource": "configmaps", "body": [configmap("x1")]},
                             headers={"Idempotency-Key": "k"})
    assert code == 400 and "Idempotency-Key" in status["message"]
    code, answer = await raw("create", {"resource": "configmaps", "body": ["not an object"]})
    assert answer["items"][0]["code"] == 400
    assert await api.server.store.head() == before


@pytest.fixture(params=["rest", "nats", "hybrid"])
async def any_client(request, api, natsapi, servers):
    if request.param == "rest":
        c = Client.from_kubeconfig(str(api.kubeconfig))
    elif request.param == "nats":
        c = Client.via_nats(servers.nats_url, api.server.admin_token, prefix=natsapi.prefix)
    else:
        c = Client.from_kubeconfig(str(api.kubeconfig), nats_url=servers.nats_url, nats_prefix=natsapi.prefix)
        assert type(c.transport).__name__ == "HybridTransport"
    async with c:
        yield c


async def test_client_subresources_and_create_many(any_client, api):
    c = any_client
    created = await c.create_many("pods", [pod("m1"), pod("m2"), pod("m1")], causations=[3, None, None])
    assert [type(x).__name__ for x in created] == ["dict", "dict", "AlreadyExistsError"]
    [event] = await api.server.store.read_stream(StreamId("", "pods", "default", "m1"))
    assert event.causation == 3
    bound = await c.create_many("pods", [binding("m1", "n1"), binding("m2", "n2")], subresource="binding",
                                causations=[5, 6])
    assert not [b for b in bound if isinstance(b, Exception)]
    assert (await c.get("pods", "m2"))["spec"]["nodeName"] == "n2"
    m1 = await c.get("pods", "m1")
    m1["status"]["phase"] = "Running"
    assert (await c.update(m1, subresource="status", causation=9))["status"]["phase"] == "Running"
    patched = await c.patch("pods", "m1", {"status": {"reason": "Testing"}}, subresource="status")
    assert patched["status"]["reason"] == "Testing"
    events = await api.server.store.read_stream(StreamId("", "pods", "default", "m1"))
    assert [e.causation for e in events] == [3, 5, 9, None]
    with pytest.raises(errors.ConflictError):
        await c.create_subresource("pods", "m1", "binding", binding("m1", "n3"))
    assert await c.create_many("pods", []) == []
    # Status updates of several pods at once, one of them stale.
    m1, m2 = await c.get("pods", "m1"), await c.get("pods", "m2")
    stale = {**m2, "metadata": {**m2["metadata"], "resourceVersion": "1"}}
    m1["status"]["phase"] = m2["status"]["phase"] = "Succeeded"
    updated = await c.update_many("pods", [m1, stale], subresource="status", causations=[11, None])
    assert updated[0]["status"]["phase"] == "Succeeded" and isinstance(updated[1], errors.ConflictError)
    assert (await api.server.store.read_stream(StreamId("", "pods", "default", "m1")))[-1].causation == 11


async def test_coalesced_creates_share_requests_and_keep_their_own_answers(any_client, api):
    from eventplane.client.coalesce import Coalescer

    cms = Coalescer(any_client, "configmaps", max_batch=16)
    names = [f"co{i}" for i in range(40)] + ["co3", "Not_Valid"]
    outcomes = await asyncio.gather(*(cms.write({**configmap(n), "metadata": {"name": n, "namespace": "default"}},
                                                 causation=i + 1) for i, n in enumerate(names)),
                                    return_exceptions=True)
    assert [o["metadata"]["name"] for o in outcomes[:40]] == names[:40]
    assert isinstance(outcomes[40], errors.AlreadyExistsError) and isinstance(outcomes[41], errors.InvalidError)
    assert cms.requests == 3  # 42 creates in batches of at most 16
    [event] = await api.server.store.read_stream(StreamId("", "configmaps", "default", "co7"))
    assert event.causation == 8
    # A create after the others have gone starts a request of its own.
    assert (await cms.write(configmap("late") | {"metadata": {"name": "late", "namespace": "default"}}))
    assert cms.requests == 4
