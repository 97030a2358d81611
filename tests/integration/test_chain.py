"""The hash chain: verify passes on an intact log and names the first position that does not."""
from __future__ import annotations

import pytest

from eventplane.objects.events import chain_hash

from tests.support.builders import ALICE, configmap, create, ctx, update


@pytest.fixture
async def log_of_20(store):
    obj = configmap("web")
    await store.append(create(obj), ALICE)
    for i in range(2, 21):
        if i % 3:
            await store.append(create(configmap(f"o{i}")), ALICE)
        else:
            await store.append(update({**obj, "data": {"i": str(i)}}, expected=None), ctx(verb="update"))
    return store


async def test_an_intact_log_verifies(log_of_20):
    result = await log_of_20.verify()
    assert result.ok and result.checked == 20 and (result.first, result.last) == (1, 20)


async def test_a_changed_payload_byte_is_named(log_of_20):
    await log_of_20.pool.execute(
        "UPDATE events SET payload = overlay(payload placing '\\x5a'::bytea from 10 for 1) WHERE position = 11")
    result = await log_of_20.verify()
    assert not result.ok and result.broken_at == 11
    assert "hash does not match" in result.reason


async def test_a_changed_actor_is_named(log_of_20):
    await log_of_20.pool.execute("UPDATE events SET actor = 'mallory' WHERE position = 7")
    assert (await log_of_20.verify()).broken_at == 7


async def test_a_rehashed_row_breaks_the_next_link(log_of_20):
    """Forging one row's hash to match its new contents still breaks the link to the next row."""
    [e] = await log_of_20.read_all(after=8, limit=1)
    await log_of_20.pool.execute("UPDATE events SET actor = 'mallory' WHERE position = 9")
    [forged] = await log_of_20.read_all(after=8, limit=1)
    forged_hash = chain_hash(forged.prev_hash, forged.canonical())
    assert forged_hash != e.hash
    await log_of_20.pool.execute("UPDATE events SET hash = $1 WHERE position = 9", forged_hash)
    result = await log_of_20.verify()
    assert result.broken_at == 10 and "prev_hash" in result.reason


async def test_a_deleted_row_is_a_missing_position(log_of_20):
    await log_of_20.pool.execute("DELETE FROM events WHERE position = 15")
    result = await log_of_20.verify()
    assert result.broken_at == 15 and "missing" in result.reason


async def test_verify_a_range_checks_the_link_into_it(log_of_20):
    assert (await log_of_20.verify(start=5, end=12)).ok
    await log_of_20.pool.execute("UPDATE events SET prev_hash = '\\x00' WHERE position = 5")
    assert (await log_of_20.verify(start=5, end=12)).broken_at == 5
    assert (await log_of_20.verify(start=6, end=12)).ok
