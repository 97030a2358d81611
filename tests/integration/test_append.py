"""Append against real PostgreSQL: optimistic concurrency, dense positions, idempotency, limits."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventplane.objects import errors
from eventplane.objects.events import StreamId
from eventplane.store import MAX_PAYLOAD_BYTES, Append, EventStore
from tests.support.builders import ALICE, cm_stream, configmap, create, ctx, delete, update


async def count_events(store: EventStore) -> int:
    return await store.pool.fetchval("SELECT count(*) FROM events")


async def test_create_then_read_back_with_resource_version_equal_to_position(store):
    obj = configmap("web", color="blue")
    [a] = await store.append(create(obj), ALICE)
    assert (a.position, a.stream_version, a.duplicate) == (1, 1, False)
    got = await store.get(cm_stream("web"))
    assert got["data"] == {"color": "blue"}
    assert got["metadata"]["resourceVersion"] == "1"
    [e] = await store.read_stream(cm_stream("web"))
    assert (e.actor, e.verb, e.request_id, e.trace_id, e.type) == ("alice", "create", "req-1", "trace-1", "Created")
    assert e.verifies()


async def test_stale_expected_version_is_a_conflict_and_writes_nothing(store):
    obj = configmap("web")
    [a] = await store.append(create(obj), ALICE)
    await store.append(update({**obj, "data": {"v": "2"}}, expected=a.position), ctx(verb="update"))
    before = await count_events(store)
    with pytest.raises(errors.ConflictError) as info:
        await store.append(update({**obj, "data": {"v": "3"}}, expected=a.position), ctx(verb="update"))
    assert "the object has been modified; please apply your changes to the latest version and try again" \
        in info.value.message
    assert info.value.to_status()["reason"] == "Conflict" and info.value.code == 409
    assert info.value.to_status()["details"] == {"name": "web", "kind": "configmaps"}
    assert await count_events(store) == before
    assert (await store.get(cm_stream("web")))["data"] == {"v": "2"}


async def test_create_of_an_existing_object_is_already_exists(store):
    await store.append(create(configmap("web")), ALICE)
    with pytest.raises(errors.AlreadyExistsError, match='configmaps "web" already exists'):
        await store.append(create(configmap("web")), ALICE)
    assert await count_events(store) == 1


async def test_update_of_a_missing_object_is_not_found(store):
    with pytest.raises(errors.NotFoundError, match='configmaps "ghost" not found'):
        await store.append(update(configmap("ghost"), expected=None), ctx(verb="update"))
    assert await count_events(store) == 0


async def test_update_with_another_uid_is_a_conflict(store):
    await store.append(create(configmap("web")), ALICE)
    impostor = configmap("web")  # same name, new uid: a recreated object's stale writer
    with pytest.raises(errors.ConflictError, match="UID in precondition"):
        await store.append(update(impostor, expected=None), ctx(verb="update"))


async def test_delete_removes_from_current_state_and_recreate_continues_the_stream(store):
    obj = configmap("web")
    await store.append(create(obj), ALICE)
    await store.append(delete(obj), ctx(verb="delete"))
    assert await store.get(cm_stream("web")) is None
    again = configmap("web")
    [a] = await store.append(create(again), ALICE)
    assert a.stream_version == 3
    assert (await store.get(cm_stream("web")))["metadata"]["uid"] == again["metadata"]["uid"]
    assert [e.type for e in await store.read_stream(cm_stream("web"))] == ["Created", "Deleted", "Created"]


async def test_a_unit_is_atomic(store):
    await store.append(create(configmap("taken")), ALICE)
    with pytest.raises(errors.AlreadyExistsError):
        await store.append([create(configmap("a")), create(configmap("b")), create(configmap("taken"))], ALICE)
    assert await count_events(store) == 1
    assert await store.get(cm_stream("a")) is None
    results = await store.append([create(configmap("a")), create(configmap("b"))], ALICE)
    assert [r.position for r in results] == [2, 3]


async def test_a_unit_may_touch_one_stream_twice(store):
    obj = configmap("web")
    results = await store.append([create(obj), update({**obj, "data": {"x": "1"}}, expected=1)], ALICE)
    assert [r.position for r in results] == [1, 2]
    assert (await store.get(cm_stream("web")))["data"] == {"x": "1"}


async def test_idempotency_key_returns_the_first_result_and_appends_nothing(store):
    first = await store.append(create(configmap("web")), ctx(idempotency_key="k-1"))
    again = await store.append(create(configmap("web")), ctx(idempotency_key="k-1"))
    assert [(a.position, a.stream_version, a.occurred_at_us) for a in again] == \
        [(a.position, a.stream_version, a.occurred_at_us) for a in first]
    assert again[0].duplicate and not first[0].duplicate
    assert await count_events(store) == 1


async def test_idempotent_retries_racing_in_one_batch_append_once(store):
    results = await asyncio.gather(*[
        store.append(create(configmap("web")), ctx(idempotency_key="same")) for _ in range(20)])
    assert {r[0].position for r in results} == {1}
    assert sum(not r[0].duplicate for r in results) == 1
    assert await count_events(store) == 1


async def test_payload_over_the_limit_is_refused_before_anything_is_written(store):
    big = configmap("big", blob="x" * (MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(errors.RequestEntityTooLargeError) as info:
        await store.append(create(big), ALICE)
    assert info.value.code == 413
    just_fits = configmap("fits", blob="x" * (MAX_PAYLOAD_BYTES - 400))
    await store.append(create(just_fits), ALICE)
    assert await count_events(store) == 1


@pytest.mark.parametrize("stream, field", [
    (StreamId("", "configmaps", "default", ""), "metadata.name"),
    (StreamId("", "configmaps", "default", "a/b"), "metadata.name"),
    (StreamId("", "configmaps", "default", ".."), "metadata.name"),
    (StreamId("", "configmaps", "default", "x" * 254), "metadata.name"),
    (StreamId("", "configmaps", "Not_A_Namespace", "ok"), "metadata.namespace"),
    (StreamId("", "Config Maps", "default", "ok"), "kind"),
])
async def test_invalid_names_are_refused_with_field_causes(store, stream, field):
    with pytest.raises(errors.InvalidError) as info:
        await store.append(Append(stream, "Created", {"metadata": {}}, uid="u"), ALICE)
    status = info.value.to_status()
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert field in [c["field"] for c in status["details"]["causes"]]
    assert await count_events(store) == 0


async def test_unknown_event_type_is_refused(store):
    with pytest.raises(errors.BadRequestError):
        await store.append(Append(cm_stream("x"), "Exploded", {}, uid="u"), ALICE)


async def test_resource_version_in_the_payload_is_not_stored(store):
    obj = configmap("web")
    obj["metadata"]["resourceVersion"] = "999"
    await store.append(create(obj), ALICE)
    [e] = await store.read_stream(cm_stream("web"))
    assert e.object()["metadata"]["resourceVersion"] == "1"


async def test_32_writers_by_500_appends_get_positions_exactly_1_to_16000(store):
    async def writer(w: int) -> list[int]:
        out = []
        for i in range(500):
            [a] = await store.append(create(configmap(f"w{w}-{i}")), ALICE)
            out.append(a.position)
        return out

    per_writer = await asyncio.gather(*[writer(w) for w in range(32)])
    assert all(p == sorted(p) for p in per_writer)  # each writer sees its own appends in order
    positions = sorted(p for ps in per_writer for p in ps)
    assert positions == list(range(1, 16001))
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 16000
    assert await store.pool.fetchval("SELECT max(position) FROM events") == 16000
    assert (await store.verify()).ok


async def test_20_updaters_racing_on_one_version_exactly_one_wins_each_round(store):
    obj = configmap("counter", n="0")
    [a] = await store.append(create(obj), ALICE)
    version = a.position
    for round_ in range(10):
        results = await asyncio.gather(*[
            store.append(update({**obj, "data": {"n": str(round_ + 1), "by": str(w)}}, expected=version),
                         ctx(actor=f"w{w}", verb="update"))
            for w in range(20)], return_exceptions=True)
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(e, errors.ConflictError) for e in losers)
        version = winners[0][0].position
    current = await store.get(cm_stream("counter"))
    assert current["data"]["n"] == "10"
    assert len(await store.read_stream(cm_stream("counter"))) == 11  # no lost update, no extra write


async def test_two_store_instances_share_one_dense_order(database_url):
    """Two processes' worth of appenders (two pools, two committers) still produce 1..N."""
    async with EventStore.connect(database_url) as a, EventStore.connect(database_url) as b:
        await asyncio.gather(*[
            (a if i % 2 else b).append(create(configmap(f"o{i}")), ALICE) for i in range(400)])
        rows = await a.pool.fetch("SELECT position FROM events ORDER BY position")
        assert [r["position"] for r in rows] == list(range(1, 401))
        assert (await a.verify()).ok


async def test_reads_one_stream_after_a_version_and_all_after_a_position(store):
    obj = configmap("web")
    await store.append(create(obj), ALICE)
    for v in range(2, 6):
        await store.append(update({**obj, "data": {"v": str(v)}}, expected=None), ctx(verb="update"))
        await store.append(create(configmap(f"other{v}")), ALICE)
    tail = await store.read_stream(cm_stream("web"), after_version=3)
    assert [e.stream_version for e in tail] == [4, 5]
    after = await store.read_all(after=4, limit=3)
    assert [e.position for e in after] == [5, 6, 7]
    every = [e.position async for e in store.iter_all(after=0, batch=2)]
    assert every == list(range(1, 10))


async def test_object_at_a_position_is_time_travel(store):
    obj = configmap("web", v="1")
    await store.append(create(obj), ALICE)                                      # 1
    await store.append(create(configmap("noise")), ALICE)                       # 2
    await store.append(update({**obj, "data": {"v": "2"}}, expected=1), ALICE)  # 3
    await store.append(delete(obj), ctx(verb="delete"))                         # 4
    s = cm_stream("web")
    assert (await store.object_at(s, 1))["data"] == {"v": "1"}
    assert (await store.object_at(s, 2))["metadata"]["resourceVersion"] == "1"
    assert (await store.object_at(s, 3))["data"] == {"v": "2"}
    assert await store.object_at(s, 4) is None
    assert await store.object_at(s, 0) is None


async def test_a_failed_transaction_fails_every_unit_in_it_and_the_store_recovers(store, database_url):
    """The committer's backend dies mid-transaction: that batch's callers see the error, nothing of it
    is written, and later appends still work."""
    from eventplane.store.append import APPEND_LOCK

    await store.append(create(configmap("before")), ALICE)
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute("SELECT pg_advisory_lock($1)", APPEND_LOCK)  # the committer will wait on it
        batch = asyncio.gather(*[store.append(create(configmap(f"x{i}")), ALICE) for i in range(5)],
                               return_exceptions=True)
        victim = None
        for _ in range(200):  # bounded: until the committer is seen waiting for the lock
            victim = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'")
            if victim:
                break
            await asyncio.sleep(0.01)
        assert victim, "the committer never waited for the append lock"
        await admin.execute("SELECT pg_terminate_backend($1)", victim)
        await admin.execute("SELECT pg_advisory_unlock($1)", APPEND_LOCK)
        outcomes = await batch
    finally:
        await admin.close()
    assert all(isinstance(o, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)) for o in outcomes), outcomes
    await store.append(create(configmap("after")), ALICE)
    rows = await store.pool.fetch("SELECT position FROM events ORDER BY position")
    assert [r["position"] for r in rows] == [1, 2]
    assert (await store.verify()).ok


async def test_list_one_resource_in_key_order_by_namespace_or_all(store):
    for ns, name in [("b", "z"), ("a", "y"), ("a-b", "x"), ("a", "x")]:
        await store.append(create(configmap(name, ns)), ALICE)
    await store.append(Append(StreamId("", "secrets", "a", "s"), "Created", {"metadata": {"name": "s"}}, uid="s"),
                       ALICE)
    everything = await store.list(group="", resource="configmaps")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everything] == \
        [("a-b", "x"), ("a", "x"), ("a", "y"), ("b", "z")]  # bytewise key order ("-" < "/"), as etcd lists
    in_a = await store.list(group="", resource="configmaps", namespace="a")
    assert [o["metadata"]["name"] for o in in_a] == ["x", "y"]
    assert all(o["metadata"]["resourceVersion"] for o in in_a)
    assert await store.list(group="apps", resource="configmaps") == []


async def test_stale_beliefs_of_one_appender_never_write_wrong(database_url):
    """Appender A remembers streams it wrote; appender B changes them behind its back. Every one of
    A's decisions must still be made on the real state (the write checks A's beliefs under the lock)."""
    async with EventStore.connect(database_url) as a, EventStore.connect(database_url) as b:
        web = configmap("web")
        [created] = await a.append(create(web), ALICE)
        await a.append(create(configmap("other")), ALICE)          # A now believes it knows web and other
        await b.append(delete(web), ctx(verb="delete"))             # B deletes web
        with pytest.raises(errors.NotFoundError):
            await a.append(update({**web, "data": {"x": "1"}}, expected=created.position), ctx(verb="update"))
        await b.append(create(configmap("fresh")), ALICE)           # A does not know fresh exists
        with pytest.raises(errors.AlreadyExistsError):
            await a.append(create(configmap("fresh")), ALICE)
        [again] = await a.append(create(configmap("web")), ALICE)   # web's stream has history: version 3
        assert again.stream_version == 3
        other = await b.get(cm_stream("other"))                    # created by A at position 2
        await b.append(update({**other, "data": {"by": "b"}}, expected=2), ctx(verb="update"))
        with pytest.raises(errors.ConflictError):                   # A's belief of other's version is stale
            await a.append(update({**other, "data": {"by": "a"}}, expected=2), ctx(verb="update"))
        rows = await a.pool.fetch("SELECT position FROM events ORDER BY position")
        assert [r["position"] for r in rows] == list(range(1, len(rows) + 1))
        assert (await a.verify()).ok
        assert a._committer.stats["speculated"] > 0 and a._committer.stats["reloaded"] > 0
