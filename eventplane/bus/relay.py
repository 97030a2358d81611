"""The relay: PostgreSQL `events` → JetStream stream EVENTS, in position order.

Fed by the `events` table and woken by its NOTIFY (never by a timer); feeds
every subscriber of the bus. Exactly one relay is active: it holds a session
advisory lock, and standbys block on that lock, so when the holder's
connection dies (its process crashed) a standby takes over at once.

Each event is published with msg id = position and the expected last
sequence = position - 1, so the JetStream sequence of an event equals its
position; a mismatch is an error the relay resolves by re-reading the stream's
last sequence, never one it silently tolerates. The relay keeps no state of
its own: after any crash it resumes from the stream's last sequence. When the
stream is missing (lost, or first start) it is recreated to begin at the first
position its retention would keep and refilled from PostgreSQL.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import asyncpg
import nats
from nats.js import api
from nats.js.errors import NotFoundError

from eventplane.objects.events import Event, unpack
from eventplane.store import listen_appends, reads

from .config import BusConfig
from .subjects import all_subjects, event_subject

log = logging.getLogger("eventplane.relay")

RELAY_LOCK = 0x6576_726C  # "evrl": held by the active relay for the life of its session
BATCH = 1000
ACK_TIMEOUT = 10.0


class StreamAheadError(RuntimeError):
    """The stream holds positions the database does not: it belongs to another database."""


async def ensure_stream(js: nats.js.JetStreamContext, config: BusConfig, db: asyncpg.Connection) -> int:
    """Make sure the stream exists; return its last sequence (the last position it holds)."""
    try:
        info = await js.stream_info(config.stream)
        return info.state.last_seq
    except NotFoundError:
        pass
    first = await _first_retained_position(db, config)
    await js.add_stream(api.StreamConfig(
        name=config.stream,
        subjects=[all_subjects(config.subject_prefix)],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=config.max_age_seconds or None,
        max_msgs=config.max_msgs or None,
        num_replicas=config.replicas,
        discard=api.DiscardPolicy.OLD,
        duplicate_window=120.0,
        first_seq=first,
    ))
    log.info("created stream %s starting at position %d", config.stream, first)
    return first - 1


async def _first_retained_position(db: asyncpg.Connection, config: BusConfig) -> int:
    head = await reads.head(db)
    first = 1
    if config.max_msgs:
        first = max(first, head - config.max_msgs + 1)
    if config.max_age_seconds:
        since = await reads.first_position_since(db, seconds_ago=config.max_age_seconds)
        first = max(first, since if since is not None else head + 1)
    return first


def node_of(event: Event) -> str:
    """The node a pod is bound to, from the pod itself; '' for everything else."""
    if event.stream.group == "" and event.stream.resource == "pods":
        spec = unpack(event.payload).get("spec") or {}
        return spec.get("nodeName") or ""
    return ""


class Relay:
    def __init__(self, database_url: str, nats_url: str, config: BusConfig = BusConfig()) -> None:
        self.database_url = database_url
        self.nats_url = nats_url
        self.config = config
        self.published = 0
        self.leading = asyncio.Event()  # holds the lock
        self.ready = asyncio.Event()  # holds the lock and the stream exists

    async def run(self) -> None:
        """Wait for leadership, then relay until cancelled or the lock's connection is lost."""
        lock_conn = await asyncpg.connect(self.database_url)
        try:
            await lock_conn.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK)
            lost = asyncio.get_running_loop().create_future()
            lock_conn.add_termination_listener(lambda _c: lost.done() or lost.set_result(None))
            self.leading.set()
            log.info("relay is the leader")
            lead = asyncio.create_task(self._lead())
            try:
                await asyncio.wait({lead, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not lead.done():  # cancelled, or the lock is lost: stop publishing at once
                    lead.cancel()
                    await asyncio.gather(lead, return_exceptions=True)
            if not lead.cancelled() and lead.exception() is not None:
                raise lead.exception()
            raise ConnectionError("lost the relay lock's database connection")
        finally:
            self.leading.clear()
            self.ready.clear()
            await lock_conn.close()

    async def _lead(self) -> None:
        nc = await nats.connect(self.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                name="eventplane-relay")
        db = await asyncpg.connect(self.database_url)
        wake = asyncio.Event()
        await listen_appends(db, wake.set)
        reader = await asyncpg.connect(self.database_url)
        try:
            js = nc.jetstream()
            last = await ensure_stream(js, self.config, reader)
            head = await reads.head(reader)
            if last > head:
                raise StreamAheadError(f"stream {self.config.stream} ends at {last} but the log ends at {head}")
            self.ready.set()
            while True:
                wake.clear()  # before reading, so a commit during the read wakes us again
                events = await reads.read_all(reader, after=last, limit=BATCH)
                if not events:
                    await wake.wait()
                    continue
                last = await self._publish(js, reader, events, last)
        finally:
            await reader.close()
            await db.close()
            await nc.close()

    async def _publish(self, js: nats.js.JetStreamContext, reader: asyncpg.Connection,
                       events: Sequence[Event], last: int) -> int:
        futures = []
        try:
            for e in events:
                futures.append(await js.publish_async(
                    event_subject(self.config.subject_prefix, e.stream, node_of(e)), e.encode(),
                    headers={"Nats-Msg-Id": str(e.position), "Nats-Expected-Last-Sequence": str(e.position - 1)}))
        except Exception as exc:  # not even sent (connection closed, too many pending)
            for f in futures:
                f.cancel()
            return await self._resync(js, reader, events[0], exc)
        try:
            acks = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), ACK_TIMEOUT)
        except asyncio.TimeoutError:
            acks = [TimeoutError("no acknowledgement")] * len(events)
        for e, ack in zip(events, acks):
            if isinstance(ack, BaseException):
                return await self._resync(js, reader, e, ack)
            if ack.seq != e.position:
                raise RuntimeError(f"stream sequence {ack.seq} for position {e.position}: the invariant is broken")
            last = e.position
            self.published += 1
        return last

    async def _resync(self, js: nats.js.JetStreamContext, reader: asyncpg.Connection, event: Event,
                      error: BaseException) -> int:
        """A publish failed: learn from the stream where it really ends, after a short backoff."""
        log.warning("publish of position %d failed (%s); resyncing from the stream", event.position, error)
        backoff = 0.05
        while True:
            try:
                return await ensure_stream(js, self.config, reader)
            except Exception as exc:  # NATS still away: retry with backoff
                log.warning("stream not reachable (%s)", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


async def run_relay(database_url: str, nats_url: str, config: BusConfig = BusConfig()) -> None:
    """Run a relay for ever, standing by whenever another holds the lock, retrying on lost connections."""
    backoff = 0.1
    while True:
        started = time.monotonic()
        try:
            await Relay(database_url, nats_url, config).run()
        except (OSError, asyncpg.PostgresError, ConnectionError, nats.errors.Error) as exc:
            log.warning("relay stopped (%s); restarting", exc)
        if time.monotonic() - started > 10:
            backoff = 0.1
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)
