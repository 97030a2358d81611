"""The scheduler's benchmark: pending pods bound per second on 1,000 (and 5,000) registered nodes,
beside the API's own pod create rate measured in the same run.

The API server and the relay run as child processes, as in bench/api.py. Nodes
are registered directly through the API (Node objects with capacity and a zone
label; no agent: binding is the scheduler's last step). The scheduler runs in
this process (reconcilers.scheduler.Scheduler, the same object
`eventplane scheduler` runs, without leader election), so its own counters can
be read: pods decided per second inside the pipeline and each pod's time in
the active queue. Pods are created by a child process (aiohttp, `--clients`
keep-alive HTTPS connections; `--creators inline` creates them from this
process instead, sharing the scheduler's event loop), in bursts of one
workload at a time, as a Deployment's scale-up creates them.

Per node count:

1. Baseline: `--baseline-pods` pods created for a scheduler nobody runs: the
   API's create rate for these very pods, the ceiling of any end-to-end rate
   (a bound pod costs a create, a binding and an Event).
2. All optimizations on: `--pods` pods (a mix: 85% identical Deployment pods
   of ten Deployments, 10% with required and preferred zone affinity, 5% with
   a DoNotSchedule zone spread constraint) created while the scheduler runs.
   Printed: end to end (first create sent → last binding acknowledged) pods/s,
   inside the scheduler (pods decided ÷ seconds spent deciding), create →
   bound latency p50/p99, time in the active queue p50/p99, and that every pod
   was found bound by a list afterwards.
3. Each Borg optimization switched off in turn (equivalence classes, score
   cache, relaxed randomization), with `--off-pods` pods each, beside a control
   run with everything on and the same pod count; printed as ratios to it.

Starts its own embedded PostgreSQL and NATS in a temp dir and stops every
process it started (by PID) on any exit. Run:
`.venv/bin/python bench/scheduler.py [--nodes 1000,5000] [--pods 10000] [--json]`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import nats

import _common as c
from api import Client as HttpClient
from api import ServerUnderTest
from eventplane.auth.kubeconfig import write_kubeconfig
from eventplane.client import Client
from reconcilers.scheduler import Options
from reconcilers.scheduler.scheduler import Scheduler

TARGETS = {1000: 500.0, 5000: 300.0}   # pods/s end to end on 2 cores (the targets)
PERF = time.perf_counter
ZONE = "topology.kubernetes.io/zone"
CHUNK = 100   # pods of one workload created back to back (fewer in small runs, so the mix holds)


class GcClock:
    """Time this process spends in garbage collection (every generation), while started."""

    def __init__(self) -> None:
        self.seconds, self.full, self._t0 = 0.0, 0, 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = PERF()
        else:
            self.seconds += PERF() - self._t0
            self.full += info.get("generation") == 2

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def node_body(name: str, zone: str, args: argparse.Namespace) -> bytes:
    resources = {"cpu": args.cpu, "memory": args.memory, "pods": str(args.pods_per_node)}
    return json.dumps({"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, ZONE: zone}},
                       "status": {"capacity": resources, "allocatable": resources,
                                  "conditions": [{"type": "Ready", "status": "True"}]}}).encode()


def chunk_for(pods: int) -> int:
    return max(1, min(CHUNK, pods // 100))


def workload(chunk: int) -> tuple[str, dict[str, Any]]:
    """The workload of the chunk-th burst of pods: its name and the spec fields that make it what it is."""
    kind = chunk % 20
    if kind == 0:
        name = f"spread-{chunk % 3}"
        return name, {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
                                                      "whenUnsatisfiable": "DoNotSchedule",
                                                      "labelSelector": {"matchLabels": {"app": name}}}]}
    if kind in (1, 2):
        name = f"affine-{chunk % 5}"
        term = {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["zone-0", "zone-1"]}]}
        return name, {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [
                    {"key": ZONE, "operator": "In", "values": ["zone-0"]}]}}]}}}
    return f"deploy-{chunk % 10}", {}


OWNER_UIDS: dict[str, str] = {}


def pod_body(namespace: str, index: int, scheduler: str, chunk: int = CHUNK) -> bytes:
    app, extra = workload(index // chunk)
    uid = OWNER_UIDS.setdefault(app, str(uuid.uuid4()))
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{app}-{index}", "namespace": namespace, "labels": {"app": app},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app, "uid": uid,
                                          "controller": True}]},
        "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "app", "image": f"registry.example/{app}:1",
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}], **extra},
    }).encode()


async def create_all(http: HttpClient, path: str, bodies: list[tuple[str, bytes]], clients: int,
                     created_at: dict[str, float] | None = None) -> dict[str, Any]:
    """POST every body with `clients` workers taking them in order; returns the rate and failures."""
    it = iter(bodies)
    failed = [0]

    async def worker() -> None:
        for key, body in it:
            _, raw = await http.call("POST", path, body)
            if raw is None:
                failed[0] += 1
            elif created_at is not None:
                created_at[key] = time.monotonic()

    t0 = PERF()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = PERF() - t0
    return {"count": len(bodies) - failed[0], "failed": failed[0], "seconds": elapsed,
            "per_s": (len(bodies) - failed[0]) / elapsed}


async def create_in_child(server: ServerUnderTest, namespace: str, pods: int, chunk: int, clients: int,
                          created_at: dict[str, float]) -> dict[str, Any]:
    """The pods created by a process of their own, as a controller in its own process creates them, so the
    scheduler here does not share its event loop and core with the creators. Creation times are
    CLOCK_MONOTONIC, the same clock in every process."""
    job = {"url": server.url, "token": server.token, "ca": str(server.data_dir / "pki" / "ca.crt"),
           "namespace": namespace, "pods": pods, "chunk": chunk, "clients": clients}
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--create-pods", json.dumps(job),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the pod creator exited with {proc.returncode}")
    done = json.loads(out)
    created_at.update(done["created_at"])
    return done["created"]


async def _creator(job: dict[str, Any]) -> None:
    import ssl

    http = HttpClient(job["url"], job["token"], ssl.create_default_context(cafile=job["ca"]), job["clients"])
    try:
        ns, chunk = job["namespace"], job["chunk"]
        bodies = [(f"{ns}/{workload(i // chunk)[0]}-{i}", pod_body(ns, i, "default-scheduler", chunk))
                  for i in range(job["pods"])]
        created_at: dict[str, float] = {}
        created = await create_all(http, f"/api/v1/namespaces/{ns}/pods", bodies, job["clients"], created_at)
    finally:
        await http.close()
    print(json.dumps({"created": created, "created_at": created_at}))


async def create_namespace(http: HttpClient, name: str) -> None:
    await http.call("POST", "/api/v1/namespaces",
                    json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).encode())


async def scheduling_run(server: ServerUnderTest, kubeconfig: Path, http: HttpClient, namespace: str, pods: int,
                         options: Options, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """Start a scheduler, create `pods` pending pods, wait for every binding; what it took."""
    await create_namespace(http, namespace)
    nats_url = args.nats_url if args.via == "nats" else None  # the scheduler's requests: bindings and Events
    async with Client.from_kubeconfig(str(kubeconfig), user_agent="bench-scheduler", nats_url=nats_url) as client:
        sched = Scheduler(client, identity=f"bench-{label}", options=options, keep_stats=True,
                          events=not args.no_events)
        task = asyncio.create_task(sched.run())
        try:
            await sched.informers.wait_synced(300)
            chunk = chunk_for(pods)
            bodies = [(f"{namespace}/{workload(i // chunk)[0]}-{i}",
                       pod_body(namespace, i, "default-scheduler", chunk)) for i in range(pods)]
            created_at: dict[str, float] = {}
            cpu = server.meter()
            cpu.start()
            gc_clock = GcClock()
            gc_clock.start()
            t0 = time.monotonic()
            if args.creators == "process":
                created = await create_in_child(server, namespace, pods, chunk, args.clients, created_at)
            else:
                created = await create_all(http, f"/api/v1/namespaces/{namespace}/pods", bodies, args.clients,
                                           created_at)
            deadline = PERF() + args.timeout
            while sched.stats.bound < created["count"] and PERF() < deadline:
                server.check()
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
            t_end = max(sched.stats.bound_at.values(), default=time.monotonic())
            cores = cpu.stop()
            gc_clock.stop()
            stats = sched.stats
            if not args.no_events:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sched.flush_events(), 60)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        listed = await client.list("pods", namespace=namespace, field_selector="spec.nodeName!=")
    bound = stats.bound
    latencies = sorted(stats.bound_at[k] - created_at[k] for k in stats.bound_at if k in created_at)
    waits = sorted(stats.queue_waits)
    e2e_seconds = t_end - t0
    out = {
        "label": label, "pods": pods, "created": created, "bound": bound, "bound_by_list": len(listed["items"]),
        "unbound": created["count"] - bound, "decided": stats.decided, "failed_attempts": stats.failed,
        "e2e_seconds": e2e_seconds, "e2e_per_s": bound / e2e_seconds if e2e_seconds > 0 else float("nan"),
        "decide_seconds": stats.decide_seconds,
        "inside_per_s": stats.decided / stats.decide_seconds if stats.decide_seconds else float("nan"),
        "inside_per_cpu_s": stats.decided / stats.decide_cpu_seconds if stats.decide_cpu_seconds else float("nan"),
        "create_to_bound_ms": c.summarize_ms(latencies), "queue_ms": c.summarize_ms(waits),
        "filter_runs": sched.memo.filter_runs, "filter_hits": sched.memo.filter_hits,
        "score_runs": sched.memo.score_runs, "score_hits": sched.memo.score_hits, "cpu_cores": cores,
        "gc_seconds": gc_clock.seconds, "gc_full": gc_clock.full,
    }
    log(f"  {label}: {bound}/{created['count']} bound, {out['e2e_per_s']:.0f} pods/s end to end, "
        f"{out['inside_per_s']:.0f} pods/s inside the scheduler")
    return out


def harness(nodes: int, pods: int, options: Options, per_pass: int, args: argparse.Namespace) -> dict[str, Any]:
    """The scheduler's own work without the API (Nomad's harness): the loop's cache and class states, fed
    the same nodes and pod mix, `per_pass` pods per pass, each placed pod assumed as the loop does."""
    from reconcilers.scheduler.batch import ClassStates, place
    from reconcilers.scheduler.cache import NodeCache
    from reconcilers.scheduler.pipeline import Cache

    cache = NodeCache()
    for i in range(nodes):
        cache.add_node(json.loads(node_body(f"node-{i:05d}", f"zone-{i % args.zones}", args)))
    chunk = chunk_for(pods)
    bodies = [json.loads(pod_body("bench", i, "default-scheduler", chunk)) for i in range(pods)]
    for b in bodies:
        b["spec"]["priority"] = 0
    states, memo, start = ClassStates(cache), Cache(), 0
    _ = cache.snapshot   # the one rebuild after registering, as after an informer sync
    t0, cpu0 = PERF(), time.process_time()
    bound = 0
    for k in range(0, pods, per_pass):
        placed, _, start = place(bodies[k:k + per_pass], cache.snapshot, options=options, start=start, cache=memo,
                                 states=states if options.equivalence_classes else None)
        for pl in placed:
            if pl.node is not None:
                cache.assume(pl.pod, pl.node, pl.requests)
                bound += 1
    elapsed, cpu = PERF() - t0, time.process_time() - cpu0
    # Per CPU-second as well: on a shared machine the wall clock counts the time spent waiting for a core.
    return {"nodes": nodes, "pods": pods, "per_pass": per_pass, "bound": bound, "seconds": elapsed,
            "per_s": pods / elapsed, "cpu_seconds": cpu, "per_cpu_s": pods / cpu if cpu else float("nan"),
            "reused": states.reused, "rebuilt": states.rebuilt}


def harness_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = {"all on": Options(), "control": Options(),
            "equivalence classes off": Options(equivalence_classes=False),
            "score cache off": Options(score_cache=False),
            "relaxed randomization off": Options(relaxed_randomization=False)}
    out = []
    for n in args.nodes:
        for per_pass in (128, 4):
            for label, options in runs.items():
                pods = args.harness_pods if label == "all on" else max(args.harness_pods // 10, 100)
                r = harness(n, pods, options, per_pass, args)
                r["label"] = label
                out.append(r)
                log(f"  harness {n} nodes, {per_pass}/pass, {label}: {r['per_s']:.0f} pods/s, "
                    f"{r['per_cpu_s']:.0f} per CPU-second ({pods} pods)")
    return out


async def one_cluster(servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace,
                      nodes: int) -> dict[str, Any]:
    server = ServerUnderTest(servers, children, argparse.Namespace(server_log_level=args.server_log_level))
    args.nats_url = servers.nats_url
    await server.start()
    kubeconfig = servers.data_dir / f"kubeconfig-{nodes}"
    write_kubeconfig(kubeconfig, server_url=server.url, ca_pem=(server.data_dir / "pki" / "ca.crt").read_bytes(),
                     user_name="eventplane-admin", token=server.token)
    http = server.client(args.clients)
    out: dict[str, Any] = {"nodes": nodes}
    try:
        log(f"{nodes} nodes: registering")
        bodies = [(f"n{i}", node_body(f"node-{i:05d}", f"zone-{i % args.zones}", args)) for i in range(nodes)]
        out["register"] = await create_all(http, "/api/v1/nodes", bodies, args.clients)
        log(f"  registered in {out['register']['seconds']:.1f} s")
        await create_namespace(http, "bench-baseline")
        base = [(str(i), pod_body("bench-baseline", i, "nobody")) for i in range(args.baseline_pods)]
        out["baseline"] = await create_all(http, "/api/v1/namespaces/bench-baseline/pods", base, args.clients)
        log(f"  baseline: {out['baseline']['per_s']:.0f} pod creates/s")
        out["main"] = await scheduling_run(server, kubeconfig, http, "bench-main", args.pods, Options(), args,
                                           "all on")
        if not args.skip_off:
            runs = {"control": Options(),
                    "equivalence classes off": Options(equivalence_classes=False),
                    "score cache off": Options(score_cache=False),
                    "relaxed randomization off": Options(relaxed_randomization=False)}
            out["off"] = {}
            for i, (label, options) in enumerate(runs.items()):
                out["off"][label] = await scheduling_run(server, kubeconfig, http, f"bench-off-{i}",
                                                         args.off_pods, options, args, label)
    finally:
        await http.close()
        for child in (server.relay, server.apiserver):
            if child is not None:
                child.stop()
        nc = await nats.connect(servers.nats_url)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(server.bus.stream)   # the next cluster starts a fresh log
        await nc.close()
    return out


async def run_all(servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace,
                  loop_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": await c.machine_facts(servers, loop_name), "args": vars(args), "clusters": [],
                           "via": args.via}
    if args.harness_pods:
        out["harness"] = harness_runs(args)
    if args.harness_only:
        out["targets"] = []
        return out
    for n in args.nodes:
        out["clusters"].append(await one_cluster(servers, children, args, n))
    out["targets"] = [{"target": f"end to end at {cl['nodes']:,} nodes", "goal": TARGETS.get(cl["nodes"]),
                       "value": cl["main"]["e2e_per_s"],
                       "verdict": ("PASS" if cl["main"]["e2e_per_s"] >= TARGETS[cl["nodes"]] else "MISS")
                       if cl["nodes"] in TARGETS else "n/a"} for cl in out["clusters"]]
    return out


def _ms(d: dict[str, float], key: str) -> str:
    v = d.get(key)
    return "-" if v is None or v != v else f"{v:,.0f}"


def render(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [f"bench/scheduler.py on {m.get('nproc')} cores ({m.get('cpu')}), {m.get('loop')}, "
             f"python {m.get('python')}; the scheduler's requests over {out.get('via', 'rest').upper()}, "
             f"pods created by {'a child process' if out['args'].get('creators') == 'process' else 'this process'}",
             ""]
    for cl in out["clusters"]:
        main, base = cl["main"], cl["baseline"]
        lines += [f"== {cl['nodes']:,} nodes (registered at {cl['register']['per_s']:,.0f}/s) ==",
                  f"baseline: API pod creates, {base['count']:,} pods, {args_clients(out)} clients: "
                  f"{base['per_s']:,.0f} creates/s",
                  f"all on: {main['pods']:,} pods created while scheduling ({main['created']['per_s']:,.0f} creates/s)",
                  f"   end to end (first create → last bound):  {main['e2e_per_s']:>8,.0f} pods/s   "
                  f"({main['e2e_per_s'] / base['per_s']:.2f} × the create baseline)",
                  f"   inside the scheduler (decided/s):        {main['inside_per_s']:>8,.0f} pods/s   "
                  f"({main['decided']:,} decisions in {main['decide_seconds']:.1f} s; "
                  f"{main.get('inside_per_cpu_s', float('nan')):,.0f} per CPU-second)",
                  f"   create → bound latency p50/p99:          {_ms(main['create_to_bound_ms'], 'p50_ms')} / "
                  f"{_ms(main['create_to_bound_ms'], 'p99_ms')} ms",
                  f"   time in the active queue p50/p99:        {_ms(main['queue_ms'], 'p50_ms')} / "
                  f"{_ms(main['queue_ms'], 'p99_ms')} ms",
                  f"   bound: {main['bound']:,} (a list finds {main['bound_by_list']:,}), unbound {main['unbound']}, "
                  f"failed attempts {main['failed_attempts']}",
                  f"   memo: filters {main['filter_runs']:,} run / {main['filter_hits']:,} hits, "
                  f"scores {main['score_runs']:,} run / {main['score_hits']:,} hits",
                  f"   garbage collection in the bench process: {main.get('gc_seconds', 0):.1f} s "
                  f"({main.get('gc_full', 0)} full collections)",
                  f"   cpu cores: " + ", ".join(f"{k} {v:.2f}" for k, v in main["cpu_cores"].items()
                                                if isinstance(v, float))]
        if cl.get("off"):
            ctrl = cl["off"]["control"]
            lines.append(f"Borg's optimizations, {ctrl['pods']:,} pods each "
                         f"(ratios to the control run with all on):")
            lines.append(f"   {'run':<28}{'e2e pods/s':>12}{'ratio':>8}{'inside pods/s':>15}{'ratio':>8}")
            for label, r in cl["off"].items():
                lines.append(f"   {label:<28}{r['e2e_per_s']:>12,.0f}{r['e2e_per_s'] / ctrl['e2e_per_s']:>8.2f}"
                             f"{r['inside_per_s']:>15,.0f}{r['inside_per_s'] / ctrl['inside_per_s']:>8.2f}")
        lines.append("")
    if out.get("harness"):
        lines.append("The scheduler alone (no API: its cache, class states and pipeline fed the same mix, "
                     "each placed pod assumed):")
        lines.append(f"   {'nodes':>6} {'pods/pass':>9}  {'run':<28}{'pods':>7}{'pods/s':>10}{'per CPU-s':>11}"
                     f"{'ratio':>8}")
        base = {(r["nodes"], r["per_pass"]): r["per_cpu_s"] for r in out["harness"] if r["label"] == "control"}
        for r in out["harness"]:
            ratio = "" if r["label"] == "all on" else f"{r['per_cpu_s'] / base[(r['nodes'], r['per_pass'])]:>8.2f}"
            lines.append(f"   {r['nodes']:>6} {r['per_pass']:>9}  {r['label']:<28}{r['pods']:>7}{r['per_s']:>10,.0f}"
                         f"{r['per_cpu_s']:>11,.0f}{ratio}")
        lines.append("   (ratio: per CPU-second, to the control run: all on, as many pods as each off run)")
        lines.append("")
    lines.append("targets (a MISS never changes the exit status)")
    for t in out["targets"]:
        goal = f"≥ {t['goal']:,.0f} pods/s" if t["goal"] else "-"
        lines.append(f"   {t['target']:<32} {goal:>16} {t['value']:>10,.0f}  {t['verdict']}")
    return "\n".join(lines)


def args_clients(out: dict[str, Any]) -> int:
    return out["args"]["clients"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = c.parser(__doc__)
    p.add_argument("--nodes", default="1000", help="node counts, comma-separated (e.g. 1000,5000)")
    p.add_argument("--pods", type=int, default=10_000, help="pending pods in the main run")
    p.add_argument("--off-pods", type=int, default=1_000, help="pods in each optimization-off run and its control")
    p.add_argument("--baseline-pods", type=int, default=2_000, help="pods created for the create-rate baseline")
    p.add_argument("--skip-off", action="store_true", help="skip the optimization-off runs")
    p.add_argument("--harness-pods", type=int, default=5_000,
                   help="pods for the scheduler-alone runs (0: skip them; optimization-off runs use a tenth)")
    p.add_argument("--harness-only", action="store_true", help="only the scheduler-alone runs (no API)")
    p.add_argument("--clients", type=int, default=64, help="concurrent creates")
    p.add_argument("--zones", type=int, default=3)
    p.add_argument("--cpu", default="32")
    p.add_argument("--memory", default="128Gi")
    p.add_argument("--pods-per-node", type=int, default=110)
    p.add_argument("--no-events", action="store_true", help="the scheduler posts no Events (half the writes)")
    p.add_argument("--via", choices=("rest", "nats"), default="nats",
                   help="how the scheduler sends its bindings and Events (`eventplane up` uses nats); the pods are "
                        "created over HTTPS either way")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the bindings of one run")
    p.add_argument("--creators", choices=("process", "inline"), default="process",
                   help="create the pending pods from a child process (as a controller in its own process "
                        "would) or from this one, sharing the scheduler's event loop")
    p.add_argument("--create-pods", metavar="JOB", help=argparse.SUPPRESS)  # the child's mode
    p.add_argument("--profile", metavar="N", type=int, default=0,
                   help="run this process under cProfile and print its N most expensive functions to stderr")
    c.add_common_args(p)
    args = p.parse_args(argv)
    args.nodes = [int(n) for n in str(args.nodes).split(",") if n]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.create_pods:
        asyncio.run(_creator(json.loads(args.create_pods)))
        return 0
    return c.run_main(args, run_all, render, profile=args.profile)


if __name__ == "__main__":
    sys.exit(main())
