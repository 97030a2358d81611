"""bench/simnodes.py: what `eventplane simulate-nodes` costs, beside the same writes made straight
through the API in the same run.

Simulated nodes exist to load the control plane in the scheduler's and the controllers'
benchmarks, so they must never be what limits those figures. Everything runs as deployed, each
part a child process: the API server and the relay (as bench/api.py starts them) and
`eventplane simulate-nodes`; this process drives and watches.

1. Registration. Baseline: `--writers` (32) clients create `--nodes` (1,000) Nodes — the very
   manifests the simulator writes, under another prefix — straight through the API. Then the
   simulator starts: seconds from its first Node until all its Nodes exist and all their leases
   are in NATS KV (and from the start of its process, Python's imports included).
2. Idle. The simulator's CPU over `--idle-seconds` (15) with nothing to do but renew its leases
   every 10 s: cores busy for `--nodes` nodes.
3. Pods. `--pods` (3,000) unbound pods exist (schedulerName nobody). Baseline: `--writers`
   clients each bind a pod (pods/binding) and then write the status the simulator would
   (pods/status), pod after pod: pods/s the API sustains for those two writes. Then another
   `--pods` are bound the same way to simulated nodes, and the simulator writes the statuses:
   seconds until every one is Running and Ready (one pod watch), pods/s, the ratio to the
   baseline, and the simulator's CPU seconds per 1,000 pods.

    .venv/bin/python bench/simnodes.py [--nodes 1000] [--pods 3000] [--json] [--keep]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import _common as c
import api as apibench
import nats
from eventplane.auth.kubeconfig import write_kubeconfig
from eventplane.client import Client
from eventplane.client.nodeleases import NodeLeases
from nodeagent.simulated.podstatus import format_time, plan_pod
from nodeagent.simulated.shapes import SIMULATED_LABEL, SimulatorConfig, node_manifest

PERF = time.perf_counter
STEP_TIMEOUT = 600.0
NS = "bench-sim"
TARGET_REGISTER_1000_S = 15.0       # seconds to register 1,000 nodes and their leases
TARGET_RATIO = 0.8                  # simulated pods/s over the API's own rate for the same writes
TARGET_IDLE_CORES_PER_1000 = 0.05   # a 20th of a core to keep 1,000 nodes alive


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"app": "b"}},
            "spec": {"schedulerName": "nobody",
                     "containers": [{"name": "main", "image": "nginx:1.27",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def running_ready(p: dict[str, Any]) -> bool:
    status = p.get("status") or {}
    return status.get("phase") == "Running" and any(
        x.get("type") == "Ready" and x.get("status") == "True" for x in status.get("conditions") or [])


class Bench:
    def __init__(self, servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace) -> None:
        self.servers, self.children, self.args = servers, children, args
        self.api = apibench.ServerUnderTest(servers, children, args)
        self.kubeconfig = servers.data_dir / "kubeconfig"
        self.sim: c.ChildProcess | None = None

    def check(self) -> None:
        self.api.check()
        if self.sim is not None and not self.sim.running():
            raise RuntimeError(f"simulate-nodes exited with {self.sim.stop()}; its log ends:\n{self.sim.log_tail()}")

    async def start(self) -> Client:
        await self.api.start()
        write_kubeconfig(self.kubeconfig, server_url=self.api.url,
                         ca_pem=(self.api.data_dir / "pki" / "ca.crt").read_bytes(), user_name="admin",
                         token=self.api.token)
        client = Client.from_kubeconfig(str(self.kubeconfig), timeout=60)
        await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        return client

    async def _gather(self, n: int, op) -> float:
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                await op(i)
        t0 = PERF()
        await asyncio.gather(*(worker() for _ in range(self.args.writers)))
        return PERF() - t0

    async def register(self, client: Client) -> dict[str, Any]:
        n = self.args.nodes
        raw = SimulatorConfig(count=n, name_prefix="raw-")
        now = format_time(time.time())

        async def create(i: int) -> None:
            manifest = node_manifest(raw, i, now)
            manifest["metadata"]["labels"][SIMULATED_LABEL] = "false"   # not the simulator's to adopt
            await client.create(manifest)
        base_s = await self._gather(n, create)
        log(f"  baseline: {n} nodes created in {base_s:.2f} s")

        t0 = PERF()
        self.sim = c.ChildProcess("simulate-nodes", [
            sys.executable, "-m", "eventplane.cli.server", "--log-level", self.args.server_log_level,
            "simulate-nodes", "--count", str(n), "--nats-url", self.servers.nats_url,
            "--kubeconfig", str(self.kubeconfig)], self.servers.data_dir / "simulate-nodes.log")
        self.children.append(self.sim)
        self.sim.start()
        nc = await nats.connect(self.servers.nats_url)
        try:
            leases = await NodeLeases.open(nc)
            deadline, t_first = PERF() + STEP_TIMEOUT, None
            while True:
                self.check()
                nodes = (await client.list("nodes", label_selector=f"{SIMULATED_LABEL}=true"))["items"]
                if nodes and t_first is None:
                    t_first = PERF()
                if len(nodes) >= n and len(await leases.all()) >= n:
                    break
                if PERF() > deadline:
                    raise TimeoutError("the simulated nodes did not register")
                await asyncio.sleep(0.5)   # a list of 1,000 nodes is load on the API: not too often
        finally:
            await nc.close()
        t_all = PERF()
        sim_s, total_s = t_all - (t_first or t0), t_all - t0
        log(f"  simulator: {n} nodes and leases in {sim_s:.2f} s from its first node, {total_s:.2f} s from "
            "process start")
        return {"nodes": n, "baseline_s": base_s, "baseline_per_s": n / base_s, "simulator_s": sim_s,
                "simulator_total_s": total_s, "simulator_per_s": n / sim_s, "simulator_cpu_s": self.sim.cpu_seconds()}

    async def idle(self) -> dict[str, Any]:
        await asyncio.sleep(2.0)    # the registration's tail
        cpu0, t0 = self.sim.cpu_seconds(), PERF()
        await asyncio.sleep(self.args.idle_seconds)
        self.check()
        cores = (self.sim.cpu_seconds() - cpu0) / (PERF() - t0)
        log(f"  idle with {self.args.nodes} nodes: {cores:.3f} cores")
        return {"seconds": self.args.idle_seconds, "cores": cores}

    async def pods(self, client: Client) -> dict[str, Any]:
        n = self.args.pods
        for prefix in ("raw", "sim"):
            await self._gather(n, lambda i, p=prefix: client.create(pod(f"{p}-{i}")))
        log(f"  {2 * n} unbound pods created")
        nodes = self.args.nodes

        async def bind(name: str, node: str) -> None:
            await client.create_subresource("pods", name, "binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}, namespace=NS)

        async def raw(i: int) -> None:   # what a node does for a pod, without the simulator
            name, node = f"raw-{i}", f"raw-{i % nodes}"
            await bind(name, node)
            bound = await client.get("pods", name, namespace=NS)
            plan = plan_pod(bound, host_ip="172.16.0.1", pod_ip=f"10.0.{i // 250}.{i % 250 + 1}", now=time.time())
            await client.update({**bound, "status": plan.status}, subresource="status")
        base_s = await self._gather(n, raw)
        log(f"  baseline: bind + status of {n} pods in {base_s:.2f} s ({n / base_s:.0f}/s)")

        rv = (await client.list("pods", namespace=NS, limit=1))["metadata"]["resourceVersion"]
        done: set[str] = set()
        all_done = asyncio.Event()

        async def watch() -> None:
            async for _type, p in client.watch("pods", namespace=NS, resource_version=rv):
                name = p["metadata"]["name"]
                if name.startswith("sim-") and running_ready(p):
                    done.add(name)
                    if len(done) >= n:
                        all_done.set()
                        return
        watcher = asyncio.create_task(watch())
        cpu0, t0 = self.sim.cpu_seconds(), PERF()
        try:
            await self._gather(n, lambda i: bind(f"sim-{i}", f"sim-{i % nodes}"))
            t_bound = PERF()
            await asyncio.wait_for(all_done.wait(), STEP_TIMEOUT)
            t_ready = PERF()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        self.check()
        cpu = self.sim.cpu_seconds() - cpu0
        sim_s = t_ready - t0
        log(f"  simulator: {n} pods bound in {t_bound - t0:.2f} s, all Running and Ready after {sim_s:.2f} s")
        return {"pods": n, "baseline_s": base_s, "baseline_per_s": n / base_s, "bound_s": t_bound - t0,
                "simulator_s": sim_s, "simulator_per_s": n / sim_s, "ratio": (n / sim_s) / (n / base_s),
                "simulator_cpu_s_per_1000": cpu / n * 1000}


async def run_all(servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace,
                  loop_name: str) -> dict[str, Any]:
    facts = await c.machine_facts(servers, loop_name)
    bench = Bench(servers, children, args)
    log("starting the API server and relay…")
    client = await bench.start()
    try:
        log(f"registration of {args.nodes} nodes…")
        reg = await bench.register(client)
        log(f"idle for {args.idle_seconds:g} s…")
        idle = await bench.idle()
        log(f"{args.pods} pods…")
        pods = await bench.pods(client)
    finally:
        await client.close()
    return {"machine": facts, "config": {k: getattr(args, k) for k in ("nodes", "pods", "writers", "idle_seconds")},
            "registration": reg, "idle": idle, "pods": pods}


def render(out: dict[str, Any]) -> str:
    m, r, i, p, cfg = out["machine"], out["registration"], out["idle"], out["pods"], out["config"]
    n = cfg["nodes"]
    w = 58
    lines = [f"machine: {m.get('nproc')} cores, {m.get('cpu', '')}, Python {m.get('python', '')}, "
             f"{m.get('loop', '')}", "",
             f"{'measure':<{w}} {'value':>12}", f"{'-' * w} {'-' * 12}",
             f"{f'baseline: {n} Node creates straight through the API (s)':<{w}} {r['baseline_s']:>12.2f}",
             f"{f'simulator: {n} nodes + leases, from its first node (s)':<{w}} {r['simulator_s']:>12.2f}",
             f"{'  … from the start of its process (s)':<{w}} {r['simulator_total_s']:>12.2f}",
             f"{'  simulator CPU during registration (s)':<{w}} {r['simulator_cpu_s']:>12.2f}",
             f"{f'idle: simulator cores for {n} nodes (lease renewals)':<{w}} {i['cores']:>12.3f}",
             f"{'baseline: bind + status write, pods/s':<{w}} {p['baseline_per_s']:>12,.0f}",
             f"{'simulator: bind → Running and Ready, pods/s':<{w}} {p['simulator_per_s']:>12,.0f}",
             f"{'  simulator / baseline':<{w}} {p['ratio']:>11.0%}",
             f"{'  simulator CPU s per 1,000 pods':<{w}} {p['simulator_cpu_s_per_1000']:>12.2f}", ""]
    reg_target = TARGET_REGISTER_1000_S * n / 1000
    idle_target = TARGET_IDLE_CORES_PER_1000 * n / 1000
    for text, ok in (
            (f"target: {n} nodes registered in <= {reg_target:g} s: {r['simulator_s']:.2f} s",
             r["simulator_s"] <= reg_target),
            (f"target: idle <= {idle_target:.3f} cores: {i['cores']:.3f}", i["cores"] <= idle_target),
            (f"target: simulator >= {TARGET_RATIO:.0%} of the API's rate: {p['ratio']:.0%}",
             p["ratio"] >= TARGET_RATIO)):
        lines.append(f"{text}  {'PASS' if ok else 'MISS'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = c.parser(__doc__)
    p.add_argument("--nodes", type=int, default=1000, help="simulated nodes (and baseline nodes)")
    p.add_argument("--pods", type=int, default=3000, help="pods bound to simulated nodes (and baseline pods)")
    p.add_argument("--writers", type=int, default=32, help="concurrent clients binding and creating")
    p.add_argument("--idle-seconds", type=float, default=15.0, help="how long to measure the idle simulator")
    c.add_common_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return c.run_main(parse_args(argv), run_all, render)


if __name__ == "__main__":
    sys.exit(main())
