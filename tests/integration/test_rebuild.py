"""Rebuilding the inline projection from the log equals the live projection exactly."""
from __future__ import annotations

import asyncio
import random

from eventplane.objects import errors
from tests.support.builders import cm_stream, configmap, create, ctx, delete, update


async def snapshot(store) -> list[tuple]:
    rows = await store.pool.fetch("SELECT * FROM objects ORDER BY stream")
    return [tuple(r.values()) for r in rows]


async def test_randomized_workload_then_rebuild_equals_live(store):
    rng = random.Random(20261128)
    live: dict[str, dict] = {}
    versions: dict[str, int] = {}

    async def step(i: int) -> None:
        choice = rng.random()
        name = f"o{rng.randrange(60)}"
        ns = rng.choice(["default", "team-a", "team-b"])
        key = f"{ns}/{name}"
        try:
            if key not in live or choice < 0.2:
                obj = configmap(name, ns, i=str(i))
                [a] = await store.append(create(obj), ctx())
                live[key], versions[key] = obj, a.position
            elif choice < 0.75:
                obj = {**live[key], "data": {"i": str(i)}}
                [a] = await store.append(update(obj, expected=versions[key]), ctx(verb="update"))
                live[key], versions[key] = obj, a.position
            else:
                await store.append(delete(live[key], expected=versions[key]), ctx(verb="delete"))
                del live[key], versions[key]
        except (errors.AlreadyExistsError, errors.ConflictError, errors.NotFoundError):
            pass  # concurrent steps race; the store decides, the model follows what succeeded

    for chunk in range(30):
        await asyncio.gather(*[step(chunk * 40 + i) for i in range(40)])

    before = await snapshot(store)
    assert len(before) > 50
    count = await store.rebuild_objects()
    after = await snapshot(store)
    assert count == len(before)
    assert after == before
    for key, obj in live.items():
        ns, name = key.split("/")
        got = await store.get(cm_stream(name, ns))
        assert got is not None
        assert got["metadata"]["uid"] == obj["metadata"]["uid"]


async def test_rebuild_of_an_emptied_projection_restores_it(store):
    for i in range(30):
        await store.append(create(configmap(f"c{i}")), ctx())
    before = await snapshot(store)
    await store.pool.execute("DELETE FROM objects")
    assert await store.rebuild_objects() == 30
    assert await snapshot(store) == before


async def test_rebuild_while_appending_loses_nothing(store):
    async def writer(w: int) -> None:
        for i in range(100):
            await store.append(create(configmap(f"w{w}-{i}")), ctx())

    writers = asyncio.gather(*[writer(w) for w in range(8)])
    for _ in range(5):
        await store.rebuild_objects()
    await writers
    assert await store.pool.fetchval("SELECT count(*) FROM objects") == 800
    before = await snapshot(store)
    await store.rebuild_objects()
    assert await snapshot(store) == before
