"""NATS restarted mid-stream (cleanly and with SIGKILL): nothing lost, nothing duplicated, subscribers resume."""
from __future__ import annotations

import asyncio

import nats
import pytest

from eventplane.bus import BusConfig
from eventplane.embedded import EmbeddedNats
from tests.support.builders import ALICE, configmap, create
from tests.support.relaying import collect, running_relay, stream_positions, wait_for_last_seq

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_nats_restarted_mid_stream(store, database_url, tmp_path, how):
    own = EmbeddedNats(tmp_path)  # this test's own server: it restarts it
    own.start()
    config = BusConfig(stream="EVENTS", subject_prefix="ep.ev")
    nc = await nats.connect(own.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    total = 4000
    try:
        async with running_relay(database_url, own.url, config):
            async def writer(w: int) -> None:
                for i in range(total // 8):
                    await store.append(create(configmap(f"w{w}-{i}")), ALICE)

            writers = asyncio.gather(*[writer(w) for w in range(8)])
            consumer = asyncio.create_task(collect(nc, config, after=0, count=total, timeout=180))
            await wait_for_last_seq(nc, config.stream, 1000, timeout=60)
            if how == "stop":
                own.stop()
            else:
                own.kill()
            await asyncio.sleep(0.5)  # the world goes on without NATS: appends keep committing
            own.start()
            await writers
            await wait_for_last_seq(nc, config.stream, total, timeout=90)
            received = await consumer
        assert [e.position for e in received] == list(range(1, total + 1))
        assert await stream_positions(nc, config.stream) == list(range(1, total + 1))
        assert (await store.verify()).ok
    finally:
        await nc.close()
        own.stop()
