"""What a node agent asks of a container runtime, and what a runtime reports back.

The pod worker (worker.py) turns a pod's spec into ContainerConfigs (what to
run, already resolved: env values, host paths of volumes, cgroup numbers) and
hands them to a Runtime; the runtime answers with ContainerRecords — what it
observes of each container instance, found again by its labels after any
restart of the agent. Two runtimes implement the protocol: docker.py (an infra
container per pod holding the network namespace, containers joining it) and
process.py (host processes, not isolated).
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

# Labels every container of ours carries: who it belongs to, so that a restarted agent adopts it.
MANAGED = "io.eventplane.managed"
NODE = "io.eventplane.node"
ROLE = "io.eventplane.role"                    # infra | init | app
POD_UID = "io.kubernetes.pod.uid"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_NAME = "io.kubernetes.pod.name"
CONTAINER_NAME = "io.kubernetes.container.name"
RESTART_COUNT = "io.kubernetes.container.restartCount"
SPEC_HASH = "io.eventplane.container.hash"
GRACE = "io.eventplane.pod.terminationGracePeriod"

INFRA, INIT, APP = "infra", "init", "app"


class ImagePullError(Exception):
    """The image is not there and cannot be pulled; `reason` is ErrImagePull or ErrImageNeverPull."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ContainerStartError(Exception):
    """The runtime refused to create or start a container (RunContainerError, CreateContainerError)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False
    sub_path: str = ""


@dataclass(frozen=True)
class ContainerConfig:
    """One container instance to run, fully resolved."""

    name: str
    role: str
    image: str
    command: tuple[str, ...] | None = None    # the image's entrypoint when None
    args: tuple[str, ...] | None = None       # the image's cmd when None
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = ""
    ports: tuple[tuple[int, str], ...] = ()   # (containerPort, protocol)
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[tuple[str, int | None], ...] = ()   # (path, size bytes or None)
    memory_limit: int | None = None           # bytes
    cpu_limit_milli: int | None = None
    cpu_request_milli: int | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    read_only_root: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    hostname: str = ""
    stdin: bool = False           # spec.stdin: keep stdin open for `kubectl attach -i`
    stdin_once: bool = False
    tty: bool = False
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ContainerRecord:
    """One container instance as the runtime sees it now."""

    id: str
    pod_uid: str
    pod_namespace: str
    pod_name: str
    name: str                     # the container's name in the pod spec; "" for the infra container
    role: str
    restart_count: int
    image: str
    image_id: str = ""
    state: str = "created"        # created | running | exited
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    started_at: str | None = None     # RFC 3339, seconds
    finished_at: str | None = None
    ip: str = ""                      # the pod's address (infra container)
    spec_hash: str = ""
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def exited(self) -> bool:
        return self.state == "exited"


class Runtime(Protocol):
    name: str          # docker | process

    async def version(self) -> str:
        """`docker://20.10.24`: Node.status.nodeInfo.containerRuntimeVersion."""

    async def containers(self, pod_uid: str | None = None) -> list[ContainerRecord]:
        """Every container instance of this node (or of one pod), infra containers included."""

    async def ensure_image(self, image: str, policy: str) -> str:
        """Make `image` present according to imagePullPolicy; its image id. Raises ImagePullError."""

    async def run_sandbox(self, pod: dict, labels: dict[str, str]) -> ContainerRecord:
        """Create and start the pod's infra container (network namespace); its record, with ip."""

    async def run_container(self, config: ContainerConfig, sandbox: ContainerRecord | None) -> str:
        """Create and start a container in the sandbox; its id. Raises ContainerStartError."""

    async def stop(self, cid: str, grace: float) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL."""

    async def remove(self, cid: str) -> None: ...

    async def exec(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        """Run a command inside a running container: (exit code, stdout + stderr)."""

    async def logs(self, cid: str, *, tail: int | None = None, timestamps: bool = False,
                   since: float | None = None) -> bytes:
        """stdout and stderr as written (`since`: unix seconds)."""

    def follow_logs(self, cid: str, *, tail: int | None = None, timestamps: bool = False,
                    since: float | None = None) -> AsyncIterator[bytes]:
        """The same, then what is written next, until the container stops."""

    def changes(self) -> AsyncIterator[str]:
        """Pod uids whose containers changed state (died, were OOM-killed) — what wakes a worker."""

    async def close(self) -> None: ...


class SplitStarts(Protocol):
    """What a runtime whose starts are slow may add (docker.py does; process.py, whose starts take
    milliseconds, does not): create and start as separate steps, so that the worker creates a pod's first
    container while its sandbox starts (the engine makes the network namespace then, the longest step)."""

    async def create_sandbox(self, pod: dict, labels: dict[str, str]) -> str:
        """The infra container, created, not started; its id."""

    async def start_sandbox(self, sid: str) -> ContainerRecord:
        """Start it; its record, with ip."""

    async def create_container(self, config: ContainerConfig, sandbox: ContainerRecord | None) -> str:
        """Create a container joining a sandbox that need only be created yet; its id."""

    async def start_container(self, cid: str) -> None:
        """Start it (its sandbox must run by now). Raises ContainerStartError."""
