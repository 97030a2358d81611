"""Helpers for tests of the relay and subscribers: run a relay, wait for the stream, collect events."""
from __future__ import annotations

import asyncio
import contextlib
import time

import nats
from nats.js.errors import NotFoundError

from eventplane.bus import BusConfig, Relay, Subscription
from eventplane.objects.events import Event


@contextlib.asynccontextmanager
async def running_relay(database_url: str, nats_url: str, config: BusConfig):
    relay = Relay(database_url, nats_url, config)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.ready.wait(), 10)
        yield relay
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def wait_for_last_seq(nc: nats.NATS, stream: str, last: int, timeout: float = 30.0) -> None:
    """Wait (bounded) until the stream's last sequence reaches `last`."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = (await js.stream_info(stream)).state.last_seq
        except (NotFoundError, nats.errors.Error, asyncio.TimeoutError):
            seen = None
        if seen is not None and seen >= last:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"stream {stream} reached {seen}, expected {last} within {timeout}s")


async def collect(nc: nats.NATS, config: BusConfig, *, after: int, count: int, subjects=(),
                  timeout: float = 30.0) -> list[Event]:
    events = []
    async with Subscription(nc, config, after=after, subjects=subjects) as sub:
        deadline = time.monotonic() + timeout
        while len(events) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"received {len(events)} of {count} events")
            events.append(await sub.next(timeout=remaining))
    return events


async def stream_positions(nc: nats.NATS, stream: str) -> list[int]:
    """Every (sequence, position) pair the stream holds must agree; return the positions in order."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    positions = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        event = Event.decode(msg.data)
        assert event.position == seq, f"sequence {seq} holds position {event.position}"
        positions.append(event.position)
    return positions
