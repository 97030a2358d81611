"""An update naming a version the API server has at hand (the watch cache's last change of the
object) skips the read; only a committed append is taken from that path, and everything else is
decided from a fresh read, so the answers are the ones the store's state gives."""
from __future__ import annotations

import copy

CM = "/api/v1/namespaces/default/configmaps"


def configmap(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def counting(registry):
    """Record what the server's `seen` hands out (None: not at hand)."""
    calls, original = [], registry.seen

    def seen(key, position):
        found = original(key, position)
        calls.append((key, position, found is not None))
        return found
    registry.seen = seen
    return calls


async def test_an_update_of_the_version_in_the_watch_cache_is_written_without_a_read(api):
    calls = counting(api.server.registry)
    status, created, _ = await api.http("POST", CM, body=configmap("cached", a="1"))
    assert status == 201
    rv = created["metadata"]["resourceVersion"]
    assert await api.server.cache.wait_for(int(rv), 5)
    body = copy.deepcopy(created)
    body["data"]["a"] = "2"
    status, updated, _ = await api.http("PUT", f"{CM}/cached", body=body)
    assert status == 200 and updated["data"] == {"a": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(rv)
    assert calls == [("core/configmaps/default/cached", int(rv), True)]
    status, got, _ = await api.http("GET", f"{CM}/cached")
    assert got == updated  # what was stored is what was answered
    [entry] = got["metadata"]["managedFields"]  # one writer, one Update entry, as after a read
    assert entry["operation"] == "Update" and entry["fieldsV1"]["f:data"] == {".": {}, "f:a": {}}


async def _stale(api, name: str, version: dict) -> None:
    """Make the server believe `version` is the last change of `name` (a watch cache lagging behind)."""
    key, position = f"core/configmaps/default/{name}", int(version["metadata"]["resourceVersion"])
    real = api.server.registry.seen
    api.server.registry.seen = lambda k, p: copy.deepcopy(version) if (k, p) == (key, position) else real(k, p)


async def test_a_stale_version_at_hand_answers_the_conflict_a_read_would(api):
    _, v1, _ = await api.http("POST", CM, body=configmap("stale", a="1"))
    body = copy.deepcopy(v1)
    body["data"]["a"] = "2"
    status, v2, _ = await api.http("PUT", f"{CM}/stale", body=body)
    assert status == 200
    await _stale(api, "stale", v1)
    again = copy.deepcopy(v1)
    again["data"]["a"] = "3"
    status, err, _ = await api.http("PUT", f"{CM}/stale", body=again)
    assert status == 409 and err["reason"] == "Conflict"
    assert err["message"] == ('Operation cannot be fulfilled on configmaps "stale": the object has been modified; '
                              "please apply your changes to the latest version and try again")
    status, got, _ = await api.http("GET", f"{CM}/stale")
    assert got["data"] == {"a": "2"} and got["metadata"]["resourceVersion"] == v2["metadata"]["resourceVersion"]


async def test_a_recreated_object_answers_the_conflict_a_read_would(api):
    _, v1, _ = await api.http("POST", CM, body=configmap("again", a="1"))
    status, _, _ = await api.http("DELETE", f"{CM}/again")
    assert status == 200
    _, v2, _ = await api.http("POST", CM, body=configmap("again", a="1"))
    assert v2["metadata"]["uid"] != v1["metadata"]["uid"]
    await _stale(api, "again", v1)
    body = copy.deepcopy(v1)
    body["data"]["a"] = "2"
    status, err, _ = await api.http("PUT", f"{CM}/again", body=body)
    assert status == 409 and "the object has been modified" in err["message"]  # not the uid precondition's words


async def test_a_no_op_update_is_decided_from_a_fresh_read(api):
    calls = counting(api.server.registry)
    _, v1, _ = await api.http("POST", CM, body=configmap("same", a="1"))
    assert await api.server.cache.wait_for(int(v1["metadata"]["resourceVersion"]), 5)
    head = await api.server.store.head()
    status, got, _ = await api.http("PUT", f"{CM}/same", body=copy.deepcopy(v1))
    assert status == 200 and got["metadata"]["resourceVersion"] == v1["metadata"]["resourceVersion"]
    assert calls[-1][2]  # it was at hand …
    assert await api.server.store.head() == head  # … and nothing was written


async def test_dry_run_updates_read_the_store(api):
    calls = counting(api.server.registry)
    _, v1, _ = await api.http("POST", CM, body=configmap("dry", a="1"))
    assert await api.server.cache.wait_for(int(v1["metadata"]["resourceVersion"]), 5)
    body = copy.deepcopy(v1)
    body["data"]["a"] = "2"
    status, got, _ = await api.http("PUT", f"{CM}/dry?dryRun=All", body=body)
    assert status == 200 and got["data"] == {"a": "2"}
    assert calls == []
    _, stored, _ = await api.http("GET", f"{CM}/dry")
    assert stored["data"] == {"a": "1"}
