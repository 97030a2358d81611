"""Subscribing to the EVENTS stream from any position.

Fed by the relay's stream; consumed by projections, informers, the scheduler
and node agents. A subscription is an ordered JetStream consumer starting at
`after + 1`, optionally filtered by subjects (see `subjects.filter_subject`);
it yields decoded events in position order, each once: positions at or below
the last one yielded are dropped (DESIGN.md invariant 6). A position the
stream no longer keeps raises `GoneError`, so a caller re-lists, as a
Kubernetes client does on 410.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import nats
from nats.js import api

from eventplane.objects.errors import GoneError
from eventplane.objects.events import Event

from .config import BusConfig
from .subjects import all_subjects


class Subscription:
    """`async with Subscription(nc, config, after=P) as sub: async for event in sub: ...`"""

    def __init__(self, nc: nats.NATS, config: BusConfig = BusConfig(), *, after: int = 0,
                 subjects: Sequence[str] = ()) -> None:
        self._nc = nc
        self._config = config
        self.last = after
        self._subjects = list(subjects) or [all_subjects(config.subject_prefix)]
        self._sub: nats.js.JetStreamContext.PushSubscription | None = None

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        js = self._nc.jetstream()
        info = await js.stream_info(self._config.stream)
        first = info.state.first_seq
        if info.state.messages and self.last + 1 < first:
            raise GoneError(
                f"too old resource version: {self.last} (the event stream keeps positions from {first})")
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.last + 1,
            filter_subjects=self._subjects if len(self._subjects) > 1 else None,
            filter_subject=self._subjects[0] if len(self._subjects) == 1 else None,
        )
        self._sub = await js.subscribe(self._subjects[0], stream=self._config.stream, config=config,
                                       ordered_consumer=True, idle_heartbeat=2.0)

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except nats.errors.Error:
                pass  # the connection is already gone; the server drops the consumer
            self._sub = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        if self._sub is None:
            raise RuntimeError("Subscription.start() was not awaited")
        async for msg in self._sub.messages:
            event = Event.decode(msg.data)
            if event.position <= self.last:
                continue
            self.last = event.position
            yield event

    async def next(self, timeout: float | None = None) -> Event:
        """The next event, for callers that want one at a time (tests, request/reply)."""
        if self._sub is None:
            raise RuntimeError("Subscription.start() was not awaited")
        while True:
            msg = await self._sub.next_msg(timeout=timeout)
            event = Event.decode(msg.data)
            if event.position > self.last:
                self.last = event.position
                return event
