"""bench/podstart.py: pod startup latency through the node agent, beside a bare `docker run` of
the same image measured in the same run.

Everything runs as deployed, each part a child process of this benchmark: the API server and the
relay (as bench/api.py starts them) and `eventplane nodeagent --runtime docker` for one node. The
benchmark creates pods bound to that node (spec.nodeName set, as a scheduler's binding leaves
them) and watches them; with `--scheduler`, `eventplane scheduler` runs too and the pods are
created unbound (a nodeSelector on the node's hostname label), so that create → Running includes
the scheduling and the binding (a step of its own in the table below).

1. Baseline: `--pods` (50) `docker run -d` of the test image (busybox httpd), `--rate` (1) per
   second: from running the command to its return (the container started).
2. The same number of pods, one container each (the same image and command, with a tcpSocket
   readiness probe on its port, periodSeconds 1), created at the same rate: from the create
   request to the watch seeing the pod Running, and Ready. A pod is two containers (the infra
   container holding the network namespace, and the app), so the agent starts twice as many.
   The two are interleaved (a docker run every 1/rate seconds, a pod create half a period after
   each), so that both meet the same machine: on a machine shared with other work the load
   changes within minutes, and a baseline measured before the pods compares two different
   machines. `--sequential`: the baseline first, then the pods (the benchmark's first form).
3. Targets: Ready p99 <= 1.5 s (Kubernetes' SLO is 5 s) and Running p99 <= 2x the docker run p99.
4. Where the time goes, per pod (p50/p99 of each step): create request → the watch shows the pod
   (the API's write and fan-out), → the engine's `create` event of the infra container (the agent's
   watch delivery and its sync up to the create), → the app container's `create`, → the infra
   container's `start` (the agent creates the app while the engine starts the infra: a negative step
   here means the start overlapped the create), → the app's `start`, → the watch shows Running,
   → Ready. The engine's events carry its own clock (nanoseconds, this machine's wall clock), so the
   steps are measured on time.time() throughout.

The test image is built locally (`docker import` of a busybox-static root filesystem); no registry
is needed. Every container the benchmark made is removed at the end (by its labels).

    .venv/bin/python bench/podstart.py [--pods 50] [--rate 1] [--scheduler] [--sequential] [--json] [--keep]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

import _common as c
import api as apibench
from eventplane.auth.kubeconfig import write_kubeconfig
from eventplane.client import Client
from nodeagent.runtime import APP, INFRA, NODE, POD_NAME, ROLE
from nodeagent.runtime.docker import busybox_rootfs
from nodeagent.runtime.dockerapi import DockerApi

PERF = time.perf_counter
IMAGE = "eventplane-bench/busybox:1"
NS = "bench-podstart"
TARGET_READY_P99_S = 1.5
TARGET_RATIO = 2.0
STEP_TIMEOUT = 300.0
BARE_LABEL = "io.eventplane.bench"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pod(name: str, node: str, *, bound: bool = True) -> dict[str, Any]:
    where = {"nodeName": node} if bound else {"nodeSelector": {"kubernetes.io/hostname": node}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {**where, "terminationGracePeriodSeconds": 0, "containers": [{
                "name": "web", "image": IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/"],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}


def condition(p: dict[str, Any], type_: str) -> bool:
    return any(x.get("type") == type_ and x.get("status") == "True"
               for x in (p.get("status") or {}).get("conditions") or [])


class Bench:
    def __init__(self, servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace) -> None:
        self.servers, self.children, self.args = servers, children, args
        self.api = apibench.ServerUnderTest(servers, children, args)
        self.kubeconfig = servers.data_dir / "kubeconfig"
        self.node = f"bench-{uuid.uuid4().hex[:6]}"
        self.run_id = uuid.uuid4().hex[:8]
        self.docker = DockerApi()
        self.agent: c.ChildProcess | None = None
        self.scheduler: c.ChildProcess | None = None
        self.steps: dict[str, dict[str, float]] = {}
        self.alongside: Any = None

    async def start(self) -> Client:
        if not await self.docker.ping():
            raise RuntimeError(f"no Docker engine answers at {self.docker.socket}")
        if await self.docker.image(IMAGE) is None:
            busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)
            if busybox is None:
                raise RuntimeError("busybox-static is needed to build the test image")
            repo, tag = IMAGE.rsplit(":", 1)
            await self.docker.import_image(busybox_rootfs(busybox), repo, tag)
        await self.api.start()
        write_kubeconfig(self.kubeconfig, server_url=self.api.url,
                         ca_pem=(self.api.data_dir / "pki" / "ca.crt").read_bytes(), user_name="admin",
                         token=self.api.token)
        client = Client.from_kubeconfig(str(self.kubeconfig), timeout=60)
        await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        self.agent = c.ChildProcess("nodeagent", [
            sys.executable, "-m", "eventplane.cli.server", "--log-level", self.args.server_log_level, "nodeagent",
            "--node-name", self.node, "--kubeconfig", str(self.kubeconfig), "--nats-url", self.servers.nats_url,
            "--runtime", "docker", "--state-dir", str(self.servers.data_dir / "nodeagent")],
            self.servers.data_dir / "nodeagent.log")
        self.children.append(self.agent)
        self.agent.start()
        if self.args.scheduler:
            self.scheduler = c.ChildProcess("scheduler", [
                sys.executable, "-m", "eventplane.cli.server", "--log-level", self.args.server_log_level, "scheduler",
                "--kubeconfig", str(self.kubeconfig), "--nats-url", self.servers.nats_url, "--no-leader-elect"],
                self.servers.data_dir / "scheduler.log")
            self.children.append(self.scheduler)
            self.scheduler.start()
        return client

    def check(self) -> None:
        self.api.check()
        if self.agent is not None and not self.agent.running():
            raise RuntimeError(f"the node agent exited with {self.agent.stop()}; its log ends:\n{self.agent.log_tail()}")
        if self.scheduler is not None and not self.scheduler.running():
            raise RuntimeError(f"the scheduler exited with {self.scheduler.stop()}; its log ends:\n"
                               f"{self.scheduler.log_tail()}")

    async def cleanup(self) -> None:
        for labels in ({NODE: self.node}, {BARE_LABEL: self.run_id}):
            for cont in await self.docker.containers(labels):
                await self.docker.remove(cont["Id"])
        await self.docker.close()

    async def paced(self, n: int, op, offset: float = 0.0) -> None:
        """op(i) started every 1/rate seconds (the first after `offset` seconds), all awaited."""
        tasks, t0 = [], PERF() + offset
        for i in range(n):
            delay = t0 + i / self.args.rate - PERF()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(op(i)))
        await asyncio.gather(*tasks)

    async def bare(self, n: int, prefix: str) -> list[float]:
        latencies: list[float] = []

        async def run(i: int) -> None:
            t = PERF()
            proc = await asyncio.create_subprocess_exec(
                "docker", "run", "-d", "--label", f"{BARE_LABEL}={self.run_id}", "--name",
                f"{prefix}-{self.run_id}-{i}", IMAGE, "httpd", "-f", "-p", "8080", "-h", "/",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"docker run failed: {err.decode()}")
            latencies.append(PERF() - t)
        await self.paced(n, run)
        return latencies

    async def pods(self, client: Client, n: int, prefix: str, alongside=None) -> tuple[list[float], list[float]]:
        """Create n pods at the rate; (create → Running, create → Ready) of each. `alongside`: a
        coroutine started with the first create (the interleaved baseline), its creates then half a
        period later; it is awaited too."""
        created: dict[str, float] = {}
        seen: dict[str, float] = {}
        bound: dict[str, float] = {}
        running: dict[str, float] = {}
        ready: dict[str, float] = {}
        done = asyncio.Event()
        rv = (await client.list("pods", namespace=NS, limit=1))["metadata"]["resourceVersion"]
        engine: dict[tuple[str, str, str], float] = {}    # (pod, role, create|start) → when (time.time())
        events_open = asyncio.Event()

        async def watch() -> None:
            async with client.watch("pods", namespace=NS, resource_version=rv) as w:
                async for _type, p in w:
                    name, now = p["metadata"]["name"], time.time()
                    if not name.startswith(prefix + "-"):
                        continue
                    seen.setdefault(name, now)
                    if (p.get("spec") or {}).get("nodeName"):
                        bound.setdefault(name, now)
                    if (p.get("status") or {}).get("phase") == "Running":
                        running.setdefault(name, now)
                    if condition(p, "Ready"):
                        ready.setdefault(name, now)
                    if len(ready) >= n:
                        done.set()
                        return

        async def engine_events() -> None:
            api = DockerApi()
            try:
                stream = api.events({"type": ["container"], "event": ["create", "start"],
                                     "label": [f"{NODE}={self.node}"]})
                opener = asyncio.ensure_future(stream.__anext__())
                await asyncio.sleep(0.2)     # the engine has the request by now
                events_open.set()
                event = await opener
                while True:
                    attrs = (event.get("Actor") or {}).get("Attributes") or {}
                    name = attrs.get(POD_NAME, "")
                    if name.startswith(prefix + "-"):
                        engine.setdefault((name, attrs.get(ROLE, ""), event.get("Action", event.get("status", ""))),
                                          int(event.get("timeNano") or 0) / 1e9 or time.time())
                    event = await stream.__anext__()
            finally:
                events_open.set()
                await api.close()

        watcher = asyncio.create_task(watch())
        listener = asyncio.create_task(engine_events())
        await events_open.wait()
        side = asyncio.create_task(alongside) if alongside is not None else None

        async def create(i: int) -> None:
            name = f"{prefix}-{i}"
            created[name] = time.time()
            await client.create(pod(name, self.node, bound=not self.args.scheduler), namespace=NS)

        try:
            await self.paced(n, create, 0.5 / self.args.rate if side is not None else 0.0)
            if side is not None:
                self.alongside = await side
            deadline = PERF() + STEP_TIMEOUT
            while not done.is_set():
                self.check()
                if PERF() > deadline:
                    raise TimeoutError(f"only {len(ready)} of {n} pods became Ready")
                try:
                    await asyncio.wait_for(done.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            watcher.cancel()
            listener.cancel()
            await asyncio.gather(watcher, listener, return_exceptions=True)
        marks = {"created": created, "seen": seen, **({"bound": bound} if self.args.scheduler else {}),
                 **{f"{role} {action}": {k[0]: t for k, t in engine.items() if k[1:] == (role, action)}
                    for role, action in ((INFRA, "create"), (APP, "create"), (INFRA, "start"), (APP, "start"))},
                 "Running": running, "Ready": ready}
        order = list(marks)
        self.steps = {f"{a} → {b}": c.summarize_ms([marks[b][k] - marks[a][k] for k in created
                                                    if k in marks[a] and k in marks[b]])
                      for a, b in zip(order, order[1:])}
        return ([running[k] - created[k] for k in created if k in running],
                [ready[k] - created[k] for k in created if k in ready])


async def run_all(servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace,
                  loop_name: str) -> dict[str, Any]:
    facts = await c.machine_facts(servers, loop_name)
    bench = Bench(servers, children, args)
    log("starting the API server, the relay and the node agent…")
    client = await bench.start()
    try:
        log("warming up (the infra image, one pod, one docker run)…")
        await bench.pods(client, 1, "warm")
        await bench.bare(1, "warm")
        docker_version = (await bench.docker.version()).get("Version", "")
        if args.sequential:
            log(f"baseline: {args.pods} × docker run -d at {args.rate:g}/s…")
            bare = await bench.bare(args.pods, "bare")
            log(f"{args.pods} pods at {args.rate:g}/s…")
            cpu0 = bench.agent.cpu_seconds()
            running, ready = await bench.pods(client, args.pods, "pod")
        else:
            log(f"{args.pods} × docker run -d and {args.pods} pods, interleaved, each at {args.rate:g}/s…")
            cpu0 = bench.agent.cpu_seconds()
            running, ready = await bench.pods(client, args.pods, "pod", alongside=bench.bare(args.pods, "bare"))
            bare = bench.alongside
        agent_cpu = bench.agent.cpu_seconds() - cpu0
    finally:
        await client.close()
        if bench.agent is not None:
            bench.agent.stop()      # before the cleanup, or it would start what the cleanup removes
        await bench.cleanup()
    out = {"machine": {**facts, "docker": docker_version},
           "config": {"pods": args.pods, "rate": args.rate, "interleaved": not args.sequential,
                      "scheduler": args.scheduler},
           "docker_run": c.summarize_ms(bare), "running": c.summarize_ms(running), "ready": c.summarize_ms(ready),
           "agent_cpu_s_per_pod": agent_cpu / max(1, args.pods), "steps": bench.steps}
    out["ratio_running_p99"] = out["running"]["p99_ms"] / out["docker_run"]["p99_ms"]
    out["ratio_ready_p99"] = out["ready"]["p99_ms"] / out["docker_run"]["p99_ms"]
    return out


def render(out: dict[str, Any]) -> str:
    m, b, r, y = out["machine"], out["docker_run"], out["running"], out["ready"]
    n, rate = out["config"]["pods"], out["config"]["rate"]
    w = 52
    lines = [f"machine: {m.get('nproc')} cores, {m.get('cpu', '')}, Python {m.get('python', '')}, "
             f"{m.get('loop', '')}, Docker {m.get('docker', '')}", "",
             f"{n} starts at {rate:g}/s" + (", baseline and pods interleaved" if out["config"].get("interleaved")
                                            else ", baseline first, then the pods")
             + (", pods scheduled by eventplane scheduler" if out["config"].get("scheduler") else ", pods created bound"),
             f"{'measure':<{w}} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}",
             f"{'-' * w} {'-' * 9} {'-' * 9} {'-' * 9}"]
    for label, s in ((f"baseline: docker run -d (1 container)", b), ("pod create → Running (2 containers)", r),
                     ("pod create → Ready (tcpSocket probe, 1 s period)", y)):
        lines.append(f"{label:<{w}} {s['p50_ms']:>9.0f} {s['p99_ms']:>9.0f} {s['max_ms']:>9.0f}")
    lines += [f"{'Running p99 / docker run p99':<{w}} {out['ratio_running_p99']:>9.2f}",
              f"{'Ready p99 / docker run p99':<{w}} {out['ratio_ready_p99']:>9.2f}",
              f"{'node agent CPU seconds per pod':<{w}} {out['agent_cpu_s_per_pod']:>9.3f}", "",
              "where the time goes (per pod, each step from the one above)"]
    for label, s in out.get("steps", {}).items():
        lines.append(f"  {label:<{w - 2}} {s['p50_ms']:>9.0f} {s['p99_ms']:>9.0f} {s['max_ms']:>9.0f}")
    lines += ["", "targets (a MISS never changes the exit status)"]
    for text, ok in ((f"Ready p99 <= {TARGET_READY_P99_S:g} s: {y['p99_ms'] / 1e3:.2f} s",
                      y["p99_ms"] / 1e3 <= TARGET_READY_P99_S),
                     (f"Running p99 <= {TARGET_RATIO:g}x docker run p99: {out['ratio_running_p99']:.2f}x",
                      out["ratio_running_p99"] <= TARGET_RATIO)):
        lines.append(f"  {text}  {'PASS' if ok else 'MISS'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = c.parser(__doc__)
    p.add_argument("--pods", type=int, default=50, help="pods (and bare docker runs)")
    p.add_argument("--rate", type=float, default=1.0, help="starts per second, both sides (one node)")
    p.add_argument("--scheduler", action="store_true",
                   help="run `eventplane scheduler` too and create the pods unbound (create → Running then "
                        "includes scheduling and binding)")
    p.add_argument("--sequential", action="store_true",
                   help="the docker run baseline first, then the pods (default: interleaved)")
    c.add_common_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return c.run_main(parse_args(argv), run_all, render)


if __name__ == "__main__":
    sys.exit(main())
