"""The relay against real PostgreSQL and NATS: order, sequence == position, subjects, takeover, refill."""
from __future__ import annotations

import asyncio

import nats
import pytest

from eventplane.bus import BusConfig, Subscription, filter_subject
from eventplane.objects.errors import GoneError
from eventplane.objects.events import StreamId
from eventplane.store import Append
from tests.support.builders import ALICE, configmap, create, ctx, update
from tests.support.relaying import collect, running_relay, stream_positions, wait_for_last_seq


async def test_32_writers_by_500_relayed_with_sequence_equal_to_position(store, relay, bus):
    config, nc = bus

    async def writer(w: int) -> None:
        for i in range(500):
            await store.append(create(configmap(f"w{w}-{i}")), ALICE)

    consumer = asyncio.create_task(collect(nc, config, after=0, count=16000, timeout=120))
    await asyncio.gather(*[writer(w) for w in range(32)])
    received = await consumer
    assert [e.position for e in received] == list(range(1, 16001))
    assert all(e.verifies() for e in received)
    info = await nc.jetstream().stream_info(config.stream)
    assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (16000, 1, 16000)
    for seq in (1, 777, 8000, 16000):
        msg = await nc.jetstream().get_msg(config.stream, seq)
        assert msg.headers["Nats-Msg-Id"] == str(seq)
    assert (await store.verify()).ok


async def test_a_relay_started_late_catches_up_from_the_stream(store, bus, database_url, servers):
    config, nc = bus
    for i in range(50):
        await store.append(create(configmap(f"early{i}")), ALICE)
    async with running_relay(database_url, servers.nats_url, config):
        await wait_for_last_seq(nc, config.stream, 50)
    for i in range(30):
        await store.append(create(configmap(f"meanwhile{i}")), ALICE)
    async with running_relay(database_url, servers.nats_url, config):
        await wait_for_last_seq(nc, config.stream, 80)
    assert await stream_positions(nc, config.stream) == list(range(1, 81))


async def test_subjects_name_the_object_and_a_pods_node(store, relay, bus):
    config, nc = bus
    pod = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "p1"}, "spec": {"nodeName": "node-1"}}
    role = {"metadata": {"name": "system:controller:job", "uid": "r1"}}
    await store.append(Append(StreamId("", "pods", "shop", "web-1"), "Created", pod, uid="p1"), ALICE)
    await store.append(Append(StreamId("rbac.authorization.k8s.io", "clusterroles", "", "system:controller:job"),
                              "Created", role, uid="r1"), ALICE)
    await store.append(create(configmap("dotted.name")), ALICE)
    await wait_for_last_seq(nc, config.stream, 3)
    js = nc.jetstream()
    subjects = [(await js.get_msg(config.stream, seq)).subject for seq in (1, 2, 3)]
    p = config.subject_prefix
    assert subjects == [f"{p}.core.pods.shop.web-1.node-1",
                        f"{p}.rbac~2eauthorization~2ek8s~2eio.clusterroles._.system~3acontroller~3ajob._",
                        f"{p}.core.configmaps.default.dotted~2ename._"]


async def test_a_node_subscribes_to_its_own_pods_only(store, relay, bus):
    config, nc = bus
    for i in range(10):
        node = f"node-{i % 3}"
        pod = {"metadata": {"name": f"p{i}", "namespace": "default", "uid": f"u{i}"}, "spec": {"nodeName": node}}
        await store.append(Append(StreamId("", "pods", "default", f"p{i}"), "Created", pod, uid=f"u{i}"), ALICE)
        await store.append(create(configmap(f"cm{i}")), ALICE)
    await wait_for_last_seq(nc, config.stream, 20)
    only_node_1 = [filter_subject(config.subject_prefix, group="", resource="pods", node="node-1")]
    async with Subscription(nc, config, after=0, subjects=only_node_1) as sub:
        mine = [await sub.next(timeout=10) for _ in range(3)]
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next(timeout=0.5)
    assert [e.stream.name for e in mine] == ["p1", "p4", "p7"]


async def test_subscribe_with_several_filters_and_from_a_position(store, relay, bus):
    config, nc = bus
    for i in range(6):
        await store.append(create(configmap(f"a{i}", "team-a")), ALICE)
        await store.append(create(configmap(f"b{i}", "team-b")), ALICE)
        await store.append(create(configmap(f"c{i}", "team-c")), ALICE)
    p = config.subject_prefix
    events = await collect(nc, config, after=6, count=8, subjects=[
        filter_subject(p, namespace="team-a"), filter_subject(p, namespace="team-c")])
    assert [e.position for e in events] == [7, 9, 10, 12, 13, 15, 16, 18]
    assert {e.stream.namespace for e in events} == {"team-a", "team-c"}


async def test_a_position_older_than_retention_is_gone(store, database_url, servers, bus):
    _, nc = bus
    config = BusConfig(stream=bus[0].stream, subject_prefix=bus[0].subject_prefix, max_msgs=10)
    async with running_relay(database_url, servers.nats_url, config):
        for i in range(50):
            await store.append(create(configmap(f"c{i}")), ALICE)
        await wait_for_last_seq(nc, config.stream, 50)
    with pytest.raises(GoneError, match="too old resource version: 5"):
        async with Subscription(nc, config, after=5):
            pass
    assert [e.position for e in await collect(nc, config, after=40, count=10)] == list(range(41, 51))


async def test_a_lost_stream_is_recreated_at_the_right_sequence_and_refilled(store, relay, bus):
    config, nc = bus
    obj = configmap("web")
    await store.append(create(obj), ALICE)
    for i in range(2, 41):
        await store.append(update({**obj, "data": {"i": str(i)}}, expected=None), ctx(verb="update"))
    await wait_for_last_seq(nc, config.stream, 40)
    await nc.jetstream().delete_stream(config.stream)
    for i in range(41, 61):
        await store.append(create(configmap(f"after{i}")), ALICE)
    await wait_for_last_seq(nc, config.stream, 60)
    assert await stream_positions(nc, config.stream) == list(range(1, 61))


async def test_a_lost_stream_with_a_bounded_window_starts_inside_the_window(store, database_url, servers, bus):
    _, nc = bus
    config = BusConfig(stream=bus[0].stream, subject_prefix=bus[0].subject_prefix, max_msgs=25)
    for i in range(100):
        await store.append(create(configmap(f"c{i}")), ALICE)
    async with running_relay(database_url, servers.nats_url, config):
        await wait_for_last_seq(nc, config.stream, 100)
    info = await nc.jetstream().stream_info(config.stream)
    assert (info.state.first_seq, info.state.last_seq, info.state.messages) == (76, 100, 25)
    assert await stream_positions(nc, config.stream) == list(range(76, 101))


async def test_one_relay_leads_and_a_standby_takes_over(store, database_url, servers, bus):
    config, nc = bus
    async with running_relay(database_url, servers.nats_url, config) as first:
        from eventplane.bus import Relay
        second = Relay(database_url, servers.nats_url, config)
        standby = asyncio.create_task(second.run())
        for i in range(100):
            await store.append(create(configmap(f"one{i}")), ALICE)
        await wait_for_last_seq(nc, config.stream, 100)
        assert first.leading.is_set() and not second.leading.is_set()
        assert second.published == 0
    # the first relay is gone (its lock connection closed): the standby leads
    try:
        await asyncio.wait_for(second.leading.wait(), 10)
        for i in range(100):
            await store.append(create(configmap(f"two{i}")), ALICE)
        await wait_for_last_seq(nc, config.stream, 200)
        assert second.published == 100
    finally:
        standby.cancel()
        await asyncio.gather(standby, return_exceptions=True)
    assert await stream_positions(nc, config.stream) == list(range(1, 201))
