"""A pod's volumes as directories on the node, ready to be bind-mounted.

Fed by the pod worker before it starts the pod's first container; the paths it
returns go into the ContainerConfigs (containers.py). Each volume lives under
`<root>/pods/<uid>/volumes/<name>`:

- emptyDir: an empty directory; `medium: Memory` is a tmpfs mounted there when
  the agent may mount (root), so that every container of the pod shares it —
  otherwise each container gets its own tmpfs from the runtime (noted in docs);
- hostPath: the host's path itself, created for DirectoryOrCreate/FileOrCreate,
  checked for Directory/File/Socket…;
- configMap, secret, downwardAPI, projected: files written from the API
  objects (keys or `items`, with their modes), read-only in the container;
- persistentVolumeClaim: the bound PersistentVolume's local or hostPath path.

A missing ConfigMap/Secret/PVC raises VolumeError; the worker reports it and
tries again on its next sync.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .containers import Refs, field_value, resource_value


class VolumeError(Exception):
    reason = "FailedMount"


class PodVolumes:
    def __init__(self, root: Path, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.dir = root / "pods" / pod["metadata"]["uid"] / "volumes"
        self.paths: dict[str, tuple[str, bool]] = {}         # name → (host path, forced read-only)
        self.memory: dict[str, int | None] = {}              # emptyDir Memory volumes left to the runtime

    async def prepare(self, refs: Refs, node_allocatable: dict[str, str]) -> None:
        for v in (self.pod.get("spec") or {}).get("volumes") or []:
            name = v.get("name", "")
            if name in self.paths or name in self.memory:
                continue
            await self._one(name, v, refs, node_allocatable)

    async def _one(self, name: str, v: dict[str, Any], refs: Refs, alloc: dict[str, str]) -> None:
        target = self.dir / name
        if "emptyDir" in v:
            ed = v.get("emptyDir") or {}
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, 0o777)
            if ed.get("medium") == "Memory":
                size = _size(ed.get("sizeLimit"))
                if not _mount_tmpfs(target, size):
                    self.memory[name] = size
                    return
            self.paths[name] = (str(target), False)
        elif "hostPath" in v:
            hp = v["hostPath"] or {}
            path, kind = hp.get("path", ""), hp.get("type", "") or ""
            _check_host_path(name, path, kind)
            self.paths[name] = (path, False)
        elif "configMap" in v:
            src = v["configMap"] or {}
            data = await refs.configmap_data(src.get("name", ""))
            if data is None and not src.get("optional"):
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : configmap '
                                  f'"{src.get("name")}" not found')
            files = _select(name, {k: v.encode() for k, v in (data or {}).items()}, src)
            self._write(name, target, files, src.get("defaultMode", 0o644))
        elif "secret" in v:
            src = v["secret"] or {}
            sdata = await refs.secret_data(src.get("secretName", ""))
            if sdata is None and not src.get("optional"):
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : secret '
                                  f'"{src.get("secretName")}" not found')
            files = _select(name, sdata or {}, src)
            self._write(name, target, files, src.get("defaultMode", 0o644))
        elif "downwardAPI" in v:
            src = v["downwardAPI"] or {}
            self._write(name, target, self._downward(src.get("items") or [], alloc), src.get("defaultMode", 0o644))
        elif "projected" in v:
            src = v["projected"] or {}
            files: dict[str, tuple[bytes, int | None]] = {}
            for s in src.get("sources") or []:
                if s.get("configMap"):
                    c = s["configMap"]
                    data = await refs.configmap_data(c.get("name", ""))
                    if data is None and not c.get("optional"):
                        raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : configmap '
                                          f'"{c.get("name")}" not found')
                    files.update(_select(name, {k: x.encode() for k, x in (data or {}).items()}, c))
                elif s.get("secret"):
                    c = s["secret"]
                    sdata = await refs.secret_data(c.get("name", ""))
                    if sdata is None and not c.get("optional"):
                        raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : secret '
                                          f'"{c.get("name")}" not found')
                    files.update(_select(name, sdata or {}, c))
                elif s.get("downwardAPI"):
                    files.update(self._downward(s["downwardAPI"].get("items") or [], alloc))
                # serviceAccountToken and clusterTrustBundle sources need TokenRequest: not served yet.
            self._write(name, target, files, src.get("defaultMode", 0o644))
        elif "persistentVolumeClaim" in v:
            claim = (v["persistentVolumeClaim"] or {}).get("claimName", "")
            pvc = await refs.get("persistentvolumeclaims", claim)
            if pvc is None:
                raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
            pv_name = (pvc.get("spec") or {}).get("volumeName")
            if not pv_name:
                raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound')
            pv = await refs.get("persistentvolumes", pv_name, namespaced=False)
            spec = (pv or {}).get("spec") or {}
            path = (spec.get("local") or {}).get("path") or (spec.get("hostPath") or {}).get("path")
            if not path:
                raise VolumeError(f'persistentvolume "{pv_name}" has no local or hostPath path this node can mount')
            Path(path).mkdir(parents=True, exist_ok=True)
            self.paths[name] = (path, bool((v["persistentVolumeClaim"] or {}).get("readOnly")))
        else:
            kinds = [k for k in v if k != "name"]
            raise VolumeError(f'volume "{name}": {", ".join(kinds) or "no"} volumes are not supported by this node')

    def _downward(self, items: list[dict[str, Any]], alloc: dict[str, str]) -> dict[str, tuple[bytes, int | None]]:
        out: dict[str, tuple[bytes, int | None]] = {}
        for item in items:
            if item.get("fieldRef"):
                value = field_value(self.pod, item["fieldRef"].get("fieldPath", ""))
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                c = next((c for c in (self.pod.get("spec") or {}).get("containers") or []
                          if c.get("name") == ref.get("containerName")), {})
                value = resource_value(c, ref, alloc)
            else:
                continue
            out[item.get("path", "")] = (value.encode(), item.get("mode"))
        return out

    def _write(self, name: str, target: Path, files: dict[str, tuple[bytes, int | None]], default_mode: int) -> None:
        # Written in place, never removed first: a running container's bind mount (an adopted pod's,
        # after the agent restarted) must keep seeing this very directory.
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, 0o755)
        for rel, (data, mode) in files.items():
            path = (target / rel).resolve()
            if not str(path).startswith(str(target.resolve()) + os.sep):
                raise VolumeError(f'volume "{name}": path "{rel}" leaves the volume')
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.chmod(path, mode if mode is not None else default_mode)
        self.paths[name] = (str(target), True)

    def cleanup(self) -> None:
        """Unmount tmpfs volumes and remove the pod's directory (after its containers are gone)."""
        root = self.dir.parent
        if self.dir.exists():
            for d in self.dir.iterdir():
                if os.path.ismount(d):
                    subprocess.run(["umount", "-l", str(d)], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _select(volume: str, data: dict[str, bytes], src: dict[str, Any]) -> dict[str, tuple[bytes, int | None]]:
    items = src.get("items")
    if not items:
        return {k: (v, None) for k, v in data.items()}
    out = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if src.get("optional"):
                continue
            raise VolumeError(f'MountVolume.SetUp failed for volume "{volume}" : configmap references non-existent '
                              f'config key: {key}')
        out[item.get("path") or key] = (data[key], item.get("mode"))
    return out


def _size(value: Any) -> int | None:
    if not value:
        return None
    from .containers import _bytes
    return _bytes(value)


def _mount_tmpfs(target: Path, size: int | None) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    if os.path.ismount(target):
        return True
    opts = "mode=1777" + (f",size={size}" if size else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)], capture_output=True,
                          check=False)
    return done.returncode == 0


def _check_host_path(name: str, path: str, kind: str) -> None:
    p = Path(path)
    if kind == "DirectoryOrCreate":
        p.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch(exist_ok=True)
    elif kind == "Directory" and not p.is_dir():
        raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: {path} is '
                          "not a directory")
    elif kind == "File" and not p.is_file():
        raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: {path} is '
                          "not a file")
    elif kind == "Socket" and not p.is_socket():
        raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: {path} is '
                          "not a socket file")
