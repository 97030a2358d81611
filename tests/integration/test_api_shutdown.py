"""Stopping an API server with watches open: it stops within its shutdown grace, not when the
watches would end (never); their clients see the stream end and can resume elsewhere."""
from __future__ import annotations

import asyncio
import time

from eventplane.api.server import SHUTDOWN_GRACE
from eventplane.client import Client
from tests.support.apiserver import running_api


async def test_stop_cuts_open_watches_after_the_grace(database_url, servers, bus, tmp_path):
    config, _ = bus
    async with running_api(database_url, servers.nats_url, config, tmp_path / "api") as api:
        client = Client.from_kubeconfig(str(api.kubeconfig))
        opened = asyncio.Event()
        ended = asyncio.Event()

        async def raw_watch() -> None:
            # A plain HTTP watch, as kubectl -w holds one: read until the server ends the stream.
            session = client.transport.session()
            async with session.get(f"{api.url}/api/v1/namespaces/default/configmaps?watch=1",
                                   headers={"Authorization": f"Bearer {api.server.admin_token}"}) as resp:
                assert resp.status == 200
                opened.set()
                try:
                    async for _ in resp.content:
                        pass
                except Exception:      # the connection cut: also an end
                    pass
            ended.set()

        watchers = [asyncio.create_task(raw_watch()) for _ in range(3)]
        await asyncio.wait_for(opened.wait(), 10)
        await asyncio.sleep(0.2)
        start = time.monotonic()
        await api.server.stop()
        took = time.monotonic() - start
        await asyncio.wait_for(ended.wait(), 5)
        await asyncio.gather(*watchers, return_exceptions=True)
        await client.close()
        assert took < SHUTDOWN_GRACE + 5, f"stop took {took:.1f} s with watches open"
