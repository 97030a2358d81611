"""eventplane.client.natspipe over a real NATS server: bytes arrive whole and in order under a slow
consumer without the sender running ahead of its window; a lost message, and an end with an
error, end the pipe instead of passing on a damaged stream."""
from __future__ import annotations

import asyncio
import os

import nats

from eventplane.client.natspipe import Pipe, PipeClosed


async def pair(nc_a, nc_b, window: int):
    a_subject, b_subject = nc_a.new_inbox(), nc_b.new_inbox()
    sub_a, sub_b = await nc_a.subscribe(a_subject), await nc_b.subscribe(b_subject)
    await nc_a.flush()    # both subscriptions known to the server before either end publishes
    await nc_b.flush()    # (the agent and the API get this by subscribing before they answer)
    return Pipe(nc_a, sub_a, b_subject, window=window), Pipe(nc_b, sub_b, a_subject, window=window)


async def test_bytes_arrive_whole_in_order_within_the_window(servers):
    nc_a, nc_b = await nats.connect(servers.nats_url), await nats.connect(servers.nats_url)
    try:
        a, b = await pair(nc_a, nc_b, window=256 * 1024)
        payload = os.urandom(3 * 1024 * 1024 + 17)
        most_in_flight = 0

        async def sender():
            nonlocal most_in_flight
            for i in range(0, len(payload), 100_000):
                await a.send(payload[i:i + 100_000])
                most_in_flight = max(most_in_flight, a.window - a._credit)
            await a.send_eof()

        received = bytearray()
        task = asyncio.create_task(sender())
        while (chunk := await b.recv()) is not None:
            received += chunk
            await asyncio.sleep(0.001)     # a slow consumer: the sender waits for credit
        await task
        assert bytes(received) == payload
        assert 0 < most_in_flight <= a.window
        # the other direction still works after one side's eof
        await b.send(b"reply")
        await b.send_eof()
        assert await a.recv() == b"reply" and await a.recv() is None
        await a.end()
        await b.end()
    finally:
        await nc_a.close()
        await nc_b.close()


async def test_a_gap_or_an_error_ends_the_pipe(servers):
    nc_a, nc_b = await nats.connect(servers.nats_url), await nats.connect(servers.nats_url)
    try:
        a, b = await pair(nc_a, nc_b, window=1024)
        await a.send(b"one")
        assert await b.recv() == b"one"
        # message 3 without 2: something was lost on the way
        await nc_a.publish(b._sub.subject, b"three", headers={"Op": "data", "Seq": "3"})
        assert await b.recv() is None and "lost data" in b.error
        assert b.closed.is_set()

        c, d = await pair(nc_a, nc_b, window=1024)
        await c.end("connection reset by peer")
        await asyncio.wait_for(d.closed.wait(), 5)
        assert await d.recv() is None and d.error == "connection reset by peer"
        try:
            await d.send(b"x")
        except PipeClosed as exc:
            assert "connection reset" in str(exc)
        else:
            raise AssertionError("send after the other end's end must fail")
        for p in (a, b, d):
            await p.end()
    finally:
        await nc_a.close()
        await nc_b.close()


async def test_an_end_that_goes_silent_is_taken_as_gone(servers):
    nc_a, nc_b = await nats.connect(servers.nats_url), await nats.connect(servers.nats_url)
    try:
        a_subject, b_subject = nc_a.new_inbox(), nc_b.new_inbox()
        sub_a, sub_b = await nc_a.subscribe(a_subject), await nc_b.subscribe(b_subject)
        await nc_a.flush()
        await nc_b.flush()
        a = Pipe(nc_a, sub_a, b_subject, keepalive=0.2)
        b = Pipe(nc_b, sub_b, a_subject, keepalive=0.2)
        await asyncio.sleep(1.0)          # both alive: their `alive`s keep each other open
        assert not a.closed.is_set() and not b.closed.is_set()
        b._keepalive.cancel()             # b dies without a word (its process is gone)
        b._dispatch.cancel()
        await asyncio.wait_for(a.closed.wait(), 3)
        assert await a.recv() is None and "nothing heard from the other end" in a.error
        await a.end()
    finally:
        await nc_a.close()
        await nc_b.close()
