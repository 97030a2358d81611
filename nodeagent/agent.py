"""The node agent: this node's kubelet. It registers the Node, renews its lease in
NATS KV, watches the pods bound to it and runs one PodWorker per pod.

    await run_nodeagent(client, nats_url, node_name="node-1", zone="a")   # until cancelled

Fed by the API through an informer on pods with `fieldSelector=spec.nodeName=<node>`
(filtered by the server: the agent never receives another node's pods), by
an informer on every Service (the containers' Service variables,
servicelinks.py) and by the runtime's container events; feeds the workers
(worker.py), which write pods' statuses. Heartbeats go to the NATS KV lease bucket
(eventplane/client/nodeleases.py), never to the log (DESIGN invariant 8).

Invariant 9: nothing here stops a container because the API, NATS or
PostgreSQL is unreachable. Until the pod informer has synced, the agent only
keeps its lease; once synced it adopts the containers it finds (by their
labels) and removes those of pods that no longer exist. Cancelling the agent
leaves every container running.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

from eventplane.client import Client
from eventplane.client.nodeleases import DEFAULT_DURATION, NodeLeases
from eventplane.objects import errors
from reconcilers.informer import Informer, causation_of, key_of

from .execserver import ExecServer
from .logserver import LogServer
from .node import build_node, conditions, node_ip, now_rfc3339
from .portforwardserver import PortForwardServer
from .runtime import INFRA, Runtime
from .servicelinks import ServicesNotRead, service_env
from .staticpods import StaticPods
from .worker import MIN_GRACE, PodWorker

log = logging.getLogger("eventplane.nodeagent")

GC_PERIOD = 30.0          # seconds between sweeps for containers whose pod is gone
RETRY_CAP = 10.0
SERVICES_SYNC_WAIT = 5.0  # seconds a container start waits for the first list of Services


class NodeAgent:
    def __init__(self, client: Client, *, node_name: str, runtime: Runtime, nats_url: str | None = None,
                 zone: str | None = None, data_dir: Path | str = "/var/lib/eventplane/nodeagent",
                 node_ip: str | None = None, lease_duration: float = DEFAULT_DURATION,
                 labels: dict[str, str] | None = None, pod_manifest_path: Path | str | None = None) -> None:
        self.client = client
        self.pod_manifest_path = pod_manifest_path
        self.node_name = node_name
        self.runtime = runtime
        self.nats_url = nats_url
        self.zone = zone
        self.data_dir = Path(data_dir)
        self.pods_dir = self.data_dir / node_name
        self.node_ip = node_ip or _node_ip()
        self.lease_duration = lease_duration
        self.labels = labels or {}
        self.allocatable: dict[str, str] = {}
        self.workers: dict[str, PodWorker] = {}
        self.informer: Informer | None = None
        self.services: Informer | None = None   # every Service: containers' Service variables (servicelinks.py)
        self.registered = asyncio.Event()
        self.adopted = asyncio.Event()      # set once the first sweep after the informer's sync ran

    # --- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        log.info("node agent for %s: runtime %s, node IP %s", self.node_name, self.runtime.name, self.node_ip)
        tasks = [asyncio.create_task(self._lease_loop(), name="nodeagent:lease")]
        try:
            await self._register()
            self.informer = Informer(self.client, "pods", field_selector=f"spec.nodeName={self.node_name}")
            self.informer.add_handler(on_add=self._on_pod, on_update=lambda _old, new: self._on_pod(new),
                                      on_delete=self._on_pod_deleted)
            self.informer.start()
            self.services = Informer(self.client, "services")
            self.services.start()
            tasks.append(asyncio.create_task(self._events_loop(), name="nodeagent:events"))
            tasks.append(asyncio.create_task(self._node_keeper(), name="nodeagent:node"))
            await self.informer.wait_synced()
            log.info("node %s: %d pods bound here", self.node_name, len(self.informer.store))
            if self.pod_manifest_path:
                tasks.append(asyncio.create_task(StaticPods(self, self.pod_manifest_path).run(),
                                                 name="nodeagent:static-pods"))
            while True:
                try:
                    await self.collect_garbage()
                except Exception as exc:
                    log.warning("node %s: sweeping old containers failed: %s", self.node_name, exc)
                self.adopted.set()
                await asyncio.sleep(GC_PERIOD)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.informer is not None:
                await self.informer.stop()
            if self.services is not None:
                await self.services.stop()
            await asyncio.gather(*(w.stop() for w in list(self.workers.values())), return_exceptions=True)
            self.workers.clear()
            await self.runtime.close()

    async def _register(self) -> None:
        """Create the Node, or bring an existing one's labels and status up to date; retried until the API
        answers (the containers of a restarted agent keep running meanwhile)."""
        failures = 0
        while True:
            try:
                version = await self.runtime.version()
                node = build_node(self.node_name, zone=self.zone, ip=self.node_ip, data_dir=self.pods_dir,
                                  runtime_version=version, labels=self.labels)
                self.allocatable = dict(node["status"]["allocatable"])
                try:
                    await self.client.create(node)
                    log.info("node %s registered", self.node_name)
                except errors.AlreadyExistsError:
                    existing = await self.client.get("nodes", self.node_name)
                    await self.client.patch("nodes", self.node_name, {"metadata": {"labels": node["metadata"]["labels"]}},
                                            causation=causation_of(existing))
                    status = node["status"]
                    status["conditions"] = conditions(now_rfc3339(), (existing.get("status") or {}).get("conditions"))
                    await self.client.patch("nodes", self.node_name, {"status": status}, subresource="status",
                                            causation=causation_of(existing))
                    log.info("node %s was registered before; its status is brought up to date", self.node_name)
                self.registered.set()
                return
            except (errors.EventplaneError, OSError) as exc:
                failures += 1
                log.warning("node %s: cannot register yet: %s", self.node_name, exc)
                await asyncio.sleep(min(0.2 * 2 ** failures, RETRY_CAP))

    async def _lease_loop(self) -> None:
        """Renew the node's lease every quarter of its duration, as long as NATS answers; the same
        connection serves the containers' logs to the API (logserver.py)."""
        import nats

        nc = None
        leases = None
        logs: LogServer | None = None
        execs: ExecServer | None = None
        forwards: PortForwardServer | None = None
        holder = f"nodeagent@{socket.gethostname()}"
        try:
            while True:
                try:
                    if nc is None and self.nats_url:
                        nc = await nats.connect(self.nats_url, connect_timeout=2, max_reconnect_attempts=-1,
                                                reconnect_time_wait=1, name=f"nodeagent-{self.node_name}",
                                                error_cb=_quiet)
                    if nc is not None and logs is None:
                        logs = LogServer(nc, self.node_name, self.runtime)   # `kubectl logs`, via the API
                        await logs.start()
                        execs = ExecServer(nc, self.node_name, self.runtime)  # `kubectl exec`, via the API
                        await execs.start()
                        forwards = PortForwardServer(nc, self.node_name, self.runtime)  # `kubectl port-forward`
                        await forwards.start()
                    if nc is not None and leases is None:
                        leases = await NodeLeases.open(nc)
                    if leases is not None:
                        await leases.renew(self.node_name, holder=holder, duration=self.lease_duration)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("node %s: lease not renewed: %s", self.node_name, exc or type(exc).__name__)
                await asyncio.sleep(self.lease_duration / 4)
        finally:
            if logs is not None:
                await logs.stop()
            if execs is not None:
                await execs.stop()
            if forwards is not None:
                await forwards.stop()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()

    async def _node_keeper(self) -> None:
        """Ready is True while this agent runs: put it back when someone marked the node otherwise
        (the node lifecycle controller does when the lease expired while the agent was away)."""
        informer = Informer(self.client, "nodes", field_selector=f"metadata.name={self.node_name}")
        changed = asyncio.Event()
        informer.add_handler(on_add=lambda _n: changed.set(), on_update=lambda _o, _n: changed.set())
        async with informer:
            while True:
                await changed.wait()
                changed.clear()
                node = informer.store.get(self.node_name)
                if node is None:
                    continue
                ready = next((c for c in (node.get("status") or {}).get("conditions") or []
                              if c.get("type") == "Ready"), None)
                if ready is not None and ready.get("status") == "True":
                    continue
                try:
                    await self.client.patch(
                        "nodes", self.node_name,
                        {"status": {"conditions": conditions(now_rfc3339(), (node.get("status") or {}).get("conditions"))}},
                        subresource="status", causation=causation_of(node))
                    log.info("node %s: Ready again", self.node_name)
                except errors.EventplaneError as exc:
                    log.warning("node %s: cannot set Ready: %s", self.node_name, exc)
                    await asyncio.sleep(2)
                    changed.set()

    async def _events_loop(self) -> None:
        failures = 0
        while True:
            try:
                async for uid in self.runtime.changes():
                    failures = 0
                    worker = self.workers.get(uid)
                    if worker is not None:
                        worker.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("node %s: runtime events: %s", self.node_name, exc)
            await asyncio.sleep(min(0.2 * 2 ** failures, RETRY_CAP))
            for w in list(self.workers.values()):   # whatever happened meanwhile, look again
                w.wake()

    # --- pods ------------------------------------------------------------------------------------

    def _causation(self, pod: dict[str, Any]) -> int | None:
        pos = self.informer.position_of(key_of(pod)) if self.informer is not None else None
        return pos if pos is not None else causation_of(pod)

    def _on_pod(self, pod: dict[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if not uid:
            return
        worker = self.workers.get(uid)
        if worker is None or worker.done:
            worker = PodWorker(self, uid, pod, self._causation(pod))
            self.workers[uid] = worker
            worker.start()
        else:
            worker.update(pod, self._causation(pod))

    def _on_pod_deleted(self, pod: dict[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        worker = self.workers.get(uid or "")
        if worker is not None:
            worker.forget(self._causation(pod))

    async def service_env(self, pod: dict[str, Any]) -> dict[str, str]:
        """The Service variables for a container of `pod` starting now (servicelinks.py); a
        ConfigError (CreateContainerConfigError, tried again) until the Services were listed once."""
        if self.services is None:
            return {}
        if not self.services.has_synced:
            try:
                await asyncio.wait_for(self.services.wait_synced(), SERVICES_SYNC_WAIT)
            except TimeoutError:
                raise ServicesNotRead("services have not yet been read at least once, cannot construct envvars") \
                    from None
        enable = (pod.get("spec") or {}).get("enableServiceLinks")
        return service_env(self.services.store.list(), (pod.get("metadata") or {}).get("namespace", ""),
                           enable is not False)

    def worker_done(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]

    async def collect_garbage(self) -> None:
        """Remove the containers of pods this node no longer has (deleted while the agent was away).
        Only with a synced informer: an agent that cannot see the API never removes anything."""
        if self.informer is None or not self.informer.has_synced:
            return
        known = {(p.get("metadata") or {}).get("uid") for p in self.informer.store.list()} | set(self.workers)
        records = await self.runtime.containers()
        orphans = [r for r in records if r.pod_uid not in known]
        if not orphans:
            return
        for uid in {r.pod_uid for r in orphans}:
            log.info("node %s: removing the containers of pod %s, which no longer exists", self.node_name, uid)
        grace = {r.id: _grace_of(r) for r in orphans}
        await asyncio.gather(*(self.runtime.stop(r.id, grace[r.id]) for r in orphans if r.running and r.role != INFRA))
        for r in orphans:
            if r.running and r.role == INFRA:
                await self.runtime.stop(r.id, 0)
            await self.runtime.remove(r.id)


def _grace_of(r: Any) -> float:
    from .runtime import GRACE
    try:
        return max(float(r.labels.get(GRACE, "30")), MIN_GRACE)
    except ValueError:
        return 30.0


async def _quiet(exc: Exception) -> None:
    log.debug("NATS: %s", exc)


def _node_ip() -> str:
    return node_ip()


async def choose_runtime(name: str | None, node_name: str, *, allow_privileged: bool = False,
                         data_dir: Path | str = "/var/lib/eventplane/nodeagent") -> Runtime:
    """`docker`, `process`, or None: Docker when its socket answers, else the process runtime."""
    from .runtime.docker import DockerRuntime
    from .runtime.dockerapi import DockerApi

    if name in (None, "", "auto", "docker"):
        api = DockerApi()
        if await api.ping():
            log.info("runtime: docker (the engine at %s answers)", api.socket)
            return DockerRuntime(node_name, api=api, allow_privileged=allow_privileged)
        await api.close()
        if name == "docker":
            raise RuntimeError(f"the Docker engine at {api.socket} does not answer")
        log.warning("runtime: process — no Docker engine answers at %s; containers run as host processes, "
                    "NOT isolated", api.socket)
    from .runtime.process import ProcessRuntime

    return ProcessRuntime(node_name, Path(data_dir) / node_name / "processes", allow_privileged=allow_privileged)


async def run_nodeagent(client: Client, nats_url: str | None, *, node_name: str, zone: str | None = None,
                        runtime: str | Runtime | None = None, data_dir: Path | str = "/var/lib/eventplane/nodeagent",
                        node_ip: str | None = None, allow_privileged: bool = False,
                        labels: dict[str, str] | None = None, lease_duration: float = DEFAULT_DURATION,
                        pod_manifest_path: Path | str | None = None, proxy_services: bool = False) -> None:
    """Run a node agent until cancelled. `runtime`: "docker", "process", a Runtime, or None to pick
    Docker when its socket answers; `pod_manifest_path`: a folder of static pod manifests;
    `proxy_services`: also run the userspace service proxy (serviceproxy.py), which adds ClusterIPs to
    `lo` and answers cluster DNS (dns.py) on kube-dns's, the pods' nameserver then. Cancelling leaves
    every container running."""
    rt = runtime if runtime is not None and not isinstance(runtime, str) else \
        await choose_runtime(runtime, node_name, allow_privileged=allow_privileged, data_dir=data_dir)
    agent = NodeAgent(client, node_name=node_name, runtime=rt, nats_url=nats_url, zone=zone, data_dir=data_dir,
                      node_ip=node_ip, labels=labels, lease_duration=lease_duration,
                      pod_manifest_path=pod_manifest_path)
    if not proxy_services:
        await agent.run()
        return
    from .dns import DNS_SERVICE_IP
    from .serviceproxy import ServiceProxy

    if hasattr(rt, "cluster_dns"):      # the proxy answers DNS on kube-dns's address: pods are pointed at it
        rt.cluster_dns = [DNS_SERVICE_IP]
    proxy = asyncio.create_task(ServiceProxy(client, node_ips=[agent.node_ip]).run(),
                                name="nodeagent:service-proxy")
    try:
        await agent.run()
    finally:
        proxy.cancel()
        await asyncio.gather(proxy, return_exceptions=True)
