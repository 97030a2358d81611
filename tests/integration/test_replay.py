"""Replay to a past position: the projection rebuilt as of then, compared with live state."""
from __future__ import annotations

from eventplane.store.replay import replay_diff
from tests.support.builders import ALICE, configmap, create, ctx, delete, update


async def test_replay_reports_what_was_created_deleted_and_changed_since(store):
    web, gone, again = configmap("web"), configmap("gone", "shop"), configmap("again", "shop")
    for obj in (web, gone, again):
        await store.append(create(obj), ALICE)                                   # 1..3
    at = await store.head()
    await store.append(update({**web, "data": {"v": "2"}}, expected=None), ctx(verb="update"))      # 4
    await store.append(delete(gone), ctx(verb="delete"))                                            # 5
    await store.append(delete(again), ctx(verb="delete"))                                           # 6
    await store.append(create(configmap("again", "shop")), ALICE)                                   # 7
    await store.append(create(configmap("new", "shop")), ALICE)                                     # 8
    await store.append(create({"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": "d", "namespace": "shop", "uid": "u-d"}},
                              resource="deployments", group="apps"), ALICE)                         # 9

    diff = await replay_diff(store.pool, at)
    assert (diff.at, diff.head, diff.objects_then, diff.objects_now) == (3, 9, 3, 4)
    cms = diff.kinds["configmaps"]
    assert sorted(cms.created) == ["shop/again", "shop/new"]
    assert sorted(cms.deleted) == ["shop/again", "shop/gone"]
    assert cms.changed == ["default/web"]
    assert diff.kinds["deployments.apps"].created == ["shop/d"]

    same = await replay_diff(store.pool, diff.head)
    assert same.kinds == {} and same.objects_then == same.objects_now == 4


async def test_replay_to_zero_is_everything_created(store):
    await store.append(create(configmap("web")), ALICE)
    diff = await replay_diff(store.pool, 0)
    assert diff.objects_then == 0 and diff.kinds["configmaps"].created == ["default/web"]
    # the scratch table lived for one transaction only
    assert await store.pool.fetchval("SELECT to_regclass('replayed_objects')") is None
