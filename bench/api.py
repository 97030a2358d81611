"""The API server's benchmark: what a Kubernetes client sees over HTTPS, beside the raw
store append measured in the same run.

The API server and the relay run as child processes (`python -m
eventplane.cli.server apiserver|relay`), as in a deployment, so that the load
generator's CPU is not the server's; the load generator (this process) drives
them with aiohttp over keep-alive HTTPS connections as the admin user.

1. Creates: `--clients` (64) closed-loop clients POST distinct ConfigMaps
   (~500 B of JSON) for `--seconds`; creates/s, latency, server CPU.
2. Baseline: EventStore.append directly from this process, 64 concurrent
   writers, the very objects the API stored (managedFields and all), into a
   fresh database; API creates/s ÷ raw appends/s.
3. Get and update (PUT with resourceVersion) at `--concurrency` (8).
4. Mutations at a paced `--rate` (500/s): creates, then updates; p99 target.
5. List of a namespace holding exactly `--list-size` (1,000) ConfigMaps, JSON.
6. Watch delivery at a paced `--watch-rate` (200/s): from the create's
   response to the watcher receiving its event.
7. The targets, PASS/MISS (a miss never changes the exit status).

Starts its own embedded PostgreSQL and NATS in a temp dir and stops every
process it started (by PID) on any exit. Run:
`.venv/bin/python bench/api.py [--json] [--seconds 5] [--py-spy FILE]`.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import copy
import json
import math
import random
import shutil
import ssl
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats

import _common as c
from eventplane.bus import BusConfig
from eventplane.objects.events import EventType, StreamId, pack
from eventplane.store import Append, Context, EventStore

TARGET_CREATES_PER_S = 2_000
TARGET_MUTATION_P99_MS = 25.0
TARGET_WATCH_P99_MS = 50.0

PERF = time.perf_counter
SCENARIO_TIMEOUT = 120.0
REQUEST_TIMEOUT = 30.0
NS_CREATE, NS_LIST, NS_PACED, NS_WATCH = "bench", "bench-list", "bench-paced", "bench-watch"
CONFIGMAPS = "/api/v1/namespaces/{ns}/configmaps"


# Group commit seen from outside, as in append.py: every event of one transaction carries the same
# occurred_at, so events per distinct occurred_at = events per transaction.
BATCHES_SQL = """
    SELECT count(*) AS txns, coalesce(sum(n), 0) AS events, avg(n) AS mean,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY n) AS p50, max(n) AS max
    FROM (SELECT count(*) AS n FROM events WHERE position > $1 AND position <= $2 GROUP BY occurred_at) AS t"""


async def group_commit(database_url: str, after: int, upto: int, seconds: float) -> dict[str, Any]:
    """The transactions the group committer made for positions (after, upto], and their sizes."""
    conn = await asyncpg.connect(database_url)
    try:
        b = await conn.fetchrow(BATCHES_SQL, after, upto)
    finally:
        await conn.close()
    return {"txns": b["txns"], "txns_per_s": b["txns"] / seconds, "mean": float(b["mean"] or 0),
            "p50": b["p50"], "max": b["max"]}


async def head_of(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
    finally:
        await conn.close()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def body(namespace: str, name: str, *, writer: int, seq: int, rv: str | None = None) -> bytes:
    """A ConfigMap as a client sends it (no uid: the server sets it), ~500 B of JSON."""
    obj = c.configmap(name, writer=writer, seq=seq, namespace=namespace)
    del obj["metadata"]["uid"]
    if rv is not None:
        obj["metadata"]["resourceVersion"] = rv
    return json.dumps(obj, separators=(",", ":")).encode()


# ---------------------------------------------------------------- the server under test

class ServerUnderTest:
    """The apiserver and relay child processes, and what a client needs to reach them."""

    def __init__(self, servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace) -> None:
        self.servers = servers
        self.children = children
        self.args = args
        self.data_dir = servers.data_dir / "apiserver"
        self.port = c.free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.database_url = ""
        self.bus = BusConfig()
        self.apiserver: c.ChildProcess | None = None
        self.relay: c.ChildProcess | None = None
        self.token = ""
        self.ssl: ssl.SSLContext | None = None

    def _command(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "eventplane.cli.server", "--log-level", self.args.server_log_level, *argv]

    def _spawn(self, name: str, argv: list[str]) -> c.ChildProcess:
        child = c.ChildProcess(name, argv, self.servers.data_dir / f"{name}.log")
        self.children.append(child)  # registered before it starts: stopped on any exit
        child.start()
        return child

    async def start(self) -> None:
        self.database_url = await c.fresh_database(self.servers, "ep_api")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # --data-dir names the database source for these commands; the PKI and token dir is --pki-dir.
        self.apiserver = self._spawn("apiserver", self._command(
            "apiserver", "--database-url", self.database_url, "--nats-url", self.servers.nats_url,
            "--pki-dir", str(self.data_dir), "--api-port", str(self.port)))
        await self._until_ready()
        self.relay = self._spawn("relay", self._command(
            "relay", "--database-url", self.database_url, "--nats-url", self.servers.nats_url))
        await self._until_relayed()

    async def _until_ready(self, timeout: float = 60.0) -> None:
        deadline = PERF() + timeout
        token_file, ca_file = self.data_dir / "tokens.csv", self.data_dir / "pki" / "ca.crt"
        while PERF() < deadline:
            self._check_alive(self.apiserver)
            if token_file.exists() and ca_file.exists():
                try:
                    self.token = token_file.read_text().splitlines()[0].split(",")[0].strip()
                    self.ssl = ssl.create_default_context(cadata=ca_file.read_text())
                    async with aiohttp.ClientSession() as s, s.get(self.url + "/readyz", ssl=self.ssl) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, OSError, IndexError, ssl.SSLError):
                    pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the API server was not ready within {timeout:g} s:\n{self.apiserver.log_tail()}")

    async def _until_relayed(self, timeout: float = 30.0) -> None:
        """The relay leads once the stream holds everything the database does (the bootstrap namespaces)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        finally:
            await conn.close()
        nc = await nats.connect(self.servers.nats_url, name="bench-relay-probe")
        try:
            js, deadline = nc.jetstream(), PERF() + timeout
            while PERF() < deadline:
                self._check_alive(self.relay)
                try:
                    if (await js.stream_info(self.bus.stream)).state.last_seq >= head:
                        return
                except (nats.errors.Error, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        finally:
            await nc.close()
        raise TimeoutError(f"the relay did not publish within {timeout:g} s:\n{self.relay.log_tail()}")

    def _check_alive(self, child: c.ChildProcess | None) -> None:
        if child is not None and not child.running():
            raise RuntimeError(f"{child.name} exited with {child.stop()}; its log ends:\n{child.log_tail()}")

    def check(self) -> None:
        self._check_alive(self.apiserver)
        self._check_alive(self.relay)

    def meter(self) -> Meter:
        return Meter(self)

    def client(self, connections: int) -> Client:
        return Client(self.url, self.token, self.ssl, connections)


class Meter:
    """c.CpuMeter with the apiserver and the relay, plus how long the apiserver's event loop waited
    for a core (runnable, not running: /proc/PID/schedstat), as cores."""

    def __init__(self, server: ServerUnderTest) -> None:
        self._pid = server.apiserver.pid
        self._cpu = c.CpuMeter(server.servers, extra={"apiserver": server.apiserver.pid, "relay": server.relay.pid})
        self._start = (0.0, 0.0)

    def start(self) -> None:
        self._cpu.start()
        self._start = (PERF(), c.sched_seconds(self._pid)[1])

    def stop(self) -> dict[str, float]:
        cpu = self._cpu.stop()
        t0, waited0 = self._start
        cpu["apiserver_waiting"] = (c.sched_seconds(self._pid)[1] - waited0) / max(PERF() - t0, 1e-9)
        return cpu


class Client:
    """One aiohttp session: a pool of up to `connections` keep-alive HTTPS connections, as the admin."""

    def __init__(self, url: str, token: str, ssl_ctx: ssl.SSLContext, connections: int) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ssl=ssl_ctx, keepalive_timeout=120),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                     "Accept": "application/json", "User-Agent": "eventplane-bench/1"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        self.errors: collections.Counter[str] = collections.Counter()

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, data: bytes | None = None) -> tuple[float, bytes | None]:
        """(seconds from sending to the whole response read, the body when 2xx, else None)."""
        t = PERF()
        try:
            async with self.session.request(method, self.url + path, data=data) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return PERF() - t, None
        elapsed = PERF() - t
        if status >= 300:
            self.errors[str(status)] += 1
            if sum(self.errors.values()) <= 3:
                log(f"  {method} {path}: {status} {raw[:300]!r}")
            return elapsed, None
        return elapsed, raw

    def take_errors(self) -> dict[str, int]:
        out, self.errors = dict(self.errors), collections.Counter()
        return out


def rv_of(raw: bytes) -> str:
    return json.loads(raw)["metadata"]["resourceVersion"]


async def create_namespace(client: Client, name: str) -> None:
    data = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).encode()
    _, raw = await client.call("POST", "/api/v1/namespaces", data)
    if raw is None:
        raise RuntimeError(f"could not create namespace {name}: {client.take_errors()}")


# ---------------------------------------------------------------- scenario plumbing

async def closed_loop(workers: int, seconds: float, op: Callable[[int, int], Awaitable[bool]]) -> dict[str, Any]:
    """Each worker calls op(worker, seq), awaits it, calls again… until `seconds` pass.
    op returns whether it succeeded; successes are counted."""
    deadline = PERF() + seconds
    done = [0]

    async def worker(w: int) -> None:
        seq = 0
        while PERF() < deadline:
            if await op(w, seq):
                done[0] += 1
            seq += 1

    t0 = PERF()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = PERF() - t0
    return {"ok": done[0], "seconds": elapsed, "per_s": done[0] / elapsed}


def row(name: str, latencies: list[float], run: dict[str, Any], errors: dict[str, int], cpu: dict[str, float],
        **extra: Any) -> dict[str, Any]:
    per_s = run.get("per_s", run.get("achieved_per_s"))
    # The apiserver's CPU per request: less sensitive to other load on the machine than rates are.
    api_ms = cpu.get("apiserver", 0.0) * 1e3 / per_s if per_s else math.nan
    return {"scenario": name, **c.summarize_ms(latencies), "ok": run.get("ok", len(latencies)),
            "per_s": per_s, "seconds": run["seconds"], "api_cpu_ms_per_request": api_ms,
            "errors": sum(errors.values()), "error_kinds": errors, "cpu_cores": cpu, **extra}


class Session:
    """State shared by the scenarios of one run."""

    def __init__(self, server: ServerUnderTest, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.created: list[tuple[str, str]] = []  # (name, resourceVersion) of the measured creates
        self.list_names: list[str] = []
        self.create_runs = 0  # creates() may run more than once (a profiling loop): names stay distinct

    # ------------------------------------------------------------ 1. creates

    async def creates(self) -> dict[str, Any]:
        a = self.args
        client = self.server.client(a.clients)
        path = CONFIGMAPS.format(ns=NS_CREATE)
        again = f"{self.create_runs}-" if self.create_runs else ""
        self.create_runs += 1
        try:
            async def run(tag: str, seconds: float, keep: bool) -> tuple[list[float], dict]:
                latencies: list[float] = []
                tag = again + tag

                async def op(w: int, seq: int) -> bool:
                    name = f"cm-{tag}-{w}-{seq}"
                    elapsed, raw = await client.call("POST", path, body(NS_CREATE, name, writer=w, seq=seq))
                    if raw is None:
                        return False
                    latencies.append(elapsed)
                    if keep:
                        self.created.append((name, rv_of(raw)))
                    return True

                return latencies, await closed_loop(a.clients, seconds, op)

            if a.warmup > 0:
                await run("warm", a.warmup, False)  # also opens the pool's connections (TLS handshakes)
            client.take_errors()
            await c.checkpoint(self.server.servers)
            head = await head_of(self.server.database_url)
            profiler = self._start_profiler()
            meter = self.server.meter()
            meter.start()
            latencies, result = await run("run", a.seconds, True)
            cpu = meter.stop()
            self.server.check()
            batches = await group_commit(self.server.database_url, head, await head_of(self.server.database_url),
                                         result["seconds"])
            out = row("create", latencies, result, client.take_errors(), cpu, clients=a.clients,
                      group_commit=batches)
            if profiler is not None:
                out["py_spy"] = await self._finish_profiler(profiler)
            return out
        finally:
            await client.close()

    def _start_profiler(self) -> c.ChildProcess | None:
        if not self.args.py_spy:
            return None
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        return self.server._spawn("py-spy", [
            exe, "record", "--pid", str(self.server.apiserver.pid), "--duration", str(max(1, int(self.args.seconds))),
            "--rate", "100", "--format", "raw", "--nolineno", "--output", self.args.py_spy])

    async def _finish_profiler(self, profiler: c.ChildProcess) -> dict[str, Any]:
        for _ in range(100):
            if not profiler.running():
                break
            await asyncio.sleep(0.1)
        profiler.stop()
        return summarize_profile(Path(self.args.py_spy))

    # ------------------------------------------------------------ 2. raw store baseline

    async def baseline(self) -> dict[str, Any]:
        """EventStore.append from this process: the objects the API stored, 64 writers, a fresh database."""
        a = self.args
        client = self.server.client(1)
        try:
            name = self.created[0][0] if self.created else "cm-warm-0-0"
            _, raw = await client.call("GET", f"{CONFIGMAPS.format(ns=NS_CREATE)}/{name}")
        finally:
            await client.close()
        if raw is None:
            raise RuntimeError(f"could not read back {NS_CREATE}/{name} for the baseline's payload")
        template = json.loads(raw)
        template["metadata"].pop("resourceVersion", None)  # the API sets it after the append

        def new_append(tag: str, w: int, seq: int) -> Append:
            obj = copy.deepcopy(template)
            m = obj["metadata"]
            m["name"] = f"cm-{tag}-{w}-{seq}"
            m["uid"] = str(uuid.uuid4())
            m["annotations"] = {"bench.eventplane.io/seq": str(seq)}
            m["labels"]["writer"] = str(w)
            return Append(StreamId("", "configmaps", NS_CREATE, m["name"]), EventType.CREATED, obj, m["uid"])

        await c.checkpoint(self.server.servers)
        url = await c.fresh_database(self.server.servers, "ep_raw")
        store = await EventStore.open(url)  # migrates the fresh database
        try:
            async def run(tag: str, seconds: float) -> tuple[list[float], dict]:
                latencies: list[float] = []

                async def op(w: int, seq: int) -> bool:
                    request_id = str(uuid.uuid4())
                    ctx = Context(actor="eventplane-admin", verb="create", request_id=request_id, trace_id=request_id)
                    ap = new_append(tag, w, seq)
                    t = PERF()
                    await store.append(ap, ctx)
                    latencies.append(PERF() - t)
                    return True

                return latencies, await closed_loop(a.clients, seconds, op)

            if a.warmup > 0:
                await run("warm", a.warmup)
            head = await store.head()
            meter = self.server.meter()
            meter.start()
            latencies, result = await run("run", a.seconds)
            cpu = meter.stop()
            batches = await group_commit(url, head, await store.head(), result["seconds"])
        finally:
            await store.close()
        return row("raw EventStore.append", latencies, result, {}, cpu, writers=a.clients,
                   payload_bytes=len(pack(template)), group_commit=batches)

    # ------------------------------------------------------------ 3. get and update

    async def fill_list_namespace(self) -> dict[str, Any]:
        """Exactly --list-size ConfigMaps in their own namespace (also the objects `get` reads)."""
        a = self.args
        client = self.server.client(a.clients)
        path = CONFIGMAPS.format(ns=NS_LIST)
        names = [f"cm-list-{i:05d}" for i in range(a.list_size)]
        todo = collections.deque(enumerate(names))
        try:
            async def worker() -> None:
                while todo:
                    i, name = todo.popleft()
                    _, raw = await client.call("POST", path, body(NS_LIST, name, writer=i % a.clients, seq=i))
                    if raw is None:
                        raise RuntimeError(f"could not create {NS_LIST}/{name}: {client.take_errors()}")

            t0 = PERF()
            await asyncio.gather(*(worker() for _ in range(min(a.clients, a.list_size))))
            elapsed = PERF() - t0
        finally:
            await client.close()
        self.list_names = names
        return {"objects": len(names), "seconds": elapsed}

    async def gets(self) -> dict[str, Any]:
        a = self.args
        client = self.server.client(a.concurrency)
        rng = random.Random(1)
        path = CONFIGMAPS.format(ns=NS_LIST)
        try:
            latencies: list[float] = []

            async def op(_w: int, _seq: int) -> bool:
                elapsed, raw = await client.call("GET", f"{path}/{rng.choice(self.list_names)}")
                if raw is None:
                    return False
                latencies.append(elapsed)
                return True

            if a.warmup > 0:
                await closed_loop(a.concurrency, a.warmup, op)
            latencies.clear()
            client.take_errors()
            meter = self.server.meter()
            meter.start()
            result = await closed_loop(a.concurrency, a.short_seconds, op)
            cpu = meter.stop()
            return row("get", latencies, result, client.take_errors(), cpu, clients=a.concurrency)
        finally:
            await client.close()

    async def updates(self) -> dict[str, Any]:
        """PUT with the resourceVersion of the object's last write; worker w owns objects w, w+W, …"""
        a = self.args
        client = self.server.client(a.concurrency)
        path = CONFIGMAPS.format(ns=NS_CREATE)
        owned = [[list(nr) for nr in self.created[w::a.concurrency]] for w in range(a.concurrency)]
        if not all(owned):
            raise RuntimeError(f"the creates made {len(self.created)} objects, fewer than {a.concurrency} clients")
        try:
            latencies: list[float] = []

            async def op(w: int, seq: int) -> bool:
                mine = owned[w]
                obj = mine[seq % len(mine)]
                name, rv = obj
                elapsed, raw = await client.call("PUT", f"{path}/{name}",
                                                 body(NS_CREATE, name, writer=w, seq=10_000_000 + seq, rv=rv))
                if raw is None:
                    return False
                obj[1] = rv_of(raw)
                latencies.append(elapsed)
                return True

            if a.warmup > 0:
                await closed_loop(a.concurrency, a.warmup, op)
            latencies.clear()
            client.take_errors()
            meter = self.server.meter()
            meter.start()
            result = await closed_loop(a.concurrency, a.short_seconds, op)
            cpu = meter.stop()
            return row("update (PUT with resourceVersion)", latencies, result, client.take_errors(), cpu,
                       clients=a.concurrency)
        finally:
            await client.close()

    # ------------------------------------------------------------ 4. paced mutations

    async def paced_mutations(self) -> list[dict[str, Any]]:
        """Creates of distinct objects at --rate, then one update of each of them at --rate."""
        a = self.args
        client = self.server.client(a.paced_workers)
        path = CONFIGMAPS.format(ns=NS_PACED)
        rows = []
        try:
            made: dict[int, tuple[str, str]] = {}
            latencies: list[float] = []

            async def create(w: int, k: int, tag: str) -> None:
                name = f"cm-{tag}-{k}"
                elapsed, raw = await client.call("POST", path, body(NS_PACED, name, writer=w, seq=k))
                if raw is not None:
                    latencies.append(elapsed)
                    if tag == "run":
                        made[k] = (name, rv_of(raw))

            if a.warmup > 0:
                await c.paced(a.rate, a.warmup, a.paced_workers, lambda w, k: create(w, k, "warm"))
            latencies.clear()
            client.take_errors()
            meter = self.server.meter()
            meter.start()
            run = await c.paced(a.rate, a.latency_seconds, a.paced_workers, lambda w, k: create(w, k, "run"))
            cpu = meter.stop()
            rows.append(row(f"create at {a.rate:g}/s", latencies, run, client.take_errors(), cpu,
                            behind_ms=run["behind_ms"]))

            latencies.clear()

            async def update(w: int, k: int) -> None:
                if k not in made:
                    return
                name, rv = made[k]
                elapsed, raw = await client.call("PUT", f"{path}/{name}",
                                                 body(NS_PACED, name, writer=w, seq=10_000_000 + k, rv=rv))
                if raw is not None:
                    latencies.append(elapsed)

            meter = self.server.meter()
            meter.start()
            run = await c.paced(a.rate, a.latency_seconds, a.paced_workers, update)
            cpu = meter.stop()
            rows.append(row(f"update at {a.rate:g}/s", latencies, run, client.take_errors(), cpu,
                            behind_ms=run["behind_ms"]))
            return rows
        finally:
            await client.close()

    # ------------------------------------------------------------ 5. list

    async def lists(self) -> dict[str, Any]:
        a = self.args
        client = self.server.client(1)
        path = CONFIGMAPS.format(ns=NS_LIST)
        sizes: list[int] = []
        wrong: list[int] = []
        try:
            latencies: list[float] = []

            async def op(_w: int, _seq: int) -> bool:
                elapsed, raw = await client.call("GET", path)
                if raw is None:
                    return False
                n = len(json.loads(raw)["items"])
                if n != a.list_size:
                    wrong.append(n)
                latencies.append(elapsed)
                sizes.append(len(raw))
                return True

            await closed_loop(1, min(a.warmup, 0.5), op)
            latencies.clear()
            client.take_errors()
            meter = self.server.meter()
            meter.start()
            result = await closed_loop(1, a.short_seconds, op)
            cpu = meter.stop()
            return row(f"list {a.list_size:,} objects", latencies, result, client.take_errors(), cpu,
                       response_bytes=sizes[-1] if sizes else 0, wrong_item_counts=wrong[:5])
        finally:
            await client.close()

    # ------------------------------------------------------------ 6. watch delivery

    async def watch_delivery(self) -> dict[str, Any]:
        """A watch on NS_WATCH; creates there at --watch-rate; latency = event received − create's response."""
        a = self.args
        client = self.server.client(a.paced_workers)
        watcher = self.server.client(1)
        path = CONFIGMAPS.format(ns=NS_WATCH)
        arrived: dict[int, float] = {}
        reader: asyncio.Task | None = None
        resp: aiohttp.ClientResponse | None = None
        try:
            _, raw = await client.call("GET", path + "?limit=1")
            start_rv = rv_of(raw)
            resp = await watcher.session.get(f"{watcher.url}{path}?watch=true&resourceVersion={start_rv}"
                                             f"&timeoutSeconds=600&allowWatchBookmarks=false",
                                             timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
            if resp.status != 200:
                raise RuntimeError(f"watch answered {resp.status}: {await resp.text()}")

            async def read() -> None:
                async for line in resp.content:
                    t = PERF()
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    if ev.get("type") == "ADDED":
                        arrived.setdefault(int(ev["object"]["metadata"]["resourceVersion"]), t)

            reader = asyncio.create_task(read(), name="bench-watch-reader")

            async def measure(tag: str, seconds: float) -> dict[str, Any]:
                acked: dict[int, float] = {}
                ack_latencies: list[float] = []

                async def create(w: int, k: int) -> None:
                    name = f"cm-{tag}-{k}"
                    elapsed, raw = await client.call("POST", path, body(NS_WATCH, name, writer=w, seq=k))
                    t = PERF()
                    if raw is not None:
                        acked[int(rv_of(raw))] = t
                        ack_latencies.append(elapsed)

                run = await c.paced(a.watch_rate, seconds, a.paced_workers, create)
                deadline = PERF() + 10.0
                while PERF() < deadline and not reader.done() and any(rv not in arrived for rv in acked):
                    await asyncio.sleep(0.01)
                if reader.done():
                    reader.result()  # raises what ended the watch
                    raise RuntimeError("the watch ended early")
                delivery = [arrived[rv] - t for rv, t in acked.items() if rv in arrived]
                early = sum(1 for d in delivery if d < 0)
                return {**run, "delivery": [max(d, 0.0) for d in delivery], "acks": ack_latencies,
                        "lost": len(acked) - len(delivery), "before_ack": early}

            if a.warmup > 0:
                await measure("warm", a.warmup)
            client.take_errors()
            meter = self.server.meter()
            meter.start()
            m = await measure("run", a.latency_seconds)
            cpu = meter.stop()
            return row(f"watch delivery at {a.watch_rate:g}/s", m["delivery"], m, client.take_errors(), cpu,
                       ack=c.summarize_ms(m["acks"]), lost=m["lost"], before_ack=m["before_ack"],
                       behind_ms=m["behind_ms"])
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            if resp is not None:
                resp.close()
            await watcher.close()
            await client.close()


# ---------------------------------------------------------------- py-spy

def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks → the functions most on CPU: by own samples, and including callees
    (leaving out the frames nearly every sample passes through: the loop, the CLI, the runner)."""
    own: collections.Counter[str] = collections.Counter()
    total_in: collections.Counter[str] = collections.Counter()
    samples = 0
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        return {"error": str(exc)}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total_in[f] += n
    return {"file": str(path), "samples": samples,
            "self": [(f, n / samples) for f, n in own.most_common(top)] if samples else [],
            "total": [(f, n / samples) for f, n in total_in.most_common()
                      if n / samples < 0.95][:top + 15] if samples else []}


# ---------------------------------------------------------------- the run

async def run_all(servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace,
                  loop_name: str) -> dict[str, Any]:
    facts = await c.machine_facts(servers, loop_name)
    nc = await nats.connect(servers.nats_url)
    facts["nats_server"] = repr(nc.connected_server_version).removeprefix("<nats server v").rstrip(">")
    await nc.close()
    server = ServerUnderTest(servers, children, args)
    t = PERF()
    log("starting the API server and the relay…")
    await server.start()
    log(f"  API server pid {server.apiserver.pid} on {server.url}, relay pid {server.relay.pid} "
        f"({PERF() - t:.1f} s)")
    admin = server.client(4)
    try:
        for ns in (NS_CREATE, NS_LIST, NS_PACED, NS_WATCH):
            await create_namespace(admin, ns)
    finally:
        await admin.close()
    sample = body(NS_CREATE, f"cm-run-{args.clients - 1}-9999", writer=args.clients - 1, seq=9999)
    s = Session(server, args)
    out: dict[str, Any] = {
        "machine": facts,
        "config": {k: getattr(args, k) for k in ("seconds", "short_seconds", "latency_seconds", "warmup", "clients",
                                                 "concurrency", "rate", "watch_rate", "paced_workers",
                                                 "list_size")},
        "server": {"url": server.url, "apiserver_pid": server.apiserver.pid, "relay_pid": server.relay.pid,
                   "log_level": args.server_log_level},
    }
    out["config"]["request_body_bytes"] = len(sample)

    async def step(label: str, coro: Awaitable[Any]) -> Any:
        log(label)
        result = await asyncio.wait_for(coro, SCENARIO_TIMEOUT)
        server.check()
        return result

    # The baseline right after the figure it divides, so that drift in the machine's load hits both alike.
    out["create"] = await step(f"creates: {args.clients} clients for {args.seconds:g} s…", s.creates())
    out["raw"] = await step(f"raw EventStore.append: {args.clients} writers for {args.seconds:g} s…", s.baseline())
    out["create"]["raw_ratio"] = (out["create"]["per_s"] / out["raw"]["per_s"]) if out["raw"]["per_s"] else math.nan
    out["list_fill"] = await step(f"filling {NS_LIST} with {args.list_size:,} ConfigMaps…", s.fill_list_namespace())
    out["get"] = await step(f"gets: {args.concurrency} clients…", s.gets())
    out["update"] = await step(f"updates: {args.concurrency} clients…", s.updates())
    out["paced"] = await step(f"paced mutations at {args.rate:g}/s…", s.paced_mutations())
    out["list"] = await step(f"lists of {args.list_size:,}…", s.lists())
    out["watch"] = await step(f"watch delivery at {args.watch_rate:g}/s…", s.watch_delivery())
    out["targets"] = targets(out)
    scenarios = [out["create"], out["raw"], out["get"], out["update"], *out["paced"], out["list"], out["watch"]]
    out["other_load_cores_max"] = max(
        r["cpu_cores"]["machine"] - sum(r["cpu_cores"][k] for k in ("bench", "postgres", "nats", "apiserver", "relay"))
        for r in scenarios)
    return out


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    worst_paced = max(out["paced"], key=lambda r: r["p99_ms"] if not math.isnan(r["p99_ms"]) else math.inf)
    rows = [
        (f"creates/s sustained, {out['config']['clients']} clients", f">= {TARGET_CREATES_PER_S:,}",
         out["create"]["per_s"], "{:,.0f}", lambda v: v >= TARGET_CREATES_PER_S),
        (f"mutation p99 ms at {out['config']['rate']:g}/s ({worst_paced['scenario'].split()[0]})",
         f"<= {TARGET_MUTATION_P99_MS:g}", worst_paced["p99_ms"], "{:.1f}", lambda v: v <= TARGET_MUTATION_P99_MS),
        ("watch delivery p99 ms", f"<= {TARGET_WATCH_P99_MS:g}", out["watch"]["p99_ms"], "{:.1f}",
         lambda v: v <= TARGET_WATCH_P99_MS),
    ]
    result = []
    for name, goal, value, fmt, ok in rows:
        missing = value is None or math.isnan(value)
        result.append({"target": name, "goal": goal, "value": None if missing else value,
                       "shown": "-" if missing else fmt.format(value),
                       "verdict": "N/A" if missing else ("PASS" if ok(value) else "MISS")})
    return result


# ---------------------------------------------------------------- output

OTHERS_WARN_CORES = 0.25


def cpu_cell(cpu: dict[str, float]) -> str:
    return (f"{cpu['apiserver']:.2f}+{cpu['apiserver_waiting']:.2f} " +
            "/".join(f"{cpu[k]:.2f}" for k in ("relay", "postgres", "nats", "bench", "machine")))


def render(out: dict[str, Any]) -> str:
    m, cfg = out["machine"], out["config"]
    pg = m["postgres"]
    cr, raw = out["create"], out["raw"]
    lines = [
        "eventplane API benchmark (HTTPS, JSON; the API server and the relay are child processes)",
        f"machine   {m['nproc']} cores ({m['cpu']}), Python {m['python']}, loop: {m['loop']}",
        f"postgres  {pg['server_version']}  fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
        f"wal_sync_method={pg['wal_sync_method']} commit_delay={pg['commit_delay']} "
        f"shared_buffers={pg['shared_buffers']}",
        f"disk      {m['filesystem']} at {m['data_dir']}, 8 KiB write+fdatasync p50 {m['fdatasync_us_p50']:.0f} us",
        f"nats      nats-server {m['nats_server']}, JetStream file storage",
        f"payload   ConfigMap, {cfg['request_body_bytes']} B JSON request body; stored as {raw['payload_bytes']} B "
        f"msgpack (with the server's uid, timestamps, managedFields)",
        "",
        "   cpu = cores busy in the apiserver (+ cores its event loop spent runnable but waiting for a CPU), "
        "relay,",
        "   postgres, nats, this process (the clients) and the whole machine (anyone's processes); api ms/req = the",
        "   apiserver's CPU (busy, not waiting) per request, the figure least moved by other load on the machine",
        f"   {'scenario':<36} {'ok':>7} {'per s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'err':>4}  "
        f"{'cpu api+wait rly/pg/nats/bench/all':>35} {'api ms/req':>10}",
    ]

    def line(r: dict[str, Any], label: str | None = None, *, api: bool = True) -> str:
        per_request = r.get("api_cpu_ms_per_request", math.nan)
        cell = f"{per_request:>10.2f}" if api and not math.isnan(per_request) else f"{'-':>10}"
        return (f"   {label or r['scenario']:<36} {r['ok']:>7,} {r['per_s']:>7,.0f} {r['p50_ms']:>7.2f} "
                f"{r['p99_ms']:>7.2f} {r['max_ms']:>7.1f} {r['errors']:>4}  {cpu_cell(r['cpu_cores']):>35} {cell}")

    lines += [
        f"1. creates, {cfg['clients']} closed-loop clients, {cfg['seconds']:g} s (pool of {cfg['clients']} "
        "keep-alive connections)",
        line(cr, "POST configmap"),
        f"2. baseline: EventStore.append in this process, {cfg['clients']} writers, same objects, fresh db",
        line(raw, "raw EventStore.append", api=False),
        f"   API creates/s ÷ raw appends/s = {cr['raw_ratio']:.0%}",
        *(f"   group commit, {label}: {g['txns_per_s']:,.0f} txns/s, events/txn mean {g['mean']:.1f} "
          f"p50 {g['p50']} max {g['max']}" for label, g in (("API creates", cr["group_commit"]),
                                                            ("raw", raw["group_commit"]))),
        (f"   apiserver during the creates: {cr['cpu_cores']['apiserver']:.2f} CPU-s/s busy + "
         f"{cr['cpu_cores']['apiserver_waiting']:.2f} waiting for a core = "
         f"{cr['cpu_cores']['apiserver'] + cr['cpu_cores']['apiserver_waiting']:.2f} of the 1 core one event loop "
         f"can use; {cr['cpu_cores']['apiserver'] * 1e3 / cr['per_s']:.2f} ms CPU per create")
        if cr["per_s"] else "   -",
        f"3. single objects, {cfg['concurrency']} closed-loop clients, {cfg['short_seconds']:g} s each",
        line(out["get"], "GET configmap"),
        line(out["update"], "PUT configmap (with resourceVersion)"),
        f"4. mutations paced at {cfg['rate']:g}/s for {cfg['latency_seconds']:g} s, {cfg['paced_workers']} workers",
    ]
    for r in out["paced"]:
        lines.append(line(r, ("POST" if r["scenario"].startswith("create") else "PUT") + " configmap"))
        if r["behind_ms"] > 50:
            lines.append(f"     (fell behind its schedule by up to {r['behind_ms']:.0f} ms)")
    li = out["list"]
    lines += [
        f"5. list a namespace of {cfg['list_size']:,} ConfigMaps, JSON, 1 client, {cfg['short_seconds']:g} s "
        f"({li['response_bytes'] / 1e6:.2f} MB a response; filling it took {out['list_fill']['seconds']:.1f} s)",
        line(li, f"GET configmaps (list)"),
    ]
    if li["wrong_item_counts"]:
        lines.append(f"     WRONG item counts seen: {li['wrong_item_counts']}")
    w = out["watch"]
    lines += [
        f"6. watch delivery: creates paced at {cfg['watch_rate']:g}/s, {cfg['latency_seconds']:g} s; ms from the "
        "create's response to the watcher's event",
        line(w, "create response → watch event"),
        f"   (create ack p50/p99 {w['ack']['p50_ms']:.2f}/{w['ack']['p99_ms']:.2f} ms; lost {w['lost']}; "
        f"{w['before_ack']} events arrived before their create's response, counted as 0)",
    ]
    errors = {r["scenario"]: r["error_kinds"] for r in (cr, out["get"], out["update"], *out["paced"], li, w)
              if r["error_kinds"]}
    if errors:
        lines.append(f"   errors: {errors}")
    others = out["other_load_cores_max"]
    if others > OTHERS_WARN_CORES:
        lines += ["", f"   NOTE: processes outside this benchmark used up to {others:.2f} of {m['nproc']} cores during "
                      "a scenario; the figures above are pessimistic for this machine."]
    prof = cr.get("py_spy")
    if prof and prof.get("samples"):
        lines += ["", f"py-spy on the apiserver during the creates ({prof['samples']:,} samples at 100 Hz, "
                      f"{prof['file']}): share of its on-CPU samples",
                  "   own (leaf) frames:"]
        lines += [f"   {share:>6.1%}  {frame[:110]}" for frame, share in prof["self"]]
        lines += ["   including callees:"]
        lines += [f"   {share:>6.1%}  {frame[:110]}" for frame, share in prof["total"]]
        lines += ["   (samples of the server's main thread whenever it is not idle in a system call: time spent "
                  "waiting", "   for a core on a busy machine counts too, so read the shares, not the absolute "
                  "figures)"]
    lines += ["", "7. targets (a MISS never changes the exit status)"]
    for t in out["targets"]:
        lines.append(f"   {t['target']:<44} {t['goal']:>10} {t['shown']:>10}  {t['verdict']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = c.parser(__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds of the create and baseline runs")
    p.add_argument("--short-seconds", type=float, default=3.0, help="measured seconds of get, update and list")
    p.add_argument("--latency-seconds", type=float, default=5.0, help="measured seconds of each paced scenario")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each scenario")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients (and pooled connections) for creates")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients for get and update")
    p.add_argument("--rate", type=float, default=500.0, help="paced mutations per second")
    p.add_argument("--watch-rate", type=float, default=200.0, help="paced creates per second while watching")
    p.add_argument("--paced-workers", type=int, default=32, help="concurrent workers sharing a paced rate")
    p.add_argument("--list-size", type=int, default=1000, help="objects in the listed namespace")
    p.add_argument("--py-spy", metavar="FILE", default=None,
                   help="record the apiserver with py-spy (raw collapsed stacks to FILE) during the creates and "
                        "print its top frames; perturbs the create figures a little")
    c.add_common_args(p, server_log_level="info",
                      server_log_help="--log-level of the apiserver and relay (their logs go to files in the temp dir)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.py_spy:
        args.py_spy = str(Path(args.py_spy).resolve())
    return c.run_main(args, run_all, render)


if __name__ == "__main__":
    sys.exit(main())
