"""The time machine's benchmark: history, as-of reads, audit queries and the projection rebuild over a
large log, each read figure against its target and the rebuild beside the raw rate of reading the same
table in the same run.

1. Load `--events` (1,000,000) events through the real append path: EventStore.append, `--writers`
   (64) concurrent writers, each append a unit of `--unit` (20) events of distinct objects; 20
   namespaces x (deployments, configmaps, pods, services); every object created, then updated in
   rounds (5 versions each), some deleted. Namespace ns-00 holds exactly `--list-size` (1,000) live
   ConfigMaps, never deleted. Every update unit carries as causation the first position of the
   previous unit of the same objects, so the last event of an object has a causation chain of
   one step per round.
2. Audit rows for one week (`--audit-rows`, default = --events), 50 users, inserted directly into
   audit_events by COPY in batches (rows built by eventplane.store.audit.AuditRecord.row()).
3. Reads, one client, measured through the store functions directly (not over REST):
   stream_history and uid_history of a random object, position_at a random time, causation_chain
   of a random object's last event, object_at (as-of get) at a random position, list_at of ns-00's
   ConfigMaps at a random position after they were created, query_audit for one user over one day.
4. rebuild_objects (the whole `objects` projection, under the append lock) in events/s beside
   `COPY (SELECT * FROM events) TO STDOUT` into a counting sink, interleaved, `--repeat` times each.
5. The targets, PASS/MISS (a miss never changes the exit status).

Starts its own embedded PostgreSQL and NATS in a temp dir and stops both on any exit. Run:
`.venv/bin/python bench/history.py [--events 200000] [--json]`.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import math
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

import _common as c
from eventplane.objects.events import EventType, StreamId, pack
from eventplane.store import Append, Context, EventStore
from eventplane.store import history as hist
from eventplane.store import reads
from eventplane.store.rebuild import rebuild_objects

TARGET_HISTORY_P99_MS = 10.0
TARGET_GET_AT_P99_MS = 10.0
TARGET_LIST_AT_MS = 200.0
TARGET_AUDIT_MS = 200.0
TARGET_REBUILD_PER_S = 50_000
TARGET_REBUILD_RAW_FRACTION = 0.30

PERF = time.perf_counter
NAMESPACES = [f"ns-{i:02d}" for i in range(20)]
KINDS = [("apps", "deployments", "Deployment"), ("", "configmaps", "ConfigMap"), ("", "pods", "Pod"),
         ("", "services", "Service")]
LIST_NS = "ns-00"
VERSIONS = 5            # create + 4 updates per object
DELETE_FRACTION = 0.10  # of the deletable units
AUDIT_USERS = 50
AUDIT_DAYS = 7
AUDIT_BATCH = 10_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- objects

class Obj:
    __slots__ = ("group", "resource", "kind", "namespace", "name", "uid", "stream", "version")

    def __init__(self, group: str, resource: str, kind: str, namespace: str, name: str) -> None:
        self.group, self.resource, self.kind, self.namespace, self.name = group, resource, kind, namespace, name
        self.uid = str(uuid.uuid4())
        self.stream = StreamId(group, resource, namespace, name)
        self.version = 0


def body(o: Obj) -> dict[str, Any]:
    """The object at its current version, ~400-600 B of msgpack, a field that changes per version."""
    v = o.version
    meta = {"name": o.name, "namespace": o.namespace, "uid": o.uid,
            "labels": {"app": o.name.rsplit("-", 1)[0], "tier": "backend", "bench.eventplane.io/version": str(v)},
            "annotations": {"bench.eventplane.io/note": "x" * 40}}
    if o.resource == "deployments":
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"replicas": 1 + v, "selector": {"matchLabels": {"app": o.name}},
                         "template": {"metadata": {"labels": {"app": o.name}},
                                      "spec": {"containers": [{"name": "main", "image": f"nginx:1.{20 + v}",
                                                               "ports": [{"containerPort": 80}]}]}}}}
    if o.resource == "configmaps":
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "data": {f"key-{i}": f"value-{v}-" + "y" * 48 for i in range(5)}}
    if o.resource == "pods":
        phase = ("Pending", "Pending", "Running", "Running", "Running")[min(v, 4)] if v < 5 else "Running"
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "spec": {"nodeName": f"node-{len(o.uid) * v % 8}",
                         "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]},
                "status": {"phase": phase, "podIP": f"10.0.{v}.{int(o.uid[:2], 16)}"}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": o.name}, "ports": [{"port": 80 + v, "targetPort": 8080}],
                     "type": "ClusterIP"}}


def population(events: int, unit: int, list_size: int, rng: random.Random) -> tuple[list[list[Obj]], int, int]:
    """Units (fixed groups of `unit` objects, the same each round) and how many deletable units to delete,
    and the number of top-up updates that make the total exactly `events`.

    Total = objects x VERSIONS + deleted units x unit + top-up."""
    per_object = VERSIONS + DELETE_FRACTION
    n = max(list_size + unit, int(events / per_object) // unit * unit)
    protected = [Obj("", "configmaps", "ConfigMap", LIST_NS, f"list-cm-{i:05d}") for i in range(list_size)]
    others: list[Obj] = []
    slots = [(ns, k) for ns in NAMESPACES for k in KINDS if not (ns == LIST_NS and k[1] == "configmaps")]
    for i in range(n - list_size):
        ns, (group, resource, kind) = slots[i % len(slots)]
        others.append(Obj(group, resource, kind, ns, f"{resource[:-1]}-{i:07d}"))
    rng.shuffle(others)
    units_p = [protected[i:i + unit] for i in range(0, len(protected), unit)]
    units_o = [others[i:i + unit] for i in range(0, len(others), unit)]
    deleted = int(len(units_o) * DELETE_FRACTION)
    base = n * VERSIONS + sum(len(u) for u in units_o[:deleted])
    while base > events and deleted > 0:  # a very small --events: fewer deletes
        deleted -= 1
        base = n * VERSIONS + sum(len(u) for u in units_o[:deleted])
    return units_o + units_p, deleted, max(0, events - base)


# ---------------------------------------------------------------- 1. load through the real append path

async def run_round(store: EventStore, writers: int, work: list[tuple[list[Append], Context, int]],
                    first_positions: dict[int, int]) -> int:
    """Every (appends, context, unit id) of `work`, spread over `writers` closed-loop writers."""
    it = iter(work)
    done = [0]

    async def writer() -> None:
        for appends, ctx, uid in it:
            result = await store.append(appends, ctx)
            first_positions[uid] = result[0].position
            done[0] += len(result)

    await asyncio.gather(*(writer() for _ in range(writers)))
    return done[0]


async def load(servers: c.Servers, url: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    units, deleted_units, top_up = population(args.events, args.unit, args.list_size, rng)
    deletable = units[:deleted_units]
    live_units = units[deleted_units:]
    store = await EventStore.open(url)
    meter = c.CpuMeter(servers)
    phases: list[dict[str, Any]] = []
    first_positions: dict[int, int] = {}  # unit id -> first position of its latest append
    total = 0
    t_all = PERF()
    meter.start()
    try:
        async def phase(name: str, work: list[tuple[list[Append], Context, int]]) -> None:
            nonlocal total
            rng.shuffle(work)
            pm = c.CpuMeter(servers)
            pm.start()
            t = PERF()
            n = await run_round(store, args.writers, work, first_positions)
            elapsed = PERF() - t
            total += n
            phases.append({"phase": name, "events": n, "seconds": elapsed, "per_s": n / elapsed,
                           "cpu_cores": pm.stop()})
            log(f"  {name}: {n:,} events in {elapsed:.1f} s = {n / elapsed:,.0f}/s (total {total:,})")

        def unit_work(verb: str, etype: str, pick: list[list[Obj]], bump: bool) -> list:
            work = []
            for u in pick:
                uid = id(u)
                appends = []
                for o in u:
                    if bump:
                        o.version += 1
                    appends.append(Append(o.stream, etype, body(o), o.uid))
                ctx = Context(actor=f"user-{uid % 7}", verb=verb, causation=first_positions.get(uid))
                work.append((appends, ctx, uid))
            return work

        log(f"load: {sum(len(u) for u in units):,} objects in units of {args.unit}, {args.writers} writers, "
            f"{VERSIONS} versions each, {sum(len(u) for u in deletable):,} deleted, {top_up:,} top-up updates")
        await phase("create", unit_work("create", EventType.CREATED, units, False))
        for r in range(1, VERSIONS):
            await phase(f"update {r}", unit_work("update", EventType.UPDATED, units, True))
        if top_up:
            objs = [o for u in live_units for o in u][:top_up]
            groups = [objs[i:i + args.unit] for i in range(0, len(objs), args.unit)]
            # top-up units are new groupings: no causation (they are not in first_positions)
            await phase("top-up updates", unit_work("update", EventType.UPDATED, groups, True))
        if deletable:
            await phase("delete", unit_work("delete", EventType.DELETED, deletable, False))
        elapsed = PERF() - t_all
        cpu = meter.stop()
        head = await store.head()
        live = await store.pool.fetchval("SELECT count(*) FROM objects")
    finally:
        await store.close()
    objects = [o for u in units for o in u]
    return {"events": total, "head": head, "seconds": elapsed, "per_s": total / elapsed, "cpu_cores": cpu,
            "phases": phases, "objects": len(objects), "live_objects": live,
            "deleted_objects": sum(len(u) for u in deletable), "units": len(units),
            "_objects": objects}


# ---------------------------------------------------------------- 2. audit rows

def audit_available() -> tuple[Any, str]:
    """The audit module when its writer's row format and query function are there, else (None, why)."""
    try:
        from eventplane.store import audit
        for name in ("AuditRecord", "AuditQuery", "query_audit", "COLUMNS"):
            getattr(audit, name)
    except (ImportError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return audit, ""


async def load_audit(pool: asyncpg.Pool, audit: Any, rows: int, rng: random.Random,
                     end: datetime) -> dict[str, Any]:
    """`rows` records spread uniformly over AUDIT_DAYS days before `end`, in time order (as the writer
    produces them), COPY'd in batches."""
    start = end - timedelta(days=AUDIT_DAYS)
    span = (end - start).total_seconds()
    verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
    t = PERF()
    written = 0
    async with pool.acquire() as conn:
        while written < rows:
            batch = []
            for k in range(written, written + min(AUDIT_BATCH, rows - written)):
                # in time order, as requests arrive: record k falls in the k-th slice of the week
                at = start + timedelta(seconds=(k + rng.random()) * span / rows)
                ns, (group, resource, _kind) = rng.choice(NAMESPACES), rng.choice(KINDS)
                verb = rng.choice(verbs)
                denied = rng.random() < 0.02
                rec = audit.AuditRecord(
                    audit_id=uuid.uuid4(), stage="ResponseComplete", level="Metadata", time_received=at,
                    time_completed=at + timedelta(milliseconds=3), user_name=f"user-{rng.randrange(AUDIT_USERS)}",
                    verb=verb, request_uri=f"/api/v1/namespaces/{ns}/{resource}", outcome="denied" if denied
                    else "allowed", transport="https", user_groups=("system:authenticated",), api_group=group,
                    api_version="v1", resource=resource, namespace=ns, name="" if verb in ("list", "watch")
                    else f"obj-{rng.randrange(10_000)}", source_ip="10.0.0.7", user_agent="kubectl/v1.30",
                    response_code=403 if denied else 200, annotations={"authorization.k8s.io/decision":
                                                                        "forbid" if denied else "allow"})
                batch.append(rec.row())
            await conn.copy_records_to_table("audit_events", records=batch, columns=audit.COLUMNS)
            written += len(batch)
    elapsed = PERF() - t
    return {"rows": written, "seconds": elapsed, "per_s": written / elapsed, "start": start, "end": end}


# ---------------------------------------------------------------- 3. reads

async def timed(samples: int, warmup: int, op) -> tuple[dict[str, float], list[Any]]:
    """`op(i)` `warmup` times unmeasured, then `samples` times one after another; latencies and, per call,
    the number of items returned (1/0 for a single object found or not)."""
    for i in range(warmup):
        await op(-1 - i)
    lat, results = [], []
    for i in range(samples):
        t = PERF()
        r = await op(i)
        lat.append(PERF() - t)
        results.append(len(r) if isinstance(r, list) else r is not None)  # keep no objects alive
    return c.summarize_ms(lat), results


async def measure_reads(url: str, loaded: dict[str, Any], audit_info: dict[str, Any], audit: Any,
                        args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    objects: list[Obj] = loaded["_objects"]
    head = loaded["head"]
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    out: dict[str, Any] = {}
    try:
        # when the list namespace's creates were all committed: the highest Created position in it
        low, high = reads._key_range("", "configmaps", LIST_NS)
        list_from = await pool.fetchval(
            "SELECT max(position) FROM events WHERE stream >= $1 AND stream < $2 AND type = 'Created'", low, high)
        first_at, last_at = await pool.fetchval("SELECT min(occurred_at) FROM events"), \
            await pool.fetchval("SELECT max(occurred_at) FROM events")
        picks = [rng.choice(objects) for _ in range(args.samples + 20)]
        positions = [rng.randint(1, head) for _ in range(args.samples + 20)]

        log("reads: history of one object (stream)…")
        s, res = await timed(args.samples, 20, lambda i: hist.stream_history(pool, picks[i].stream))
        out["stream_history"] = {**s, "mean_events": sum(res) / len(res)}
        log("reads: history of one object (uid)…")
        s, res = await timed(args.samples, 20, lambda i: hist.uid_history(pool, picks[i].uid))
        out["uid_history"] = {**s, "mean_events": sum(res) / len(res)}
        log("reads: position at a time…")
        span = (last_at - first_at).total_seconds()
        times = [first_at + timedelta(seconds=rng.random() * span) for _ in range(args.samples + 20)]
        s, res = await timed(args.samples, 20, lambda i: hist.position_at(pool, times[i]))
        out["position_at"] = {**s, "mean_events": 1.0}
        log("reads: causation chain of an object's last event…")
        lasts = await pool.fetch(
            "SELECT max(position) AS p FROM events WHERE stream = ANY($1::text[]) GROUP BY stream",
            [o.stream.key for o in picks])
        lastpos = [r["p"] for r in lasts]
        s, res = await timed(min(args.samples, len(lastpos) - 20), 20,
                             lambda i: hist.causation_chain(pool, lastpos[i]))
        out["causation_chain"] = {**s, "mean_events": sum(res) / max(1, len(res))}
        log("reads: as-of get of one object…")
        s, res = await timed(args.samples, 20, lambda i: reads.object_at(pool, picks[i].stream, positions[i]))
        out["object_at"] = {**s, "mean_events": sum(res) / len(res)}
        log(f"reads: as-of list of {LIST_NS}'s configmaps…")
        list_positions = [rng.randint(list_from, head) for _ in range(args.list_samples + 3)]
        s, res = await timed(args.list_samples, 3, lambda i: reads.list_at(
            pool, list_positions[i], group="", resource="configmaps", namespace=LIST_NS))
        counts = sorted(set(res))
        out["list_at"] = {**s, "mean_events": sum(res) / len(res), "item_counts": counts,
                          "from_position": list_from}
        if audit is not None and audit_info.get("rows"):
            log("reads: audit query, one user over one day…")
            start = audit_info["start"]
            qs = []
            for _ in range(args.list_samples + 3):
                day = start + timedelta(seconds=rng.random() * (AUDIT_DAYS - 1) * 86400)
                qs.append(audit.AuditQuery(user=f"user-{rng.randrange(AUDIT_USERS)}", since=day,
                                           until=day + timedelta(days=1), limit=audit.MAX_QUERY_LIMIT))
            try:
                s, res = await timed(args.list_samples, 3, lambda i: audit.query_audit(pool, qs[i]))
                out["audit"] = {**s, "mean_events": sum(res) / len(res),
                                "max_rows": max(res), "limit": audit.MAX_QUERY_LIMIT}
            except Exception as exc:  # the audit store is being finished: report, do not fail the run
                out["audit"] = {"not_measured": f"query failed: {type(exc).__name__}: {exc}"}
        else:
            out["audit"] = {"not_measured": audit_info.get("not_measured", "audit store not available")}
    finally:
        await pool.close()
    return out


# ---------------------------------------------------------------- 4. rebuild beside the raw read

async def rebuild_vs_raw(servers: c.Servers, url: str, repeat: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        events = await conn.fetchval("SELECT count(*) FROM events")
        live_before = await conn.fetchval("SELECT count(*) FROM objects")
        nbytes = [0]

        async def sink(data: bytes) -> None:
            nbytes[0] += len(data)

        async def raw() -> dict[str, Any]:
            nbytes[0] = 0
            meter = c.CpuMeter(servers)
            meter.start()
            t = PERF()
            await conn.copy_from_query("SELECT * FROM events", output=sink)
            elapsed = PERF() - t
            return {"seconds": elapsed, "per_s": events / elapsed, "bytes": nbytes[0], "cpu_cores": meter.stop()}

        async def rebuild() -> dict[str, Any]:
            meter = c.CpuMeter(servers)
            meter.start()
            t = PERF()
            live = await rebuild_objects(conn)
            elapsed = PERF() - t
            return {"seconds": elapsed, "per_s": events / elapsed, "live": live, "cpu_cores": meter.stop()}

        log("rebuild: warm-up read of the table (unmeasured)…")
        await raw()
        raws, rebuilds = [], []
        for i in range(repeat):
            log(f"rebuild: raw COPY {i + 1}/{repeat}…")
            raws.append(await raw())
            log(f"rebuild: rebuild_objects {i + 1}/{repeat}…")
            rebuilds.append(await rebuild())
    finally:
        await conn.close()

    def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {**sorted(runs, key=lambda r: r["per_s"])[len(runs) // 2], "all_per_s": [r["per_s"] for r in runs]}

    r, b = median(raws), median(rebuilds)
    return {"events": events, "live_before": live_before, "raw": r, "rebuild": b,
            "ratio": b["per_s"] / r["per_s"], "live_match": all(x["live"] == live_before for x in rebuilds)}


# ---------------------------------------------------------------- the run

async def run_all(servers: c.Servers, args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    rng = random.Random(args.seed)
    facts = await c.machine_facts(servers, loop_name)
    url = await c.fresh_database(servers, "ep_hist")
    out: dict[str, Any] = {"machine": facts, "config": {
        "events": args.events, "writers": args.writers, "unit": args.unit, "list_size": args.list_size,
        "samples": args.samples, "list_samples": args.list_samples, "repeat": args.repeat,
        "audit_rows": args.events if args.audit_rows is None else args.audit_rows, "seed": args.seed,
        "namespaces": len(NAMESPACES), "kinds": [k[1] for k in KINDS], "versions": VERSIONS}}
    loaded = await load(servers, url, args, rng)
    out["load"] = {k: v for k, v in loaded.items() if not k.startswith("_")}
    sample = loaded["_objects"][0]
    out["config"]["payload_bytes"] = len(pack(body(sample)))

    audit, why = audit_available()
    audit_info: dict[str, Any] = {}
    if audit is None:
        audit_info["not_measured"] = f"audit store not available ({why})"
    elif out["config"]["audit_rows"] > 0:
        log(f"audit: {out['config']['audit_rows']:,} rows by COPY into audit_events…")
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            audit_info = await load_audit(pool, audit, out["config"]["audit_rows"], rng,
                                          datetime.now(timezone.utc))
        except Exception as exc:
            audit_info = {"not_measured": f"audit store not available ({type(exc).__name__}: {exc})"}
        finally:
            await pool.close()
    out["audit_load"] = {k: v for k, v in audit_info.items() if k not in ("start", "end")}

    log("VACUUM ANALYZE + CHECKPOINT…")
    t = PERF()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    await c.checkpoint(servers)
    out["vacuum_seconds"] = PERF() - t

    # The generator's bookkeeping (every object of the load) must not be scanned by the cycle collector
    # in the middle of a timed read: a full collection over it takes ~100 ms and is no cost of the read.
    gc.collect()
    gc.freeze()
    meter = c.CpuMeter(servers)
    meter.start()
    out["reads"] = await measure_reads(url, loaded, audit_info, audit, args, rng)
    out["reads_cpu"] = meter.stop()
    out["rebuild"] = await rebuild_vs_raw(servers, url, args.repeat)
    out["targets"] = targets(out)
    return out


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    r, rb = out["reads"], out["rebuild"]
    audit = r["audit"].get("p99_ms")
    rows = [
        ("history of one object p99 ms", f"<= {TARGET_HISTORY_P99_MS:g}", r["stream_history"]["p99_ms"], "{:.2f}",
         lambda v: v <= TARGET_HISTORY_P99_MS),
        ("as-of get of one object p99 ms", f"<= {TARGET_GET_AT_P99_MS:g}", r["object_at"]["p99_ms"], "{:.2f}",
         lambda v: v <= TARGET_GET_AT_P99_MS),
        (f"as-of list of {out['config']['list_size']:,} p99 ms", f"<= {TARGET_LIST_AT_MS:g}",
         r["list_at"]["p99_ms"], "{:.1f}", lambda v: v <= TARGET_LIST_AT_MS),
        ("audit, 1 user x 1 day p99 ms", f"<= {TARGET_AUDIT_MS:g}", audit, "{:.1f}",
         lambda v: v <= TARGET_AUDIT_MS),
        ("rebuild events/s", f">= {TARGET_REBUILD_PER_S:,}", rb["rebuild"]["per_s"], "{:,.0f}",
         lambda v: v >= TARGET_REBUILD_PER_S),
        ("rebuild / raw COPY", f">= {TARGET_REBUILD_RAW_FRACTION:.0%}", rb["ratio"], "{:.0%}",
         lambda v: v >= TARGET_REBUILD_RAW_FRACTION),
    ]
    result = []
    for name, goal, value, fmt, ok in rows:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        result.append({"target": name, "goal": goal, "value": None if missing else value,
                       "shown": "-" if missing else fmt.format(value),
                       "verdict": "N/A" if missing else ("PASS" if ok(value) else "MISS")})
    return result


# ---------------------------------------------------------------- output

OTHERS_WARN_CORES = 0.25


def cpu_cell(cpu: dict[str, float]) -> str:
    return f"{cpu['bench']:.2f}/{cpu['postgres']:.2f}/{cpu['machine']:.2f}/{cpu['steal']:.2f}"


def render(out: dict[str, Any]) -> str:
    m, cfg, ld = out["machine"], out["config"], out["load"]
    pg = m["postgres"]
    lines = [
        "eventplane history benchmark",
        f"machine   {m['nproc']} cores ({m['cpu']}), Python {m['python']}, loop: {m['loop']}",
        f"postgres  {pg['server_version']}  fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
        f"wal_sync_method={pg['wal_sync_method']} full_page_writes={pg['full_page_writes']} "
        f"shared_buffers={pg['shared_buffers']}",
        f"disk      {m['filesystem']} at {m['data_dir']}, 8 KiB write+fdatasync p50 {m['fdatasync_us_p50']:.0f} us",
        "",
        f"1. load through EventStore.append: {cfg['writers']} writers, units of {cfg['unit']} appends, "
        f"{cfg['namespaces']} namespaces x {'/'.join(cfg['kinds'])},",
        f"   {ld['objects']:,} objects x {cfg['versions']} versions (create + updates), {ld['deleted_objects']:,} "
        f"deleted; {LIST_NS} holds {cfg['list_size']:,} live configmaps; payload ~{cfg['payload_bytes']} B msgpack",
        f"   {'phase':<16} {'events':>10} {'seconds':>8} {'events/s':>9}  cpu py/pg/all/steal",
    ]
    for p in ld["phases"]:
        lines.append(f"   {p['phase']:<16} {p['events']:>10,} {p['seconds']:>8.1f} {p['per_s']:>9,.0f}  "
                     f"{cpu_cell(p['cpu_cores'])}")
    lines.append(f"   {'total':<16} {ld['events']:>10,} {ld['seconds']:>8.1f} {ld['per_s']:>9,.0f}  "
                 f"{cpu_cell(ld['cpu_cores'])}   (head {ld['head']:,}, live objects {ld['live_objects']:,})")
    al = out["audit_load"]
    if "rows" in al:
        lines.append(f"   audit: {al['rows']:,} rows over {AUDIT_DAYS} days, {AUDIT_USERS} users, COPY into "
                     f"audit_events in batches of {AUDIT_BATCH:,}: {al['seconds']:.1f} s ({al['per_s']:,.0f}/s)")
    lines.append(f"   then VACUUM ANALYZE + CHECKPOINT: {out['vacuum_seconds']:.1f} s")
    r = out["reads"]
    lines += [
        "",
        "2. reads, one client, store functions called directly (not over REST); ms",
        f"   {'read':<46} {'n':>5} {'p50':>7} {'p99':>7} {'max':>7}  {'per call':>14}",
    ]
    for key, label, unit in (
            ("stream_history", "history of one object (stream_history)", "events"),
            ("uid_history", "history by uid (uid_history)", "events"),
            ("position_at", "position at a time (position_at)", ""),
            ("causation_chain", "causation chain of a last event", "events"),
            ("object_at", "as-of get, random position (object_at)", "found"),
            ("list_at", f"as-of list of {LIST_NS} configmaps (list_at)", "items"),
            ("audit", "audit: one user, one day (query_audit)", "rows")):
        x = r[key]
        if "not_measured" in x:
            lines.append(f"   {label:<46} not measured: {x['not_measured']}")
            continue
        per = "" if not unit else (f"{x['mean_events']:.0%} {unit}" if unit == "found"
                                   else f"{x['mean_events']:,.1f} {unit}")
        lines.append(f"   {label:<46} {x['n']:>5} {x['p50_ms']:>7.2f} {x['p99_ms']:>7.2f} {x['max_ms']:>7.2f}  "
                     f"{per:>14}")
    lines.append(f"   (list item counts seen: {r['list_at']['item_counts']}; cpu during reads "
                 f"{cpu_cell(out['reads_cpu'])})")
    rb = out["rebuild"]
    lines += [
        "",
        f"3. full projection rebuild beside the raw read of the same table ({rb['events']:,} events; median of "
        f"{cfg['repeat']}, interleaved)",
        f"   {'path':<46} {'seconds':>8} {'events/s':>10}  {'all runs':>26}  cpu py/pg/all/steal",
    ]
    for key, label in (("raw", "raw: COPY (SELECT * FROM events) TO STDOUT"), ("rebuild", "rebuild_objects")):
        x = rb[key]
        runs = ",".join(f"{v / 1e3:,.0f}k" for v in x["all_per_s"])
        lines.append(f"   {label:<46} {x['seconds']:>8.2f} {x['per_s']:>10,.0f}  {runs:>26}  {cpu_cell(x['cpu_cores'])}")
    lines.append(f"   rebuild/raw {rb['ratio']:.0%}; raw read {rb['raw']['bytes'] / 1e6:,.0f} MB; live objects after "
                 f"rebuild {rb['rebuild']['live']:,} ({'matches' if rb['live_match'] else 'DIFFERS from'} the "
                 f"appenders' {rb['live_before']:,})")
    others = max(x["machine"] - x["bench"] - x["postgres"] - x["nats"]
                 for x in (ld["cpu_cores"], out["reads_cpu"], rb["raw"]["cpu_cores"], rb["rebuild"]["cpu_cores"]))
    if others > OTHERS_WARN_CORES:
        lines += ["", f"   NOTE: processes outside this benchmark used up to {others:.2f} of {m['nproc']} cores during "
                      "a phase; the figures above are pessimistic for this machine."]
    lines += ["", "4. targets (a MISS never changes the exit status)"]
    for t in out["targets"]:
        lines.append(f"   {t['target']:<34} {t['goal']:>10} {t['shown']:>10}  {t['verdict']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = c.parser(__doc__)
    p.add_argument("--events", type=int, default=1_000_000, help="events to load through EventStore.append")
    p.add_argument("--writers", type=int, default=64, help="concurrent writers while loading")
    p.add_argument("--unit", type=int, default=20, help="appends per EventStore.append call (one atomic unit)")
    p.add_argument("--list-size", type=int, default=1000, help=f"live configmaps in {LIST_NS}")
    p.add_argument("--audit-rows", type=int, default=None, help="audit rows to insert (default: --events)")
    p.add_argument("--samples", type=int, default=1000, help="measured calls per single-object read")
    p.add_argument("--list-samples", type=int, default=50, help="measured calls of the list and audit reads")
    p.add_argument("--repeat", type=int, default=3, help="raw reads and rebuilds, interleaved (median shown)")
    p.add_argument("--seed", type=int, default=1, help="seed of the generator and of the picks")
    c.add_common_args(p, server_log_level=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return c.run_main(args, run_all, render, children=False)


if __name__ == "__main__":
    sys.exit(main())
