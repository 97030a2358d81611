"""One worker per pod bound to this node: it drives the pod's containers to its spec
and reports the pod's status, level-triggered, like the kubelet's pod worker.

Fed by the agent (agent.py) with every version of its pod the informer sees,
with the runtime's container events (a container died) and with its probes'
verdicts; each of those wakes the worker, which then syncs: it reads what the
runtime runs for the pod, decides what to start, restart or kill, does it, and
computes the status (status.py). The status is written through pods/status
only when it differs from what the pod says, with causation = the position of
the pod event the worker acted on (DESIGN invariant 10).

Nothing here stops a container because the API is unreachable (invariant 9):
a sync that cannot reach the API keeps what runs, keeps the env values it
resolved before for restarts, and tries again later. A pod with a
deletionTimestamp has its containers stopped gracefully (preStop, SIGTERM,
the grace period, SIGKILL), then is deleted for good (gracePeriodSeconds=0),
as the kubelet does.

Restarts follow restartPolicy with the kubelet's CrashLoopBackOff: the first
restart is immediate, then 10 s, doubling up to 5 minutes, measured from the
moment the container finished; an image that cannot be pulled is ErrImagePull,
then ImagePullBackOff with the same doubling.
"""
from __future__ import annotations

import asyncio
import calendar
import logging
import time
from typing import TYPE_CHECKING, Any

from eventplane.objects import errors

from . import status as podstatus
from .containers import ConfigError, Refs, build_config, labels_for, references, resolve_env, spec_hash
from .probes import LIVENESS, READINESS, STARTUP, Prober, first_checks
from .runtime import APP, INFRA, INIT, ContainerRecord, ContainerStartError, ImagePullError
from .servicelinks import ServicesNotRead
from .volumes import PodVolumes, VolumeError

if TYPE_CHECKING:
    from .agent import NodeAgent

log = logging.getLogger("eventplane.nodeagent.worker")

BACKOFF_INITIAL = 10.0      # seconds: kubelet's initial container restart backoff
BACKOFF_MAX = 300.0         # and its cap
RESYNC = 10.0               # a sync at least this often, whatever happens
MIN_GRACE = 2               # the kubelet never gives a container less than 2 s to stop
KEEP_INSTANCES = 2          # the running (or last) instance and the one before, for lastState
FIRST_PROBE_WAIT = 0.1      # seconds a status waits for the first answer of a new readiness probe
PULL_ERROR_SHOWN = 1.0      # seconds ErrImagePull is reported before ImagePullBackOff


def needs_pod_ip(c: dict[str, Any]) -> bool:
    """The container's env names the pod's IP (fieldRef status.podIP/podIPs): known once the sandbox runs."""
    return any((((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") in ("status.podIP", "status.podIPs"))
               for e in c.get("env") or [])


def go_duration(seconds: float) -> str:
    """10s, 1m20s, 5m0s: how the kubelet's messages print a backoff."""
    s = int(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def epoch(rfc3339: str | None) -> float | None:
    if not rfc3339:
        return None
    return float(calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S")))


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def restart_backoff(entry: tuple[float, float] | None, finished: float, now: float
                    ) -> tuple[float | None, tuple[float, float]]:
    """The kubelet's container restart backoff. `entry` is (delay, when it was last raised) or None;
    `finished` when the container ended. Returns (the time the backoff ends, when the restart must
    wait; else None) and the entry to keep when restarting now: 10 s, doubling to 5 min, forgotten
    when the container ran longer than twice the cap since the last raise."""
    expired = entry is None or finished - entry[1] > 2 * BACKOFF_MAX
    if not expired and now - finished < entry[0]:
        return finished + entry[0], entry
    return None, (BACKOFF_INITIAL if expired else min(entry[0] * 2, BACKOFF_MAX), now)


def all_done(spec: dict[str, Any], policy: str, records: list[ContainerRecord]) -> bool:
    """Every container ended for good (the restart policy will not start it again): the pod is over,
    whatever its status says yet, and needs no sandbox any more."""
    apps = podstatus.latest_by_name(records, APP)
    containers = spec.get("containers") or []
    return bool(containers) and all(
        apps.get(c["name"]) and apps[c["name"]][0].exited and not should_restart(policy, apps[c["name"]][0])
        for c in containers)


def should_restart(policy: str, record: ContainerRecord) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return not record.exited or record.exit_code != 0
    return False


class PodWorker:
    def __init__(self, agent: NodeAgent, uid: str, pod: dict[str, Any], causation: int | None) -> None:
        self.agent = agent
        self.uid = uid
        self.pod = pod
        self.causation = causation
        self.gone = False                     # the pod left the API: stop everything, nothing to report
        self.done = False
        self._wake = asyncio.Event()
        self._wake.set()
        self._task: asyncio.Task[None] | None = None
        self._due: float | None = None        # wall-clock time of a backoff's end
        self.probers: dict[str, dict[str, Prober]] = {}     # container id → kind → prober
        self.backoff: dict[str, tuple[float, float]] = {}   # container name → (delay, when it was last raised)
        self.pull_backoff: dict[str, tuple[float, float]] = {}  # container name → (delay, until)
        self.kill_messages: dict[str, str] = {}
        self.env_cache: dict[str, list[tuple[str, str]]] = {}
        self.volumes: PodVolumes | None = None
        self.last_written: dict[str, Any] | None = None
        self.written_rv = 0
        self._sandbox: ContainerRecord | None = None   # the running infra container, for the probes' pod IP
        self._sandbox_start: asyncio.Future[ContainerRecord] | None = None   # a created sandbox, starting
        self._fresh_readiness: list[Prober] = []       # readiness probers started in this sync
        self._refs: Refs | None = None                 # what this sync read of ConfigMaps, Secrets, PVCs

    # --- fed by the agent ------------------------------------------------------------------------

    @property
    def key(self) -> str:
        m = self.pod["metadata"]
        return f"{m.get('namespace', '')}/{m['name']}"

    def update(self, pod: dict[str, Any], causation: int | None) -> None:
        echo = self._own_write(pod)
        self.pod = pod
        if causation is not None:
            self.causation = causation
        if not echo:
            self.wake()

    def _own_write(self, pod: dict[str, Any]) -> bool:
        """The informer shows the status this worker wrote, and nothing else changed: no sync needed
        (it would only find that nothing is to be done, at the price of a look at the runtime)."""
        if self.last_written is None or pod.get("spec") != self.pod.get("spec"):
            return False
        ignored = ("resourceVersion", "managedFields")
        old_meta = {k: v for k, v in (self.pod.get("metadata") or {}).items() if k not in ignored}
        new_meta = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in ignored}
        return old_meta == new_meta and _without_nulls(pod.get("status") or {}) == self.last_written

    def forget(self, causation: int | None) -> None:
        """The pod was deleted from the API (or left this node's selection)."""
        self.gone = True
        if causation is not None:
            self.causation = causation
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"pod:{self.key}")

    async def stop(self) -> None:
        """Stop working on the pod (the agent is shutting down); its containers keep running."""
        for probers in self.probers.values():
            for p in probers.values():
                p.stop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                if await self.sync():
                    break
                failures = 0
            except asyncio.CancelledError:
                raise
            except errors.EventplaneError as exc:
                failures += 1
                log.warning("pod %s: %s (the containers keep running; trying again)", self.key, exc)
            except Exception as exc:
                failures += 1
                log.warning("pod %s: sync failed: %r", self.key, exc, exc_info=failures == 1)
            delay = RESYNC
            if self._due is not None:
                delay = min(delay, max(0.05, self._due - time.time()))
            if failures:
                delay = min(delay, 0.2 * 2 ** min(failures, 6))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
        self.done = True
        for probers in self.probers.values():
            for p in probers.values():
                p.stop()
        self.agent.worker_done(self)

    # --- one sync --------------------------------------------------------------------------------

    async def sync(self) -> bool:
        """Drive the pod one step towards its spec; True when the worker is finished with it."""
        pod, causation = self.pod, self.causation
        self._due = None
        self._refs = None
        rt = self.agent.runtime
        records = await rt.containers(self.uid)
        if self.gone or pod["metadata"].get("deletionTimestamp"):
            await self.terminate(records, final_status=not self.gone)
            if not self.gone:
                m = pod["metadata"]
                try:   # this incarnation only: a pod recreated under the same name is never hit
                    await self.agent.client.delete("pods", m["name"], namespace=m.get("namespace"),
                                                   grace_period_seconds=0, causation=causation,
                                                   preconditions={"uid": self.uid})
                except (errors.NotFoundError, errors.ConflictError):
                    pass
            return True

        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy", "Always")
        waiting: dict[str, tuple[str, str]] = {}
        # Terminal once the pod says so — or once we said so and the informer has not shown it yet.
        finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or \
            (self.last_written or {}).get("phase") in ("Succeeded", "Failed") or \
            all_done(spec, policy, records)
        sandboxes = sorted((r for r in records if r.role == INFRA), key=lambda r: r.restart_count, reverse=True)
        sandbox = sandboxes[0] if sandboxes else None
        changed = False
        self._sandbox = sandbox if sandbox is not None and sandbox.running else None
        if (sandbox is None or not sandbox.running) and not finished:
            attempt = 0
            if sandbox is not None:
                # A new sandbox is a new network namespace: what ran in the old one starts again.
                attempt = sandbox.restart_count + 1
                await asyncio.gather(*(self._kill(r, MIN_GRACE) for r in records if r.running))
            log.info("pod %s: starting its sandbox (attempt %d)", self.key, attempt)
            labels = labels_for(pod, self.agent.node_name, "", INFRA, attempt)
            if hasattr(rt, "create_sandbox"):
                # Created now, started meanwhile: the first container is created while the engine makes
                # the sandbox's network namespace (the longest step of a pod's start), then started.
                sid = await rt.create_sandbox(pod, labels)
                self._sandbox_start = asyncio.ensure_future(rt.start_sandbox(sid))
                m = pod["metadata"]
                sandbox = ContainerRecord(id=sid, pod_uid=self.uid, pod_namespace=m.get("namespace", ""),
                                          pod_name=m["name"], name="", role=INFRA, restart_count=attempt,
                                          image="", state="created", labels=labels)
            else:
                sandbox = await rt.run_sandbox(pod, labels)
                self._sandbox = sandbox
            changed = True

        try:
            if not finished:
                ready_to_run = await self._prepare_volumes(waiting)
                if ready_to_run:
                    changed |= await self._drive(pod, spec, policy, records, sandbox, waiting)
        finally:
            if self._sandbox_start is not None:   # nothing needed it running: still, it has started
                await self._started_sandbox()
        if changed:
            records = await rt.containers(self.uid)
        await self._prune(records)
        ready, started = self._probe_views(records)
        fresh, self._fresh_readiness = self._fresh_readiness, []
        if fresh:
            # A readiness probe with no initial delay answers within milliseconds, usually: its first
            # answer goes into this status, so that one write says Running and Ready, not two.
            await first_checks(fresh, FIRST_PROBE_WAIT)
            ready, started = self._probe_views(records)
        obs = podstatus.Observed(records, self.agent.node_ip, now_rfc3339(), ready=ready, started=started,
                                 waiting=waiting, runtime_prefix=rt.name)
        new_status = podstatus.pod_status(pod, obs)
        if new_status["phase"] in ("Succeeded", "Failed"):
            live = [r for r in records if r.running and r.role != INFRA]
            if not live:
                for r in records:
                    if r.role == INFRA and r.running:
                        await rt.stop(r.id, 0)
        await self.report(pod, new_status, causation)
        return False

    async def _prepare_volumes(self, waiting: dict[str, tuple[str, str]]) -> bool:
        if self.volumes is not None:
            return True
        pod = self.pod
        volumes = PodVolumes(self.agent.pods_dir, pod)
        refs = self._refs = Refs(self.agent.client, pod["metadata"].get("namespace", ""))
        await refs.prefetch(references(pod))   # every ConfigMap, Secret and PVC of the first start, at once
        try:
            await volumes.prepare(refs, self.agent.allocatable)
        except VolumeError as exc:
            log.warning("pod %s: %s", self.key, exc)
            for c in (pod.get("spec") or {}).get("containers") or []:
                waiting[c["name"]] = ("ContainerCreating", "")
            self._due = time.time() + 2
            return False
        self.volumes = volumes
        return True

    async def _drive(self, pod: dict[str, Any], spec: dict[str, Any], policy: str, records: list[ContainerRecord],
                     sandbox: ContainerRecord | None, waiting: dict[str, tuple[str, str]]) -> bool:
        """Start, restart or kill containers; True when something changed."""
        changed = False
        inits = podstatus.latest_by_name(records, INIT)
        apps = podstatus.latest_by_name(records, APP)
        for c in spec.get("initContainers") or []:
            instances = inits.get(c["name"], [])
            latest = instances[0] if instances else None
            if latest is not None and latest.exited and latest.exit_code == 0:
                continue
            if latest is None:
                changed |= await self._start(c, INIT, 0, sandbox, waiting)
            elif not latest.running and policy != "Never":
                changed |= await self._restart(c, INIT, latest, sandbox, waiting)
            return changed   # init containers run one at a time, in order
        for c in spec.get("containers") or []:
            instances = apps.get(c["name"], [])
            latest = instances[0] if instances else None
            if latest is None:
                changed |= await self._start(c, APP, 0, sandbox, waiting)
            elif latest.running:
                changed |= await self._check_running(c, latest)
            elif should_restart(policy, latest):
                changed |= await self._restart(c, APP, latest, sandbox, waiting)
        return changed

    async def _check_running(self, c: dict[str, Any], r: ContainerRecord) -> bool:
        if r.spec_hash and r.spec_hash != spec_hash(c):
            log.info("pod %s: container %s definition changed, will be restarted", self.key, c["name"])
            await self._kill(r, self._grace())
            return True
        probers = self._ensure_probers(c, r)
        for kind in (STARTUP, LIVENESS):
            p = probers.get(kind)
            if p is not None and p.result.ok is False:
                self.kill_messages[c["name"]] = f"Container {c['name']} failed {kind} probe, will be restarted"
                log.info("pod %s: %s", self.key, self.kill_messages[c["name"]])
                grace = (p.spec.get("terminationGracePeriodSeconds") if isinstance(p.spec, dict) else None)
                await self._kill(r, grace if grace is not None else self._grace())
                return True
        return False

    async def _restart(self, c: dict[str, Any], role: str, latest: ContainerRecord,
                       sandbox: ContainerRecord | None, waiting: dict[str, tuple[str, str]]) -> bool:
        name = c["name"]
        now = time.time()
        finished = epoch(latest.finished_at) or now
        entry = self.backoff.get(name)
        wait, new_entry = restart_backoff(entry, finished, now)
        if wait is not None:
            m = self.pod["metadata"]
            waiting[name] = (podstatus.CRASH_LOOP,
                             f"back-off {go_duration(entry[0])} restarting failed container={name} "
                             f"pod={m['name']}_{m.get('namespace', '')}({self.uid})")
            self._set_due(wait)
            return False
        self.backoff[name] = new_entry
        return await self._start(c, role, latest.restart_count + 1, sandbox, waiting)

    def _set_due(self, when: float) -> None:
        self._due = when if self._due is None else min(self._due, when)

    async def _start(self, c: dict[str, Any], role: str, restart_count: int, sandbox: ContainerRecord | None,
                     waiting: dict[str, tuple[str, str]]) -> bool:
        rt, name, pod = self.agent.runtime, c["name"], self.pod
        now = time.time()
        pull = self.pull_backoff.get(name)
        if pull is not None and now < pull[1]:
            waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{c.get("image", "")}"')
            self._set_due(pull[1])
            return False
        try:
            await rt.ensure_image(c.get("image", ""), c.get("imagePullPolicy") or "IfNotPresent")
        except ImagePullError as exc:
            delay = BACKOFF_INITIAL if pull is None else min(pull[0] * 2, BACKOFF_MAX)
            self.pull_backoff[name] = (delay, now + delay)
            waiting[name] = (exc.reason, str(exc))
            self._set_due(now + PULL_ERROR_SHOWN)   # then ImagePullBackOff until the next try
            return False
        self.pull_backoff.pop(name, None)
        split = sandbox is not None and hasattr(rt, "create_container")
        if self._sandbox_start is not None and (not split or needs_pod_ip(c)):
            sandbox = await self._started_sandbox()
        try:
            env = await self._env(c, sandbox)
            assert self.volumes is not None
            config = build_config(pod, c, role=role, restart_count=restart_count, node=self.agent.node_name, env=env,
                                  volume_paths=self.volumes.paths, memory_volumes=self.volumes.memory)
            if not split:
                cid = await rt.run_container(config, sandbox)
            else:
                cid = await rt.create_container(config, sandbox)
        except (ConfigError, ContainerStartError) as exc:
            waiting[name] = (exc.reason, str(exc))
            self._set_due(now + 2)
            return True
        if split:
            if self._sandbox_start is not None:
                try:
                    await self._started_sandbox()
                except BaseException:
                    await asyncio.shield(self._remove_quietly(cid))   # created for a sandbox that never ran
                    raise
            try:
                await rt.start_container(cid)
            except ContainerStartError as exc:
                waiting[name] = (exc.reason, str(exc))
                self._set_due(now + 2)
                return True
        hook = ((c.get("lifecycle") or {}).get("postStart") or {}).get("exec")
        if hook:
            try:
                code, out = await rt.exec(cid, list(hook.get("command") or []), self._grace())
            except (TimeoutError, Exception) as exc:  # noqa: B014 — any failure of the hook is its failure
                code, out = -1, str(exc).encode()
            if code != 0:
                log.info("pod %s: PostStartHook of %s failed (%s): %s", self.key, name, code,
                         out.decode(errors="replace")[:200])
                await rt.stop(cid, MIN_GRACE)
        return True

    async def _env(self, c: dict[str, Any], sandbox: ContainerRecord | None) -> list[tuple[str, str]]:
        """The container's env, resolved at every start as the kubelet does (a ConfigMap, Secret or Service
        changed since the last start is seen); when the API does not answer, the values of the last start
        (DESIGN invariant 9: a crashing container restarts without the API)."""
        name, pod = c["name"], self.pod
        try:
            services = await self.agent.service_env(pod)
            refs = self._refs or Refs(self.agent.client, pod["metadata"].get("namespace", ""))
            env = await resolve_env(self._pod_with_status(self._sandbox or sandbox), c, refs,
                                    self.agent.allocatable, services)
        except (errors.EventplaneError, ServicesNotRead) as exc:
            cached = self.env_cache.get(name)
            if cached is None:
                raise
            log.info("pod %s: container %s starts with the env of its last start (%s)", self.key, name, exc)
            return cached
        self.env_cache[name] = env
        return env

    async def _started_sandbox(self) -> ContainerRecord | None:
        """The sandbox whose start is under way, once it runs (its start's error raised here)."""
        task, self._sandbox_start = self._sandbox_start, None
        if task is not None:
            self._sandbox = await task
        return self._sandbox

    async def _remove_quietly(self, cid: str) -> None:
        try:
            await self.agent.runtime.remove(cid)
        except Exception as exc:
            log.info("pod %s: removing container %s failed: %s", self.key, cid[:12], exc)

    def _pod_with_status(self, sandbox: ContainerRecord | None) -> dict[str, Any]:
        """The pod as the downward API sees it when a container starts: with its IPs."""
        pod = dict(self.pod)
        status = dict(pod.get("status") or {})
        status["hostIP"] = self.agent.node_ip
        status["hostIPs"] = [{"ip": self.agent.node_ip}]
        ip = self.agent.node_ip if (pod.get("spec") or {}).get("hostNetwork") else (sandbox.ip if sandbox else "")
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        pod["status"] = status
        return pod

    def _grace(self) -> int:
        m, spec = self.pod["metadata"], self.pod.get("spec") or {}
        g = m.get("deletionGracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return int(g)

    async def _kill(self, r: ContainerRecord, grace: float) -> None:
        """preStop hook, then SIGTERM, the grace period, SIGKILL — all within `grace` seconds."""
        rt = self.agent.runtime
        self._stop_probers(r.id)
        deadline = time.monotonic() + grace
        spec = next((c for c in (self.pod.get("spec") or {}).get("containers") or [] if c["name"] == r.name), {})
        hook = ((spec.get("lifecycle") or {}).get("preStop") or {}).get("exec") if r.role == APP else None
        if hook and grace > 0:
            try:
                await rt.exec(r.id, list(hook.get("command") or []), max(1.0, grace))
            except Exception as exc:  # a failing preStop hook does not stop the termination
                log.info("pod %s: PreStopHook of %s failed: %s", self.key, r.name, exc)
        left = max(0.0, deadline - time.monotonic())
        if r.role != INFRA and grace > 0:
            left = max(left, min(MIN_GRACE, grace))
        await rt.stop(r.id, left)

    async def terminate(self, records: list[ContainerRecord], *, final_status: bool = False) -> None:
        """Stop the pod's containers (preStop, SIGTERM, grace, SIGKILL; the sandbox last); with
        `final_status`, write the status they ended with (as the kubelet does before the pod's final
        delete: terminated states, exit codes, a terminal phase); then remove them."""
        rt = self.agent.runtime
        grace = self._grace()
        if self.gone and not self.pod["metadata"].get("deletionTimestamp"):
            grace = int((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        await asyncio.gather(*(self._kill(r, grace) for r in records if r.running and r.role != INFRA))
        for r in records:
            if r.role == INFRA and r.running:
                await rt.stop(r.id, 0)
        if final_status and records:
            await self._final_status()
        for r in records:
            await rt.remove(r.id)
        for probers in self.probers.values():
            for p in probers.values():
                p.stop()
        self.probers.clear()
        (self.volumes or PodVolumes(self.agent.pods_dir, self.pod)).cleanup()

    async def _final_status(self) -> None:
        """The status of a deleted pod whose containers all stopped: written before the pod goes (unless
        it is gone already); an API that does not answer makes the sync fail and try again later, with
        the stopped containers kept until then."""
        pod = self.pod
        records = await self.agent.runtime.containers(self.uid)
        for probers in self.probers.values():
            for p in probers.values():
                p.stop()
        self.probers.clear()
        obs = podstatus.Observed(records, self.agent.node_ip, now_rfc3339(), ready={}, started={},
                                 runtime_prefix=self.agent.runtime.name)
        try:
            await self.report(pod, podstatus.pod_status(pod, obs, terminal=True), self.causation)
        except errors.NotFoundError:
            pass

    async def _prune(self, records: list[ContainerRecord]) -> None:
        """Keep a container's newest two instances (for lastState and logs --previous); drop the rest,
        and the probers of instances that no longer run."""
        rt = self.agent.runtime
        running = {r.id for r in records if r.running}
        for cid in [cid for cid in self.probers if cid not in running]:
            self._stop_probers(cid)
        by_key: dict[tuple[str, str], list[ContainerRecord]] = {}
        for r in records:
            by_key.setdefault((r.role, r.name), []).append(r)
        for instances in by_key.values():
            instances.sort(key=lambda r: r.restart_count, reverse=True)
            for old in instances[KEEP_INSTANCES:]:
                if not old.running:
                    await rt.remove(old.id)

    # --- probes ----------------------------------------------------------------------------------

    def _ensure_probers(self, c: dict[str, Any], r: ContainerRecord) -> dict[str, Prober]:
        probers = self.probers.setdefault(r.id, {})
        startup = probers.get(STARTUP)
        if STARTUP not in probers and c.get("startupProbe"):
            probers[STARTUP] = startup = self._prober(STARTUP, c["startupProbe"], c, r)
        if startup is not None and startup.result.ok is not True:
            return probers   # liveness and readiness wait for the startup probe
        for kind, field in ((LIVENESS, "livenessProbe"), (READINESS, "readinessProbe")):
            if kind not in probers and c.get(field):
                probers[kind] = self._prober(kind, c[field], c, r)
        return probers

    def _prober(self, kind: str, spec: dict[str, Any], c: dict[str, Any], r: ContainerRecord) -> Prober:
        rt = self.agent.runtime

        def pod_ip() -> str:
            if (self.pod.get("spec") or {}).get("hostNetwork") or self._sandbox is None:
                return self.agent.node_ip
            return self._sandbox.ip or self.agent.node_ip

        async def exec_fn(cmd: list[str], timeout: float) -> tuple[int, bytes]:
            return await rt.exec(r.id, cmd, timeout)

        p = Prober(kind, spec, container=c, pod_ip=pod_ip, exec_fn=exec_fn, on_change=self.wake)
        p.start()
        if kind == READINESS and not int(spec.get("initialDelaySeconds") or 0):
            self._fresh_readiness.append(p)
        return p

    def _stop_probers(self, cid: str) -> None:
        for p in self.probers.pop(cid, {}).values():
            p.stop()

    def _probe_views(self, records: list[ContainerRecord]) -> tuple[dict[str, bool], dict[str, bool]]:
        ready: dict[str, bool] = {}
        started: dict[str, bool] = {}
        specs = {c["name"]: c for c in (self.pod.get("spec") or {}).get("containers") or []}
        for r in records:
            if r.role != APP or not r.running or r.name not in specs:
                continue
            c = specs[r.name]
            probers = self._ensure_probers(c, r)
            if c.get("startupProbe"):
                started[r.name] = probers[STARTUP].result.ok is True
            if c.get("readinessProbe"):
                p = probers.get(READINESS)
                ready[r.name] = p is not None and p.result.ok is True
        return ready, started

    # --- reporting -------------------------------------------------------------------------------

    async def report(self, pod: dict[str, Any], new: dict[str, Any], causation: int | None) -> None:
        # Nulls (lastProbeTime: null) are dropped as the server stores them, so that equal means equal.
        new = _without_nulls(new)
        current = _without_nulls(pod.get("status") or {})
        if new == current:
            return
        rv = int(pod["metadata"].get("resourceVersion") or 0)
        if rv < self.written_rv and new == self.last_written:
            return   # the informer has not caught up with our own last write yet
        patch = {"status": {**new, **{k: None for k in current if k not in new}}}
        m = pod["metadata"]
        out = await self.agent.client.patch("pods", m["name"], patch, namespace=m.get("namespace"), type="merge",
                                            subresource="status", causation=causation)
        self.last_written = new
        self.written_rv = int((out.get("metadata") or {}).get("resourceVersion") or 0)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
