"""epctl as a user runs it: a child process reading KUBECONFIG, against a real API server
running in the test's event loop (so epctl runs as an asyncio subprocess: the
server must keep serving while the test waits). Where kubectl is installed,
epctl's tables and error lines are compared with kubectl's own.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass

import pytest
import yaml

from eventplane.api.natsapi import NatsApi

EPCTL = [sys.executable, "-m", "eventplane.cli.epctl"]
_ids = itertools.count(1)

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: web}
data:
  color: blue
---
# a comment-only document is skipped
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - port: 80
"""
APPLIED = """\
namespace/shop serverside-applied
configmap/settings serverside-applied
deployment.apps/web serverside-applied
service/web serverside-applied
"""


@dataclass
class Run:
    code: int
    out: str
    err: str


def _env(api, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTPLANE_")}
    return {**env, "KUBECONFIG": str(api.kubeconfig), "HOME": str(api.kubeconfig.parent), **(extra or {})}


async def epctl(api, *args: str, input: str | None = None, env: dict[str, str] | None = None,
                command: list[str] = EPCTL) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *command, *args, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(api, env))
    try:
        out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Run(proc.returncode, out.decode(), err.decode())


async def ok(api, *args: str, **kw) -> str:
    r = await epctl(api, *args, **kw)
    assert r.code == 0, f"epctl {' '.join(args)} failed ({r.code}):\n{r.err}\n{r.out}"
    return r.out


def ages_masked(text: str) -> str:
    """Tables carry AGE: two runs a second apart differ there only."""
    return re.sub(r"\b\d+[smhd]\b", "AGE", text)


@pytest.fixture
def manifests(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text(MANIFESTS)
    return path


async def test_apply_get_delete(api, manifests):
    r = await epctl(api, "apply", "-f", str(manifests))
    assert (r.code, r.out) == (0, APPLIED), r.err
    # Applying again changes nothing and says the same.
    assert await ok(api, "apply", "-f", str(manifests)) == APPLIED

    table = await ok(api, "get", "deployments", "-n", "shop")
    header, row = table.splitlines()
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[0] == "web"
    wide = (await ok(api, "get", "deploy/web", "-n", "shop", "-o", "wide")).splitlines()
    assert wide[0].split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[-3:] == ["web", "nginx:1.27", "app=web"]

    obj = yaml.safe_load(await ok(api, "get", "deploy", "web", "-n", "shop", "-o", "yaml"))
    assert (obj["kind"], obj["spec"]["replicas"]) == ("Deployment", 2)
    assert obj["metadata"]["managedFields"][0]["manager"] == "epctl"
    listed = json.loads(await ok(api, "get", "configmaps", "-n", "shop", "-o", "json"))
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["settings"]

    names = await ok(api, "get", "cm,svc,deploy", "-n", "shop", "-l", "app=web", "-o", "name")
    assert names == "configmap/settings\nservice/web\ndeployment.apps/web\n"
    assert await ok(api, "get", "cm", "-n", "shop", "-l", "app!=web", "-o", "name") == ""
    assert await ok(api, "get", "cm", "-n", "shop", "--field-selector", "metadata.name=settings",
                    "-o", "name") == "configmap/settings\n"
    everywhere = (await ok(api, "get", "deploy", "-A")).splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"] and everywhere[1].split()[:2] == ["shop", "web"]

    r = await epctl(api, "delete", "deployment/web", "-n", "shop")
    assert (r.code, r.out) == (0, 'deployment.apps "web" deleted\n'), r.err
    r = await epctl(api, "get", "deploy", "web", "-n", "shop")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): deployments.apps "web" not found\n')
    r = await epctl(api, "delete", "cm", "-l", "app=web", "-n", "shop")
    assert (r.code, r.out) == (0, 'configmap "settings" deleted\n'), r.err
    # No namespace controller runs here to finalize the namespace: do not wait for it.
    r = await epctl(api, "delete", "-f", str(manifests), "--wait=false")
    assert r.code == 1  # the deployment and configmap are gone already
    assert 'service "web" deleted' in r.out and 'namespace "shop" deleted' in r.out
    assert 'Error from server (NotFound): deployments.apps "web" not found' in r.err


async def test_errors_and_empty_answers(api, tmp_path):
    r = await epctl(api, "get", "widgets")
    assert (r.code, r.err) == (1, 'error: the server doesn\'t have a resource type "widgets"\n')
    r = await epctl(api, "get", "configmaps", "-n", "kube-public")
    assert (r.code, r.out, r.err) == (0, "", "No resources found in kube-public namespace.\n")
    r = await epctl(api, "delete", "configmaps")
    assert (r.code, r.err) == (1, "error: resource(s) were provided, but no name was specified\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n---\n"
                   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n")
    r = await epctl(api, "apply", "-f", str(bad))
    assert r.code == 1 and r.out == "configmap/fine serverside-applied\n"
    assert r.err.startswith("Error from server (Invalid): ")
    r = await epctl(api, "apply", "-f", "-", "-n", "default",
                    input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: other\n")
    assert r.code == 1 and "does not match the namespace" in r.err
    r = await epctl(api, "get", "pods", env={"KUBECONFIG": str(tmp_path / "missing")})
    assert r.code == 1 and r.err.startswith("error: no kubeconfig at ")


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
async def test_tables_and_errors_read_as_kubectl(api, manifests):
    await ok(api, "apply", "-f", str(manifests))
    kubectl = [shutil.which("kubectl")]
    for args in (["get", "deploy", "-n", "shop"], ["get", "deploy", "-n", "shop", "-o", "wide"],
                 ["get", "svc,cm", "-n", "shop"], ["get", "ns"], ["get", "deploy", "-A", "--show-labels"]):
        theirs = await epctl(api, *args, command=kubectl)
        ours = await epctl(api, *args)
        assert ages_masked(ours.out) == ages_masked(theirs.out), f"{args}:\n{ours.out}\nkubectl:\n{theirs.out}"
    for args in (["get", "deploy", "nope", "-n", "shop"], ["get", "widgets"]):
        theirs = await epctl(api, *args, command=kubectl)
        ours = await epctl(api, *args)
        assert (ours.code, ours.err) == (theirs.code, theirs.err)


async def test_via_nats(api, servers, manifests):
    prefix = f"t{os.getpid()}x{next(_ids)}.api"
    env = {"EVENTPLANE_NATS_URL": servers.nats_url}
    async with NatsApi(api.server, prefix=prefix):
        nats = ["--via", "nats", "--nats-prefix", prefix]
        r = await epctl(api, *nats, "apply", "-f", str(manifests), env=env)
        assert (r.code, r.out) == (0, APPLIED), r.err
        over_nats = await ok(api, *nats, "get", "deploy,svc", "-n", "shop", env=env)
        over_rest = await ok(api, "get", "deploy,svc", "-n", "shop")
        assert ages_masked(over_nats) == ages_masked(over_rest)
        assert await ok(api, "get", "cm", "-n", "shop", "-l", "app=web", "-o", "name", *nats, env=env) == \
            "configmap/settings\n"
        r = await epctl(api, *nats, "get", "deploy", "nope", "-n", "shop", env=env)
        assert (r.code, r.err) == (1, 'Error from server (NotFound): deployments.apps "nope" not found\n')
        r = await epctl(api, *nats, "delete", "-f", str(manifests), "--wait=false", env=env)
        assert r.code == 0, r.err
        assert r.out.splitlines() == ['namespace "shop" deleted', 'configmap "settings" deleted',
                                      'deployment.apps "web" deleted', 'service "web" deleted']
    r = await epctl(api, "--via", "nats", "get", "pods", env={})
    assert r.code == 1 and r.err.startswith("error: no nats url")
