"""The write path's benchmark: append throughput and latency, and append→subscriber latency,
each printed beside a baseline measured in the same run on the same servers.

1. Append throughput: N closed-loop writers (append, await, append…) creating
   distinct ConfigMap-like objects through EventStore.append; one fresh
   database per writer count.
2. Raw baseline: the same rows inserted into the `events` table of a fresh
   database with asyncpg executemany, one transaction per batch of N rows, one
   connection, no lock, no reads, no `objects` row, no hashing.
3. Append→subscriber latency at a paced rate through the Relay and a
   Subscription, beside raw core NATS publish→subscribe and raw JetStream
   publish→ordered consumer at the same rate and message size.
4. The targets, PASS/MISS (a miss never changes the exit status).

Starts its own embedded PostgreSQL and NATS in a temp dir and stops both on
any exit. Run: `make bench` or `.venv/bin/python bench/append.py [--json]`.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
import uuid
from collections.abc import Awaitable, Iterable
from datetime import datetime, timezone
from typing import Any

import asyncpg
import nats
from nats.js import api

import _common as c
from eventplane.bus import BusConfig, Relay, Subscription
from eventplane.objects.events import Event, EventType, StreamId, pack
from eventplane.store import Append, Context, EventStore, migrate

TARGET_APPENDS_PER_S = 10_000
TARGET_RAW_FRACTION = 0.5
TARGET_SUBSCRIBER_P99_MS = 20.0
TARGET_WRITERS = 64

PERF = time.perf_counter
HASH_PLACEHOLDER = bytes(32)
SCENARIO_TIMEOUT = 120.0

INSERT_EVENT = """
    INSERT INTO events (position, stream, stream_version, type, uid, actor, verb, request_id, idempotency_key,
                        trace_id, causation, occurred_at, payload, prev_hash, hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"""

# Group commit, seen from outside: every event of one transaction carries the
# same occurred_at (store/append.py takes one clock reading per batch), so
# events per distinct occurred_at = events per transaction.
BATCHES_SQL = """
    SELECT count(*) AS txns, coalesce(sum(n), 0) AS events, avg(n) AS mean,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY n) AS p50,
           percentile_disc(0.99) WITHIN GROUP (ORDER BY n) AS p99, max(n) AS max
    FROM (SELECT count(*) AS n FROM events WHERE position > $1 GROUP BY occurred_at) AS per_txn"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def new_append(tag: str, writer: int, seq: int) -> Append:
    name = f"cm-{tag}-{writer}-{seq}"
    uid = str(uuid.uuid4())
    return Append(StreamId("", "configmaps", c.NAMESPACE, name), EventType.CREATED,
                  c.configmap(name, writer=writer, seq=seq, uid=uid), uid)


# ---------------------------------------------------------------- 1. append throughput

async def closed_loop_writers(store: EventStore, writers: int, *, tag: str, seconds: float,
                              count: int) -> list[float]:
    """Each writer appends, awaits, appends… until `seconds` pass or it made `count` appends."""
    deadline = PERF() + seconds
    latencies: list[float] = []

    async def writer(w: int) -> None:
        ctx = Context(actor=f"bench-writer-{w}", verb="create")
        for n in range(count):
            if PERF() >= deadline:
                return
            a = new_append(tag, w, n)
            t = PERF()
            await store.append(a, ctx)
            latencies.append(PERF() - t)

    await asyncio.gather(*(writer(w) for w in range(writers)))
    return latencies


async def append_throughput(servers: c.Servers, writers: int, args: argparse.Namespace) -> dict[str, Any]:
    await c.checkpoint(servers)
    url = await c.fresh_database(servers, f"ep_w{writers}")
    store = await EventStore.open(url)  # migrates the fresh database
    try:
        if args.warmup > 0:
            await closed_loop_writers(store, writers, tag="warm", seconds=args.warmup, count=args.count)
        head = await store.head()
        meter = c.CpuMeter(servers)
        meter.start()
        t0 = PERF()
        latencies = await closed_loop_writers(store, writers, tag="run", seconds=args.seconds, count=args.count)
        elapsed = PERF() - t0
        cpu = meter.stop()
        batches = await group_commit_batches(store, after=head, seconds=elapsed)
    finally:
        await store.close()
    return {"writers": writers, "appends": len(latencies), "seconds": elapsed,
            "per_s": len(latencies) / elapsed, **c.summarize_ms(latencies), **batches, "cpu_cores": cpu}


async def group_commit_batches(store: EventStore, *, after: int, seconds: float) -> dict[str, Any]:
    """Transactions the group committer made for the events after `after`, and their sizes."""
    b = await store.pool.fetchrow(BATCHES_SQL, after)
    return {"txns": b["txns"], "txns_per_s": b["txns"] / seconds,
            "events_per_txn": {"mean": float(b["mean"] or 0), "p50": b["p50"], "p99": b["p99"], "max": b["max"]}}


# ---------------------------------------------------------------- 2. raw baseline

async def raw_inserts(conn: asyncpg.Connection, batch: int, *, tag: str, seconds: float, total: int,
                      first_position: int) -> tuple[list[float], int]:
    """Batches of `batch` rows, one executemany each (asyncpg makes it one atomic transaction)."""
    deadline = PERF() + seconds
    position, rows_done, latencies = first_position, 0, []
    while rows_done < total and PERF() < deadline:
        now = datetime.now(timezone.utc)
        rows = []
        for i in range(batch):
            position += 1
            a = new_append(tag, i, position)
            rows.append((position, a.stream.key, 1, a.type, a.uid, "bench-raw", "create", "", None, "", None,
                         now, pack(a.object), HASH_PLACEHOLDER, HASH_PLACEHOLDER))
        t = PERF()
        await conn.executemany(INSERT_EVENT, rows)
        latencies.append(PERF() - t)
        rows_done += batch
    return latencies, position


async def raw_baseline(servers: c.Servers, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    await c.checkpoint(servers)
    url = await c.fresh_database(servers, f"raw_b{batch}")
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)  # the very same `events` table and indexes
        position = 0
        if args.warmup > 0:
            _, position = await raw_inserts(conn, batch, tag="warm", seconds=args.warmup,
                                            total=batch * args.count, first_position=position)
        meter = c.CpuMeter(servers)
        meter.start()
        t0 = PERF()
        latencies, last = await raw_inserts(conn, batch, tag="run", seconds=args.seconds,
                                            total=batch * args.count, first_position=position)
        elapsed = PERF() - t0
        cpu = meter.stop()
    finally:
        await conn.close()
    rows = last - position
    return {"batch": batch, "rows": rows, "seconds": elapsed, "per_s": rows / elapsed,
            "batch_latency": c.summarize_ms(latencies), "txns": len(latencies),
            "cpu_cores": cpu}


# ---------------------------------------------------------------- 3. latency at a paced rate

class Arrivals:
    """When each key (position or sequence number) first reached the receiver.

    `settle(keys)` returns once every key of `keys` has arrived or the timeout
    passed; keys still missing then are reported as `lost`. It waits for the
    keys themselves, not for the highest one: concurrent publishers may put
    the highest key on the wire before a lower one.
    """

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self._missing: set[int] = set()
        self._complete = asyncio.Event()

    def arrived(self, key: int) -> None:
        self.at.setdefault(key, PERF())
        if self._missing:
            self._missing.discard(key)
            if not self._missing:
                self._complete.set()

    async def settle(self, keys: Iterable[int], timeout: float = 10.0) -> None:
        self._missing = {k for k in keys if k not in self.at}
        if not self._missing:
            return
        self._complete.clear()
        try:
            await asyncio.wait_for(self._complete.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def result(self, sent: dict[int, float], run: dict) -> dict:
        """Latency from each key's send time to its arrival, with the paced run's figures."""
        lat = [self.at[k] - t for k, t in sent.items() if k in self.at]
        return {**run, **c.summarize_ms(lat), "lost": len(sent) - len(lat)}


async def eventplane_subscriber_latency(servers: c.Servers, args: argparse.Namespace) -> dict[str, Any]:
    """Submit → Subscription yields the event, through group commit, NOTIFY, the relay and JetStream."""
    await c.checkpoint(servers)
    url = await c.fresh_database(servers, "ep_bus")
    config = BusConfig(stream="BENCH_EVENTS", subject_prefix="bench.ev")
    store = await EventStore.open(url)
    relay = Relay(url, servers.nats_url, config)
    relay_task = asyncio.create_task(relay.run(), name="bench-relay")
    nc = await nats.connect(servers.nats_url, name="bench-subscriber")
    consume_task: asyncio.Task | None = None
    sub: Subscription | None = None
    try:
        await _until(relay.leading.wait(), relay_task, "the relay to lead")
        await _until(_stream_exists(nc, config.stream), relay_task, "the relay to create its stream")
        sub = Subscription(nc, config, after=await store.head())
        await sub.start()
        arrivals = Arrivals()

        async def consume() -> None:
            async for event in sub:
                arrivals.arrived(event.position)

        consume_task = asyncio.create_task(consume(), name="bench-consume")

        async def measure(tag: str, seconds: float) -> dict:
            sent: dict[int, float] = {}
            acks: list[float] = []

            async def op(w: int, k: int) -> None:
                a = new_append(tag, w, k)
                t = PERF()
                [r] = await store.append(a, Context(actor=f"bench-writer-{w}", verb="create"))
                acks.append(PERF() - t)
                sent[r.position] = t

            head = await store.head()
            run = await c.paced(args.rate, seconds, args.paced_writers, op)
            await arrivals.settle(sent)
            if relay_task.done():
                relay_task.result()  # surface the relay's failure
            return {**arrivals.result(sent, run), "append_ack": c.summarize_ms(acks),
                    **await group_commit_batches(store, after=head, seconds=run["seconds"])}

        await measure("warm", args.warmup)
        meter = c.CpuMeter(servers)
        meter.start()
        result = await measure("run", args.latency_seconds)
        result["cpu_cores"] = meter.stop()
        result["relay_published"] = relay.published
        return result
    finally:
        if consume_task:
            consume_task.cancel()
            await asyncio.gather(consume_task, return_exceptions=True)
        if sub:
            await sub.close()
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await nc.close()
        await store.close()


async def _until(aw: Awaitable[Any], guard: asyncio.Task, what: str, timeout: float = 15.0) -> None:
    """Wait for `aw`, failing fast if `guard` (the relay) dies first."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task, guard}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
        return
    task.cancel()
    if guard in done:
        guard.result()
        raise RuntimeError(f"the relay stopped while waiting for {what}")
    raise TimeoutError(f"timed out waiting for {what}")


async def _stream_exists(nc: nats.NATS, stream: str) -> None:
    js = nc.jetstream()
    while True:  # setup only: the relay creates the stream right after it starts leading
        try:
            await js.stream_info(stream)
            return
        except nats.js.errors.NotFoundError:
            await asyncio.sleep(0.02)


def bus_message_size() -> int:
    """Bytes of one encoded event on the bus, so the raw NATS baselines carry the same size."""
    a = new_append("size", 0, 0)
    e = Event(1, a.stream, 1, a.type, a.uid, "bench-writer-0", "create", "", None, "", None,
              int(time.time() * 1e6), pack(a.object), HASH_PLACEHOLDER, HASH_PLACEHOLDER)
    return len(e.encode())


async def core_nats_latency(servers: c.Servers, args: argparse.Namespace, size: int) -> dict[str, Any]:
    """Plain core NATS: publish on one connection → subscription callback on another."""
    pub = await nats.connect(servers.nats_url, name="bench-core-pub")
    subc = await nats.connect(servers.nats_url, name="bench-core-sub")
    try:
        subject = "benchcore.core.configmaps.bench.cm._"
        arrivals = Arrivals()

        async def on_msg(msg) -> None:
            arrivals.arrived(int.from_bytes(msg.data[:8], "big"))

        await subc.subscribe(subject, cb=on_msg)
        await subc.flush()
        filler = bytes(size - 8)
        offset = [0]

        async def measure(seconds: float) -> dict:
            sent: dict[int, float] = {}

            async def op(_w: int, k: int) -> None:
                k += offset[0]
                sent[k] = PERF()
                await pub.publish(subject, k.to_bytes(8, "big") + filler)

            run = await c.paced(args.rate, seconds, args.paced_writers, op)
            offset[0] = max(sent) + 1
            await pub.flush()
            await arrivals.settle(sent)
            return arrivals.result(sent, run)

        await measure(args.warmup)
        meter = c.CpuMeter(servers)
        meter.start()
        result = await measure(args.latency_seconds)
        result["cpu_cores"] = meter.stop()
        return result
    finally:
        await pub.close()
        await subc.close()


async def jetstream_latency(servers: c.Servers, args: argparse.Namespace, size: int) -> dict[str, Any]:
    """Plain JetStream: js.publish (awaiting the PubAck) → an ordered push consumer, file storage."""
    pub = await nats.connect(servers.nats_url, name="bench-js-pub")
    subc = await nats.connect(servers.nats_url, name="bench-js-sub")
    consume_task: asyncio.Task | None = None
    try:
        js = pub.jetstream()
        await js.add_stream(api.StreamConfig(name="BENCH_RAW", subjects=["benchraw.>"],
                                             storage=api.StorageType.FILE, retention=api.RetentionPolicy.LIMITS))
        sub = await subc.jetstream().subscribe("benchraw.>", stream="BENCH_RAW", ordered_consumer=True,
                                               idle_heartbeat=2.0)
        subject = "benchraw.core.configmaps.bench.cm._"
        arrivals = Arrivals()

        async def consume() -> None:
            async for msg in sub.messages:
                arrivals.arrived(int.from_bytes(msg.data[:8], "big"))

        consume_task = asyncio.create_task(consume(), name="bench-js-consume")
        filler = bytes(size - 8)
        offset = [0]

        async def measure(seconds: float) -> dict:
            sent: dict[int, float] = {}
            acks: list[float] = []

            async def op(_w: int, k: int) -> None:
                k += offset[0]
                t = sent[k] = PERF()
                await js.publish(subject, k.to_bytes(8, "big") + filler)
                acks.append(PERF() - t)

            run = await c.paced(args.rate, seconds, args.paced_writers, op)
            offset[0] = max(sent) + 1
            await arrivals.settle(sent)
            return {**arrivals.result(sent, run), "publish_ack": c.summarize_ms(acks)}

        await measure(args.warmup)
        meter = c.CpuMeter(servers)
        meter.start()
        result = await measure(args.latency_seconds)
        result["cpu_cores"] = meter.stop()
        return result
    finally:
        if consume_task:
            consume_task.cancel()
            await asyncio.gather(consume_task, return_exceptions=True)
        await pub.close()
        await subc.close()


# ---------------------------------------------------------------- the run

async def run_all(servers: c.Servers, args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    facts = await c.machine_facts(servers, loop_name)
    nc = await nats.connect(servers.nats_url)
    facts["nats_server"] = repr(nc.connected_server_version).removeprefix("<nats server v").rstrip(">")
    await nc.close()
    sample = new_append("size", 0, 0)
    out: dict[str, Any] = {
        "machine": facts,
        "config": {"seconds": args.seconds, "count": args.count, "warmup": args.warmup,
                   "writers": args.writers, "rate": args.rate, "latency_seconds": args.latency_seconds,
                   "paced_writers": args.paced_writers, "payload_bytes": len(pack(sample.object)),
                   "bus_message_bytes": bus_message_size()},
        "append": [], "raw": [],
    }
    # Each figure right beside its baseline, so drift in the machine's load
    # (other tenants, the hypervisor) hits both sides of a ratio alike.
    for n in args.writers:
        log(f"append: {n} writer(s)…")
        out["append"].append(await asyncio.wait_for(append_throughput(servers, n, args), SCENARIO_TIMEOUT))
        log(f"raw baseline: batch {n}…")
        out["raw"].append(await asyncio.wait_for(raw_baseline(servers, n, args), SCENARIO_TIMEOUT))
    for a, r in zip(out["append"], out["raw"]):
        a["raw_ratio"] = a["per_s"] / r["per_s"] if r["per_s"] else float("nan")
    size = out["config"]["bus_message_bytes"]
    log(f"append→subscriber at {args.rate:g}/s…")
    out["subscriber"] = await asyncio.wait_for(eventplane_subscriber_latency(servers, args), SCENARIO_TIMEOUT)
    log("core NATS publish→subscribe…")
    out["core_nats"] = await asyncio.wait_for(core_nats_latency(servers, args, size), SCENARIO_TIMEOUT)
    log("JetStream publish→ordered consumer…")
    out["jetstream"] = await asyncio.wait_for(jetstream_latency(servers, args, size), SCENARIO_TIMEOUT)
    out["targets"] = targets(out)
    out["other_load_cores_max"] = max(r["cpu_cores"]["machine"] - r["cpu_cores"]["bench"]
                                      - r["cpu_cores"]["postgres"] - r["cpu_cores"]["nats"] for r in measured(out))
    return out


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    at = {a["writers"]: a for a in out["append"]}.get(TARGET_WRITERS)
    p99 = out["subscriber"]["p99_ms"]
    rows = [
        (f"appends/s with {TARGET_WRITERS} writers", f">= {TARGET_APPENDS_PER_S:,}",
         at["per_s"] if at else None, "{:,.0f}", lambda v: v >= TARGET_APPENDS_PER_S),
        (f"eventplane/raw with {TARGET_WRITERS} writers", f">= {TARGET_RAW_FRACTION:.0%}",
         at["raw_ratio"] if at else None, "{:.0%}", lambda v: v >= TARGET_RAW_FRACTION),
        ("append→subscriber p99 ms", f"<= {TARGET_SUBSCRIBER_P99_MS:g}",
         p99, "{:.1f}", lambda v: v <= TARGET_SUBSCRIBER_P99_MS),
    ]
    result = []
    for name, goal, value, fmt, ok in rows:
        missing = value is None or math.isnan(value)
        result.append({"target": name, "goal": goal, "value": None if missing else value,
                       "shown": "-" if missing else fmt.format(value),
                       "verdict": "N/A" if missing else ("PASS" if ok(value) else "MISS")})
    return result


# ---------------------------------------------------------------- output

CPU_HEADER = "cpu py/pg/all/steal"
OTHERS_WARN_CORES = 0.25


def measured(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Every scenario's result, in the order they ran."""
    return [*out["append"], *out["raw"], out["subscriber"], out["core_nats"], out["jetstream"]]


def cpu_cell(cpu: dict[str, float]) -> str:
    return f"{cpu['bench']:.2f}/{cpu['postgres']:.2f}/{cpu['machine']:.2f}/{cpu['steal']:.2f}"


def render(out: dict[str, Any]) -> str:
    m, cfg = out["machine"], out["config"]
    pg = m["postgres"]
    lines = [
        "eventplane append benchmark",
        f"machine   {m['nproc']} cores ({m['cpu']}), Python {m['python']}, loop: {m['loop']}",
        f"postgres  {pg['server_version']}  fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
        f"wal_sync_method={pg['wal_sync_method']} full_page_writes={pg['full_page_writes']} "
        f"commit_delay={pg['commit_delay']} shared_buffers={pg['shared_buffers']}",
        f"disk      {m['filesystem']} at {m['data_dir']}, 8 KiB write+fdatasync p50 {m['fdatasync_us_p50']:.0f} us",
        f"nats      nats-server {m['nats_server']}, JetStream file storage",
        f"payload   ConfigMap-like object, {cfg['payload_bytes']} B msgpack ({cfg['bus_message_bytes']} B as an "
        f"event on the bus); each writer: {cfg['seconds']:g} s or {cfg['count']:,} appends, "
        f"after {cfg['warmup']:g} s warm-up",
        "",
        "1. append throughput: closed-loop writers, EventStore.append(Append(Created), "
        "Context(verb='create')), fresh db each",
        "   (txns = distinct occurred_at = group-commit transactions; cpu = cores busy in the bench process,",
        "   postgres, the whole machine (anyone's), and cores stolen by the hypervisor)",
        f"   {'writers':>7} {'appends':>8} {'appends/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'txns/s':>7} "
        f"{'ev/txn mean':>11} {'p50':>4} {'p99':>4} {'max':>4}  {CPU_HEADER}",
    ]
    for a in out["append"]:
        b, cpu = a["events_per_txn"], a["cpu_cores"]
        lines.append(
            f"   {a['writers']:>7} {a['appends']:>8,} {a['per_s']:>10,.0f} {a['p50_ms']:>7.2f} {a['p99_ms']:>7.2f} "
            f"{a['txns_per_s']:>7,.0f} {b['mean']:>11.1f} {b['p50']:>4} {b['p99']:>4} {b['max']:>4}  "
            f"{cpu_cell(cpu)}")
    lines += [
        "",
        "2. raw baseline: the same rows (payload packed, uid, stream key) into `events` of a fresh migrated db,",
        "   asyncpg executemany of `batch` rows = one transaction, one connection, positions from a Python",
        "   counter; no advisory lock, no reads, no `objects` upsert, no hash chain, no NOTIFY",
        f"   {'batch':>7} {'rows':>8} {'rows/s':>10} {'txn p50':>7} {'txn p99':>7} {'txns/s':>7} "
        f"{'eventplane/raw':>15}  {CPU_HEADER}",
    ]
    for r, a in zip(out["raw"], out["append"]):
        bl, cpu = r["batch_latency"], r["cpu_cores"]
        lines.append(
            f"   {r['batch']:>7} {r['rows']:>8,} {r['per_s']:>10,.0f} {bl['p50_ms']:>7.2f} {bl['p99_ms']:>7.2f} "
            f"{r['txns'] / r['seconds']:>7,.0f} {a['raw_ratio']:>14.0%}  "
            f"{cpu_cell(cpu)}")
    lines += [
        "",
        f"3. delivery latency at a paced {cfg['rate']:g}/s for {cfg['latency_seconds']:g} s from "
        f"{cfg['paced_writers']} writers (ms from just before submit to receipt)",
        f"   {'path':<44} {'sent':>6} {'rate/s':>7} {'p50':>6} {'p99':>6} {'max':>6} {'lost':>4}  "
        f"{'ack p50/p99':>12}  {'cpu py/pg/nats':>14}",
    ]
    for label, key, ack in (("eventplane append → Relay → Subscription", "subscriber", "append_ack"),
                            ("raw core NATS publish → subscribe", "core_nats", None),
                            ("raw JetStream publish → ordered consumer", "jetstream", "publish_ack")):
        r = out[key]
        acks = f"{r[ack]['p50_ms']:.2f}/{r[ack]['p99_ms']:.2f}" if ack else "-"
        cpu = r["cpu_cores"]
        lines.append(f"   {label:<44} {r['ops']:>6,} {r['achieved_per_s']:>7,.0f} {r['p50_ms']:>6.2f} "
                     f"{r['p99_ms']:>6.2f} {r['max_ms']:>6.1f} {r['lost']:>4}  {acks:>12}  "
                     f"{cpu['bench']:.2f}/{cpu['postgres']:.2f}/{cpu['nats']:.2f}")
    s = out["subscriber"]
    b = s["events_per_txn"]
    lines.append(f"   (eventplane: {s['txns_per_s']:,.0f} group-commit txns/s, events/txn mean {b['mean']:.1f} "
                 f"p50 {b['p50']} p99 {b['p99']} max {b['max']}; the relay published {s['relay_published']:,})")
    others = out["other_load_cores_max"]
    if others > OTHERS_WARN_CORES:
        lines += ["", f"   NOTE: processes outside this benchmark used up to {others:.2f} of {m['nproc']} cores during "
                      "a scenario; the figures above are pessimistic for this machine."]
    lines += ["", "4. targets (a MISS never changes the exit status)"]
    for t in out["targets"]:
        lines.append(f"   {t['target']:<34} {t['goal']:>10} {t['shown']:>10}  {t['verdict']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = c.parser(__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per throughput scenario")
    p.add_argument("--count", type=int, default=3000,
                   help="appends per writer (raw: rows = batch x count), whichever of this and --seconds ends first")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each scenario")
    p.add_argument("--writers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64],
                   help="writer counts (and raw batch sizes), comma-separated")
    p.add_argument("--rate", type=float, default=1000.0, help="paced operations per second for latency")
    p.add_argument("--latency-seconds", type=float, default=5.0, help="measured seconds per latency scenario")
    p.add_argument("--paced-writers", type=int, default=16, help="concurrent writers sharing the paced rate")
    c.add_common_args(p, server_log_level=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return c.run_main(args, run_all, render, children=False)


if __name__ == "__main__":
    sys.exit(main())
