"""Static pods: Pod manifests in a folder on the node, mirrored into the API.

Fed by the files of `--pod-manifest-path` (YAML or JSON, one or more Pods per file), looked at
every few seconds as the kubelet does; consumes nothing else. For each manifest the agent keeps
a mirror pod in the API — named `<name>-<node>`, bound to this node, annotated
`kubernetes.io/config.mirror` (the manifest's hash) and `kubernetes.io/config.source: file`,
owned by the Node — and the mirror pod then runs through the agent's ordinary pod workers. A
changed manifest replaces its mirror pod, a removed one deletes it, and a mirror pod deleted
through the API is created again. A create is caused by a file, not by an event, so it carries
no causation; the deletes carry the mirror pod's position.

Departure from the kubelet: the kubelet runs a static pod from the file itself, even with no API
server; here a static pod starts once its mirror pod exists (afterwards it keeps running without
the API, as every pod does).
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from eventplane.objects import errors
from reconcilers.informer import causation_of

log = logging.getLogger("eventplane.nodeagent.staticpods")

PERIOD = 5.0
MIRROR = "kubernetes.io/config.mirror"
SOURCE = "kubernetes.io/config.source"
HASH = "kubernetes.io/config.hash"


def load_manifests(folder: Path) -> list[dict[str, Any]]:
    pods = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml", ".json"):
            continue
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            log.warning("static pod manifest %s: %s", path, exc)
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Pod" and (doc.get("metadata") or {}).get("name"):
                pods.append(doc)
            elif doc is not None:
                log.warning("static pod manifest %s: not a Pod with a name; skipped", path)
    return pods


def mirror_of(manifest: dict[str, Any], node: str, node_uid: str | None) -> dict[str, Any]:
    pod = copy.deepcopy(manifest)
    meta = pod.setdefault("metadata", {})
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:32]
    meta["name"] = f"{meta['name']}-{node}"
    meta.setdefault("namespace", "default")
    meta["annotations"] = {**(meta.get("annotations") or {}), MIRROR: digest, HASH: digest, SOURCE: "file"}
    if node_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid,
                                    "controller": True}]
    for key in ("uid", "resourceVersion", "creationTimestamp"):
        meta.pop(key, None)
    pod.pop("status", None)
    pod.setdefault("spec", {})["nodeName"] = node
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    return pod


class StaticPods:
    def __init__(self, agent: Any, folder: Path | str) -> None:
        self.agent = agent
        self.folder = Path(folder)

    async def run(self) -> None:
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # the API away: the next round tries again
                log.warning("static pods in %s: %s", self.folder, exc)
            await asyncio.sleep(PERIOD)

    async def sync(self) -> None:
        agent = self.agent
        informer = agent.informer
        if informer is None or not informer.has_synced:
            return
        client, node = agent.client, agent.node_name
        node_uid = ((await client.get("nodes", node)).get("metadata") or {}).get("uid")
        desired = {}
        for manifest in load_manifests(self.folder):
            pod = mirror_of(manifest, node, node_uid)
            desired[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod
        existing = {(p["metadata"].get("namespace"), p["metadata"]["name"]): p for p in informer.store.list()
                    if (p["metadata"].get("annotations") or {}).get(MIRROR)}
        for key, pod in desired.items():
            current = existing.get(key)
            want = pod["metadata"]["annotations"][MIRROR]
            if current is not None and current["metadata"]["annotations"].get(MIRROR) == want:
                continue
            if current is not None:
                if current["metadata"].get("deletionTimestamp"):
                    continue   # the old one is on its way out; created again once it is gone
                log.info("static pod %s/%s changed: replacing its mirror pod", *key)
                await client.delete("pods", key[1], namespace=key[0], causation=causation_of(current))
                continue
            try:
                await client.create(pod, namespace=key[0])
                log.info("static pod %s/%s mirrored into the API", *key)
            except errors.AlreadyExistsError:
                pass
        for key, current in existing.items():
            if key not in desired and not current["metadata"].get("deletionTimestamp"):
                log.info("static pod %s/%s: its manifest is gone; deleting the mirror pod", *key)
                try:
                    await client.delete("pods", key[1], namespace=key[0], causation=causation_of(current))
                except errors.NotFoundError:
                    pass
