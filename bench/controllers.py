"""bench/controllers.py: a 1,000-replica Deployment on 100 simulated nodes, beside the API's own
pod create rate measured in the same run.

Everything runs as it is deployed, each part a child process of this benchmark: the API server
and the relay (as bench/api.py starts them), `eventplane simulate-nodes --count 100` (nodes whose
bound pods turn Running and Ready without containers), `eventplane scheduler`, and
`eventplane controllers --controllers replicaset,deployment`. The benchmark process only drives
and watches (one pod watch from the resourceVersion before each step: every pod event, in log
order), so the controllers' CPU is their process's own (/proc/PID/stat).

1. Baseline: `--clients` (64) closed-loop clients create `--replicas` (1,000) pods straight
   through the API (the pod the Deployment's template makes, for a scheduler nobody runs, in a
   namespace of its own): pods/s the API accepts.
2. The controllers alone: a Deployment of `--replicas` whose pods name a scheduler nobody runs, so
   nothing but the controllers writes: seconds until that many pods exist, and the ratio of that
   create rate to the raw one (the controllers are the bottleneck when it is well below 100 %).
3. A Deployment of `--replicas` is created: seconds until that many pods exist (created by the
   ReplicaSet controller), and until that many are Ready (scheduled and started by the nodes).
   Meanwhile the scheduler binds and the nodes report status: three writes per pod.
4. A rolling update of all of them (image change, maxSurge 25 %, maxUnavailable 25 %): seconds
   until every pod runs the new image and is Ready and the old ones are gone.
5. CPU seconds the controller process used per 1,000 pods, over steps 3 and 4.

Requests go over the NATS API by default (`--via nats`: components started with `--via nats`, and
the baseline's clients too), as in `eventplane up`; `--via rest` measures HTTPS instead.

    .venv/bin/python bench/controllers.py [--replicas 1000] [--nodes 100] [--via nats|rest] [--json] [--keep]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import _common as c
import api as apibench
from eventplane.auth.kubeconfig import write_kubeconfig
from eventplane.client import Client

PERF = time.perf_counter
TARGET_CREATED_SECONDS = 5.0
NS_BASELINE, NS_ALONE, NS_DEPLOY = "bench-raw", "bench-alone", "bench-deploy"
STEP_TIMEOUT = 600.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def template(image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "main", "image": image,
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def deployment(replicas: int, image: str, *, namespace: str = NS_DEPLOY,
               scheduler: str | None = None) -> dict[str, Any]:
    t = template(image)
    if scheduler:
        t["spec"]["schedulerName"] = scheduler
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench", "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}}, "template": t}}


def ready(pod: dict[str, Any]) -> bool:
    return any(cond.get("type") == "Ready" and cond.get("status") == "True"
               for cond in (pod.get("status") or {}).get("conditions") or [])


class PodWatch:
    """Every pod event of a namespace from a resourceVersion; live pods by name."""

    def __init__(self, client: Client, namespace: str, rv: str) -> None:
        self.client, self.namespace, self.rv = client, namespace, rv
        self.live: dict[str, dict[str, Any]] = {}
        self.added = 0
        self.added_at: list[float] = []   # when the watch delivered each ADDED
        self.changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> PodWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async for type_, pod in self.client.watch("pods", namespace=self.namespace, resource_version=self.rv):
            name = pod["metadata"]["name"]
            if type_ == "ADDED":
                self.added += 1
                self.added_at.append(PERF())
            if type_ == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                self.live.pop(name, None)
            else:
                self.live[name] = pod
            self.changed.set()

    async def until(self, check, timeout: float = STEP_TIMEOUT) -> float:
        """Seconds (perf counter) at which `check(self)` first held."""
        async def wait() -> float:
            while not check(self):
                self.changed.clear()
                await self.changed.wait()
            return PERF()
        return await asyncio.wait_for(wait(), timeout)


class Bench:
    def __init__(self, servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace) -> None:
        self.servers, self.children, self.args = servers, children, args
        self.api = apibench.ServerUnderTest(servers, children, args)
        self.kubeconfig = servers.data_dir / "kubeconfig"
        self.parts: dict[str, c.ChildProcess] = {}

    def spawn(self, name: str, *argv: str) -> c.ChildProcess:
        child = c.ChildProcess(name, [sys.executable, "-m", "eventplane.cli.server", "--log-level",
                                      self.args.server_log_level, *argv], self.servers.data_dir / f"{name}.log")
        self.children.append(child)
        child.start()
        self.parts[name] = child
        return child

    def check(self) -> None:
        self.api.check()
        for child in self.parts.values():
            if not child.running():
                raise RuntimeError(f"{child.name} exited with {child.stop()}; its log ends:\n{child.log_tail()}")

    def cpu(self) -> dict[str, float]:
        out = {name: child.cpu_seconds() for name, child in self.parts.items()}
        out["apiserver"] = self.api.apiserver.cpu_seconds()
        out["relay"] = self.api.relay.cpu_seconds()
        return out

    async def start(self) -> Client:
        await self.api.start()
        write_kubeconfig(self.kubeconfig, server_url=self.api.url,
                         ca_pem=(self.api.data_dir / "pki" / "ca.crt").read_bytes(), user_name="admin",
                         token=self.api.token)
        nats = self.args.via == "nats"
        # The benchmark's own creates (the baseline) go the way the components' do.
        client = Client.from_kubeconfig(str(self.kubeconfig), timeout=60,
                                        nats_url=self.servers.nats_url if nats else None)
        for ns in (NS_BASELINE, NS_ALONE, NS_DEPLOY):
            await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        kc = ("--kubeconfig", str(self.kubeconfig), "--via", self.args.via, "--nats-url", self.servers.nats_url)
        self.spawn("simulate-nodes", "simulate-nodes", "--count", str(self.args.nodes), *kc)
        self.spawn("scheduler", "scheduler", *kc)
        self.spawn("controllers", "controllers", "--controllers", "replicaset,deployment", *kc)
        deadline = PERF() + 60
        while PERF() < deadline:
            self.check()
            nodes = (await client.list("nodes"))["items"]
            try:
                lease = await client.get("leases.coordination.k8s.io", "eventplane-controller-manager",
                                         namespace="kube-system")
                leader = lease["spec"].get("holderIdentity")
            except Exception:
                leader = None
            if len(nodes) >= self.args.nodes and leader:
                return client
            await asyncio.sleep(0.5)
        raise TimeoutError("simulated nodes or the controller manager did not come up within 60 s")

    async def baseline(self, client: Client) -> dict[str, Any]:
        """Raw API pod creates: the floor any controller's create rate is compared with."""
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"app": "raw"}},
                "spec": {**template("nginx:1.25")["spec"], "schedulerName": "nobody"}}
        n, clients = self.args.replicas, self.args.clients
        counter = iter(range(n))
        latencies: list[float] = []

        async def worker() -> None:
            for i in counter:
                t = PERF()
                await client.create({**body, "metadata": {**body["metadata"], "name": f"raw-{i}"}},
                                    namespace=NS_BASELINE)
                latencies.append(PERF() - t)

        cpu0, t0 = self.cpu(), PERF()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = PERF() - t0
        cpu1 = self.cpu()
        latencies.sort()
        return {"pods": n, "seconds": elapsed, "per_s": n / elapsed, "p50_ms": c.percentile(latencies, 50) * 1e3,
                "p99_ms": c.percentile(latencies, 99) * 1e3,
                "apiserver_cpu_s": cpu1["apiserver"] - cpu0["apiserver"]}

    async def alone(self, client: Client) -> dict[str, Any]:
        """The controllers' create rate with nothing else writing: a Deployment whose pods no scheduler
        takes, so every write after the apply is the controllers' own."""
        n = self.args.replicas
        rv = (await client.list("pods", namespace=NS_ALONE, limit=1))["metadata"]["resourceVersion"]
        watch = PodWatch(client, NS_ALONE, rv).start()
        try:
            cpu0, t0 = self.cpu(), PERF()
            await client.create(deployment(n, "nginx:1.25", namespace=NS_ALONE, scheduler="nobody"),
                                namespace=NS_ALONE)
            t_created = await watch.until(lambda w: w.added >= n)
            cpu1 = self.cpu()
        finally:
            await watch.stop()
        at = [t - t0 for t in watch.added_at]
        # The timeline: apply → first pod (Deployment → ReplicaSet → first create), then every tenth.
        marks = {f"{k}": round(at[k - 1], 3) for k in sorted({1, *range(n // 10, n + 1, max(1, n // 10))}) if k <= len(at)}
        return {"created_s": t_created - t0, "pods_created_per_s": n / (t_created - t0),
                "cpu_s": {k: cpu1[k] - cpu0[k] for k in cpu1}, "timeline_s": marks}

    async def rollout(self, client: Client) -> dict[str, Any]:
        n = self.args.replicas
        rv = (await client.list("pods", namespace=NS_DEPLOY, limit=1))["metadata"]["resourceVersion"]
        watch = PodWatch(client, NS_DEPLOY, rv).start()
        try:
            cpu0, t0 = self.cpu(), PERF()
            await client.create(deployment(n, "nginx:1.25"), namespace=NS_DEPLOY)
            t_created = await watch.until(lambda w: w.added >= n)
            log(f"  {n} pods created after {t_created - t0:.2f} s")
            t_ready = await watch.until(lambda w: sum(1 for p in w.live.values() if ready(p)) >= n)
            log(f"  {n} pods ready after {t_ready - t0:.2f} s")
            cpu1 = self.cpu()
            self.check()

            sets_rv = (await client.list("replicasets.apps", namespace=NS_DEPLOY))["metadata"]["resourceVersion"]
            steps: list[tuple[float, str, int, int]] = []
            last: dict[str, int] = {}

            async def follow_sets() -> None:
                async for _, rs in client.watch("replicasets.apps", namespace=NS_DEPLOY, resource_version=sets_rv):
                    name = rs["metadata"]["name"][-5:]
                    step = (round(PERF() - t1, 2), name, rs["spec"]["replicas"],
                            int((rs.get("status") or {}).get("availableReplicas") or 0))
                    if last.get(name) != step[2]:   # spec changes only
                        last[name] = step[2]
                        steps.append(step)
            t1 = PERF()
            sets_task = asyncio.create_task(follow_sets())
            await client.patch("deployments.apps", "bench", {"spec": {"template": template("nginx:1.27")}},
                               type="merge", namespace=NS_DEPLOY)

            def rolled(w: PodWatch) -> bool:
                return len(w.live) == n and all(
                    p["spec"]["containers"][0]["image"] == "nginx:1.27" and ready(p) for p in w.live.values())
            t_rolled = await watch.until(rolled)
            log(f"  rolling update of {n} done after {t_rolled - t1:.2f} s")
            cpu2 = self.cpu()
            sets_task.cancel()
            await asyncio.gather(sets_task, return_exceptions=True)
            log(f"  the sets' specs during the update (s, set, replicas, available then): {steps}")
        finally:
            await watch.stop()
        d = await client.get("deployments.apps", "bench", namespace=NS_DEPLOY)
        # The sets' scaling as the log recorded it (epctl history): every spec.replicas change, in order.
        scaling: dict[str, list[str]] = {}
        for rs in (await client.list("replicasets.apps", namespace=NS_DEPLOY))["items"]:
            h = await client.history("replicasets.apps", rs["metadata"]["name"], namespace=NS_DEPLOY)
            scaling[rs["metadata"]["name"]] = [f"{i.get('resourceVersion')}:{i.get('summary')}"
                                               for i in h.get("items", []) if "spec.replicas" in (i.get("summary") or "")
                                               or i.get("type") == "Created"]
        log(f"  the sets' scaling in the log: {scaling}")
        return {
            "created_s": t_created - t0, "ready_s": t_ready - t0, "rolling_update_s": t_rolled - t1,
            "pods_created_per_s": n / (t_created - t0),
            "cpu_create_s": {k: cpu1[k] - cpu0[k] for k in cpu1},
            "cpu_update_s": {k: cpu2[k] - cpu1[k] for k in cpu2},
            "rollout_steps": steps,
            "final_status": {k: d["status"].get(k) for k in ("replicas", "updatedReplicas", "readyReplicas",
                                                             "availableReplicas")},
        }


async def run_all(servers: c.Servers, children: list[c.ChildProcess], args: argparse.Namespace,
                  loop_name: str) -> dict[str, Any]:
    facts = await c.machine_facts(servers, loop_name)
    bench = Bench(servers, children, args)
    log("starting the API server, relay, simulated nodes, scheduler and controllers…")
    client = await bench.start()
    try:
        log(f"baseline: {args.clients} clients create {args.replicas} pods through the API…")
        base = await asyncio.wait_for(bench.baseline(client), STEP_TIMEOUT)
        log(f"  {base['per_s']:.0f} pods/s")
        log(f"a Deployment of {args.replicas} whose pods nobody schedules (the controllers alone)…")
        alone = await asyncio.wait_for(bench.alone(client), STEP_TIMEOUT)
        log(f"  {args.replicas} pods created after {alone['created_s']:.2f} s; pod k seen at: {alone['timeline_s']}")
        if args.only_alone:
            return {"alone": alone, "baseline": base}
        log(f"a Deployment of {args.replicas} on {args.nodes} simulated nodes…")
        run = await bench.rollout(client)
    finally:
        await client.close()
    pods_total = 2 * args.replicas   # created in the first rollout, then again in the rolling update
    controller_cpu = run["cpu_create_s"]["controllers"] + run["cpu_update_s"]["controllers"]
    return {"machine": facts, "config": {k: getattr(args, k) for k in ("replicas", "nodes", "clients", "via")},
            "baseline": base, "alone": alone, "deployment": run,
            "controllers_over_api": alone["pods_created_per_s"] / base["per_s"],
            "pipeline_over_api": run["pods_created_per_s"] / base["per_s"],
            "controller_cpu_s_per_1000_pods": controller_cpu / pods_total * 1000}


def render(out: dict[str, Any]) -> str:
    m, b, d, cfg, a = out["machine"], out["baseline"], out["deployment"], out["config"], out["alone"]
    lines = [f"machine: {m.get('nproc')} cores, {m.get('cpu', '')}, Python {m.get('python', '')}, "
             f"{m.get('loop', '')}", "",
             f"{'measure':<52} {'value':>12}",
             f"{'-' * 52} {'-' * 12}",
             f"requests over {cfg['via'].upper()} (components and the baseline's clients alike; watches over REST)",
             "",
             f"{'baseline: raw API pod creates/s (' + str(cfg['clients']) + ' clients)':<52} {b['per_s']:>12,.0f}",
             f"{'  create latency p50 / p99 (ms)':<52} {b['p50_ms']:>5.1f} / {b['p99_ms']:<5.1f}",
             f"{'controllers alone: apply → ' + str(cfg['replicas']) + ' pods created (s)':<52} {a['created_s']:>12.2f}",
             f"{'  controllers pods/s':<52} {a['pods_created_per_s']:>12,.0f}",
             f"{'  controllers / raw API create rate':<52} {out['controllers_over_api']:>11.0%}",
             f"{'  controller CPU s per 1,000 pods created':<52} "
             f"{a['cpu_s']['controllers'] / cfg['replicas'] * 1000:>12.2f}",
             f"{'with scheduler and nodes: apply → ' + str(cfg['replicas']) + ' pods created (s)':<52}"
             f" {d['created_s']:>12.2f}",
             f"{'  pods/s (scheduler binds and nodes report meanwhile)':<52} {d['pods_created_per_s']:>12,.0f}",
             f"{'  / raw API create rate':<52} {out['pipeline_over_api']:>11.0%}",
             f"{'apply → ' + str(cfg['replicas']) + ' pods Ready (s, scheduler + ' + str(cfg['nodes']) + ' nodes)':<52}"
             f" {d['ready_s']:>12.2f}",
             f"{'rolling update of all ' + str(cfg['replicas']) + ' (s)':<52} {d['rolling_update_s']:>12.2f}",
             f"{'controller CPU s per 1,000 pods':<52} {out['controller_cpu_s_per_1000_pods']:>12.2f}", "",
             "CPU seconds by process (create+ready | rolling update):"]
    for k in d["cpu_create_s"]:
        lines.append(f"  {k:<20} {d['cpu_create_s'][k]:>8.2f} | {d['cpu_update_s'][k]:>8.2f}")
    lines.append(f"final Deployment status: {d['final_status']}")
    ok = d["created_s"] <= TARGET_CREATED_SECONDS
    lines += ["", f"target: {cfg['replicas']} pods created in <= {TARGET_CREATED_SECONDS:g} s (with scheduler and "
                  f"nodes): {d['created_s']:.2f} s  {'PASS' if ok else 'MISS'}",
              f"target: controllers not the bottleneck (alone >= 50% of the raw API create rate): "
              f"{out['controllers_over_api']:.0%}  {'PASS' if out['controllers_over_api'] >= 0.5 else 'MISS'}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = c.parser(__doc__)
    p.add_argument("--replicas", type=int, default=1000, help="replicas of the Deployment (and baseline pods)")
    p.add_argument("--nodes", type=int, default=100, help="simulated nodes")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients of the baseline")
    p.add_argument("--only-alone", action="store_true", help="stop after the baseline and the controllers alone")
    p.add_argument("--via", choices=("rest", "nats"), default="nats",
                   help="how the components (and the baseline) send requests; `eventplane up` uses nats")
    c.add_common_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return c.run_main(args, run_all, render, as_json=args.json or args.only_alone)


if __name__ == "__main__":
    sys.exit(main())

