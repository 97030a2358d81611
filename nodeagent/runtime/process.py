"""The process runtime, for machines without Docker: each container's command runs as a
host process. NOT ISOLATED — no namespaces, no cgroups, no image (it is ignored).

Fed by the pod worker exactly as the Docker runtime is. Each container instance
is a directory under the runtime's state directory holding `meta.json` (its
labels, the supervisor's pid and start time), `spec.json` (env, working
directory, rlimits), `log` (stdout and stderr) and, once it ended, `exit`.
A supervisor process (supervise.py) per container writes the exit code, so a
restarted agent finds every container again — running or exited — from these
directories alone, as it finds Docker containers by their labels.

Volumes, without a mount namespace: the pod's volumes are prepared as for
Docker (volumes.py: directories with the ConfigMap, Secret and downward-API
files, emptyDirs, host paths), and each container gets a directory of its own
that stands for its root file system, `$EVENTPLANE_ROOT` in its env (also its
working directory when the spec names none): every volumeMount is a symlink
there, `$EVENTPLANE_ROOT/<mountPath>` → the volume's directory (or its
subPath). A program reads `$EVENTPLANE_ROOT/etc/config/key` where in a real
container it would read `/etc/config/key`: nothing is mounted, the mountPath
itself is never created on the host, `readOnly` is not enforced (the files are
the agent's, written with their modes; a process of the same user may change
them), and a mountPath nested in another mount's is skipped (its symlink would
land inside the outer volume). A workingDir under a mountPath is the volume's
directory. emptyDir `medium: Memory` that the agent could not mount is a
plain directory under the container's.

What else it cannot do, plainly: the pod's IP is the node's, ports are the host's, memory limits
are an address-space rlimit (an allocation fails instead of an OOM kill),
CPU limits and requests are ignored, and readOnlyRootFilesystem, capabilities
and privileged have no effect (privileged is still refused unless allowed).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from . import (APP, CONTAINER_NAME, INFRA, MANAGED, NODE, POD_NAME, POD_NAMESPACE, POD_UID, RESTART_COUNT, ROLE,
               SPEC_HASH, ContainerConfig, ContainerRecord, ContainerStartError, Mount)

log = logging.getLogger("eventplane.nodeagent.process")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Run as a script, not `-m`: importing the nodeagent package would cost every start half a second.
SUPERVISOR = str(Path(__file__).with_name("supervise.py"))
ROOT_ENV = "EVENTPLANE_ROOT"   # the container's stand-in root: its volumeMounts are symlinks there


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class ProcessRuntime:
    name = "process"

    def __init__(self, node: str, state_dir: Path, *, host_ip: str | None = None,
                 allow_privileged: bool = False) -> None:
        from ..node import node_ip

        self.node = node
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host_ip = host_ip or node_ip()
        self.allow_privileged = allow_privileged
        self._changes: asyncio.Queue[str] = asyncio.Queue()
        self._children: dict[str, asyncio.subprocess.Process] = {}

    async def close(self) -> None:
        self._children.clear()   # the processes keep running: a restarted agent adopts them

    async def version(self) -> str:
        return "process://0.1"

    # --- observing -------------------------------------------------------------------------------

    def _meta(self, cid: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / cid / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def _record(self, cid: str, meta: dict[str, Any]) -> ContainerRecord:
        labels = meta.get("labels") or {}
        d = self.dir / cid
        exit_file = d / "exit"
        pid = int(meta.get("pid") or 0)
        if labels.get(ROLE) == INFRA:
            state = "exited" if (d / "stopped").exists() else "running"
            code = 0 if state == "exited" else None
        elif exit_file.exists():
            state, code = "exited", int(exit_file.read_text().strip() or 0)
        elif pid and _alive(pid):
            state, code = "running", None
        else:
            state, code = "exited", 137   # killed with its supervisor (SIGKILL of the group)
        finished = meta.get("finishedAt") or (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(
            (exit_file if exit_file.exists() else d / "meta.json").stat().st_mtime)) if state == "exited" else None)
        return ContainerRecord(
            id=cid, pod_uid=labels.get(POD_UID, ""), pod_namespace=labels.get(POD_NAMESPACE, ""),
            pod_name=labels.get(POD_NAME, ""), name=labels.get(CONTAINER_NAME, ""), role=labels.get(ROLE, APP),
            restart_count=int(labels.get(RESTART_COUNT, "0") or 0), image=meta.get("image", ""), image_id="",
            state=state, exit_code=code, started_at=meta.get("startedAt"), finished_at=finished,
            ip=self.host_ip if labels.get(ROLE) == INFRA else "", spec_hash=labels.get(SPEC_HASH, ""), labels=labels)

    async def containers(self, pod_uid: str | None = None) -> list[ContainerRecord]:
        out = []
        for d in self.dir.iterdir():
            meta = self._meta(d.name)
            if meta is None:
                continue
            labels = meta.get("labels") or {}
            if labels.get(NODE) != self.node or (pod_uid and labels.get(POD_UID) != pod_uid):
                continue
            out.append(self._record(d.name, meta))
        return out

    async def changes(self) -> AsyncIterator[str]:
        watcher = asyncio.create_task(self._watch_adopted())
        try:
            while True:
                yield await self._changes.get()
        finally:
            watcher.cancel()

    async def _watch_adopted(self) -> None:
        """Processes an earlier agent started are not our children, so no wait() tells us they ended:
        a pidfd per process does (the kernel makes it readable at the exit), and nothing is polled.
        Processes started from now on are our children (run_container reaps them)."""
        loop = asyncio.get_running_loop()
        watched: dict[str, int] = {}

        def ended(cid: str, uid: str) -> None:
            fd = watched.pop(cid)
            loop.remove_reader(fd)
            os.close(fd)
            self._changes.put_nowait(uid)

        try:
            for r in await self.containers():
                if r.role == INFRA or r.id in self._children or not r.running:
                    continue
                pid = int((self._meta(r.id) or {}).get("pid") or 0)
                try:
                    fd = os.pidfd_open(pid)
                except OSError:      # ended meanwhile
                    self._changes.put_nowait(r.pod_uid)
                    continue
                watched[r.id] = fd
                loop.add_reader(fd, ended, r.id, r.pod_uid)
            await asyncio.Event().wait()
        finally:
            for fd in watched.values():
                loop.remove_reader(fd)
                os.close(fd)

    # --- running ---------------------------------------------------------------------------------

    async def ensure_image(self, image: str, policy: str) -> str:
        return ""   # images mean nothing here: the command runs on the host

    def _new(self, labels: dict[str, str], image: str) -> tuple[str, Path]:
        cid = uuid.uuid4().hex
        d = self.dir / cid
        d.mkdir(parents=True)
        return cid, d

    async def run_sandbox(self, pod: dict[str, Any], labels: dict[str, str]) -> ContainerRecord:
        cid, d = self._new(labels, "")
        meta = {"labels": {**labels, MANAGED: "true"}, "startedAt": _now(), "pid": 0, "image": ""}
        (d / "meta.json").write_text(json.dumps(meta))
        return self._record(cid, meta)

    async def run_container(self, config: ContainerConfig, sandbox: ContainerRecord | None) -> str:
        if config.privileged and not self.allow_privileged:
            raise ContainerStartError("CreateContainerConfigError",
                                      "privileged containers are not allowed on this node")
        argv = list(config.command or ()) + list(config.args or ())
        if not argv:
            raise ContainerStartError("CreateContainerConfigError",
                                      "the process runtime needs a command: it has no image to take one from")
        cid, d = self._new(config.labels, config.image)
        root = mount_view(d, config)
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": config.labels.get(POD_NAME, ""), ROOT_ENV: str(root),
               **dict(config.env)}
        cwd = str(root)
        if config.working_dir:
            mapped = host_path_of(config, config.working_dir)
            if os.path.isdir(mapped):
                cwd = mapped
        (d / "spec.json").write_text(json.dumps({"env": env, "cwd": cwd, "memory_limit": config.memory_limit,
                                                 "run_as_user": config.run_as_user,
                                                 "run_as_group": config.run_as_group}))
        meta = {"labels": config.labels, "image": config.image, "startedAt": _now(), "pid": 0}
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, SUPERVISOR, str(d), "--", *argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            shutil.rmtree(d, ignore_errors=True)
            raise ContainerStartError("RunContainerError", str(exc)) from None
        meta["pid"] = proc.pid
        (d / "meta.json").write_text(json.dumps(meta))
        self._children[cid] = proc
        uid = config.labels.get(POD_UID, "")

        async def reap() -> None:
            await proc.wait()
            self._children.pop(cid, None)
            self._changes.put_nowait(uid)

        asyncio.ensure_future(reap())
        return cid

    async def stop(self, cid: str, grace: float) -> None:
        meta = self._meta(cid)
        if meta is None:
            return
        d = self.dir / cid
        if (meta.get("labels") or {}).get(ROLE) == INFRA:
            (d / "stopped").touch()
            return
        pid = int(meta.get("pid") or 0)
        if not pid or not _alive(pid) or (d / "exit").exists():
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid) and not (d / "exit").exists():
            await asyncio.sleep(0.05)
        if _alive(pid) and not (d / "exit").exists():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            (d / "exit").write_text("137")
        # the supervisor may still be writing the exit file: give it a moment
        for _ in range(20):
            if (d / "exit").exists():
                break
            await asyncio.sleep(0.05)

    async def remove(self, cid: str) -> None:
        if self._meta(cid) is not None:
            await self.stop(cid, 0)
        shutil.rmtree(self.dir / cid, ignore_errors=True)

    async def exec(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        d = self.dir / cid
        try:
            spec = json.loads((d / "spec.json").read_text())
        except (OSError, ValueError):
            spec = {}
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, env=spec.get("env") or None,
                                                    cwd=spec.get("cwd") or None)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out

    async def exec_session(self, cid: str, cmd: list[str], *, tty: bool, stdin: bool) -> ProcessExec:
        """A host process with the container's env and directory (no TTY: the process runtime has none)."""
        try:
            spec = json.loads((self.dir / cid / "spec.json").read_text())
        except (OSError, ValueError):
            spec = {}
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=spec.get("env") or None,
            cwd=spec.get("cwd") or None)
        return ProcessExec(proc)

    async def follow_logs(self, cid: str, *, tail: int | None = None, timestamps: bool = False,
                          since: float | None = None) -> AsyncIterator[bytes]:
        """The log file as it grows, until the process ended and everything was read."""
        path = self.dir / cid / "log"
        yield await self.logs(cid, tail=tail)
        offset = path.stat().st_size if path.exists() else 0
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size > offset:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read(size - offset)
                offset = size
                yield data
            meta = self._meta(cid)
            if meta is None or not self._record(cid, meta).running:
                return
            await asyncio.sleep(0.2)

    async def logs(self, cid: str, *, tail: int | None = None, timestamps: bool = False,
                   since: float | None = None) -> bytes:
        try:
            data = (self.dir / cid / "log").read_bytes()
        except OSError:
            return b""
        if tail is not None:
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail > 0 else b""
        return data


def _source(m: Mount) -> str:
    return os.path.join(m.host_path, m.sub_path) if m.sub_path else m.host_path


def mount_view(d: Path, config: ContainerConfig) -> Path:
    """`d/root`: a symlink per volumeMount at its mountPath, to the volume's directory (a subPath made
    when missing, as the kubelet does); tmpfs paths as plain directories under `d/tmpfs`."""
    root = d / "root"
    root.mkdir(exist_ok=True)
    links = [(m.container_path, _source(m), m.sub_path) for m in config.mounts]
    for i, (path, _size) in enumerate(config.tmpfs):
        links.append((path, str(d / "tmpfs" / str(i)), "tmpfs"))
    for path, source, sub in sorted(links, key=lambda x: x[0].count("/")):
        rel = os.path.normpath(path).lstrip("/")
        if not rel or rel.startswith(".."):
            continue
        link = root / rel
        if not str(link.parent.resolve()).startswith(str(root.resolve())) or os.path.lexists(link):
            log.info("process runtime: mountPath %s of container %s is inside another mount: skipped",
                     path, config.name)
            continue
        if sub and not os.path.exists(source):
            os.makedirs(source, exist_ok=True)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
    return root


def host_path_of(config: ContainerConfig, path: str) -> str:
    """Where `path` of the container is on the host: under the deepest mount that holds it, else
    `path` itself (the host's file system is the process's)."""
    best: Mount | None = None
    norm = os.path.normpath(path)
    for m in config.mounts:
        mp = os.path.normpath(m.container_path)
        if (norm == mp or norm.startswith(mp.rstrip("/") + "/")) and (best is None or len(mp) > len(best.container_path)):
            best = m
    if best is None:
        return path
    rest = os.path.relpath(norm, os.path.normpath(best.container_path))
    return os.path.normpath(os.path.join(_source(best), rest))


class ProcessExec:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._open = 2
        for channel, stream in ((1, proc.stdout), (2, proc.stderr)):
            asyncio.ensure_future(self._pump(channel, stream))

    async def _pump(self, channel: int, stream: asyncio.StreamReader | None) -> None:
        while stream is not None and (data := await stream.read(65536)):
            await self._queue.put((channel, data))
        self._open -= 1
        if self._open == 0:
            await self._queue.put(None)

    async def read(self) -> tuple[int, bytes] | None:
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    async def resize(self, height: int, width: int) -> None:
        pass

    async def exit_code(self) -> int:
        return await self.proc.wait()

    def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
