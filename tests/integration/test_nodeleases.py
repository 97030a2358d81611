"""Node leases in NATS KV: renew, read, expire, watch — against the session's real NATS."""
from __future__ import annotations

import asyncio
import uuid

import nats

from eventplane.client.nodeleases import NodeLeases


async def test_renew_get_watch_delete(servers):
    nc = await nats.connect(servers.nats_url)
    try:
        bucket = f"leases-{uuid.uuid4().hex[:8]}"
        leases = await NodeLeases.open(nc, bucket)
        again = await NodeLeases.open(nc, bucket)          # opening an existing bucket works
        assert await leases.get("node-1") is None
        lease = await leases.renew("node-1", holder="agent", duration=10, now=1000.0)
        got = await again.get("node-1")
        assert got == lease and got.expired(now=1011.0) and not got.expired(now=1009.0)
        await leases.renew("a.b.c", holder="agent", duration=5)
        assert set(await leases.all()) == {"node-1", "a.b.c"}

        seen: list = []

        async def watch():
            async for node, value in leases.watch():
                seen.append((node, value))
                if value is None:
                    return
        task = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        await leases.renew("node-1", holder="agent", duration=10, now=2000.0)
        await leases.delete("a.b.c")
        await asyncio.wait_for(task, 10)
        nodes = [n for n, _ in seen]
        assert "a.b.c" in nodes and "node-1" in nodes
        assert any(v is not None and v.renew_time == 2000.0 for n, v in seen if n == "node-1")
        assert seen[-1] == ("a.b.c", None)
        await nc.jetstream().delete_key_value(bucket)
    finally:
        await nc.close()
