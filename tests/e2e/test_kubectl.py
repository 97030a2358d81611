"""Acceptance: the real kubectl, unchanged, against eventplane (issue 3)."""
from __future__ import annotations

import asyncio
import json

import pytest

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: web}
data:
  color: blue
"""


async def test_apply_created_configured_unchanged(api):
    out = await api.ok("apply", "-f", "-", input=MANIFEST)
    assert "namespace/shop created" in out and "deployment.apps/web created" in out
    assert "service/web created" in out and "configmap/settings created" in out
    out = await api.ok("apply", "-f", "-", input=MANIFEST.replace("replicas: 2", "replicas: 3"))
    assert "deployment.apps/web configured" in out and "configmap/settings unchanged" in out
    out = await api.ok("apply", "-f", "-", input=MANIFEST.replace("replicas: 2", "replicas: 3"))
    assert "deployment.apps/web unchanged" in out
    d = json.loads(await api.ok("get", "deploy", "web", "-n", "shop", "-o", "json"))
    assert d["spec"]["replicas"] == 3
    assert "kubectl.kubernetes.io/last-applied-configuration" in d["metadata"]["annotations"]


async def test_get_output_formats_and_selectors(api):
    await api.ok("apply", "-f", "-", input=MANIFEST)
    table = await api.ok("get", "deployments", "-n", "shop")
    assert table.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert "web" in table
    wide = await api.ok("get", "deploy", "-n", "shop", "-o", "wide")
    assert "CONTAINERS" in wide and "nginx:1.25" in wide
    assert (await api.ok("get", "cm", "-n", "shop", "-o", "name")).strip() == "configmap/settings"
    assert "color: blue" in await api.ok("get", "configmap", "settings", "-n", "shop", "-o", "yaml")
    assert (await api.ok("get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.data.color}")) == "blue"
    cols = await api.ok("get", "cm", "-n", "shop", "-o", "custom-columns=N:.metadata.name,C:.data.color")
    assert cols.split("\n")[1].split() == ["settings", "blue"]
    assert "settings" in await api.ok("get", "cm", "-A", "-l", "app=web")
    assert "settings" not in await api.ok("get", "cm", "-A", "-l", "app=other")
    assert "settings" in await api.ok("get", "cm", "-A", "--field-selector", "metadata.name=settings")
    svc = await api.ok("get", "svc", "web", "-n", "shop")
    assert "ClusterIP" in svc and "10." in svc


async def test_watch_shows_changes_as_they_happen(api):
    await api.ok("create", "namespace", "w")
    watcher = asyncio.create_task(api.kubectl("get", "cm", "-n", "w", "-w", "--request-timeout=8s",
                                              "-o", "name", timeout=20))
    await asyncio.sleep(1.5)
    await api.ok("create", "configmap", "live", "-n", "w", "--from-literal=a=b")
    r = await watcher
    assert "configmap/live" in r.out


async def test_describe_label_annotate_patch_replace_scale(api):
    await api.ok("apply", "-f", "-", input=MANIFEST)
    assert "Name:" in await api.ok("describe", "deployment", "web", "-n", "shop")
    await api.ok("label", "cm", "settings", "-n", "shop", "tier=front")
    r = await api.kubectl("label", "cm", "settings", "-n", "shop", "tier=back")
    assert r.code != 0 and "--overwrite" in r.err
    await api.ok("label", "cm", "settings", "-n", "shop", "tier=back", "--overwrite")
    await api.ok("annotate", "cm", "settings", "-n", "shop", "note=hello")
    r = await api.kubectl("annotate", "cm", "settings", "-n", "shop", "note=bye")
    assert r.code != 0 and "--overwrite" in r.err
    await api.ok("patch", "deploy", "web", "-n", "shop", "-p", '{"spec":{"replicas":4}}')
    await api.ok("patch", "deploy", "web", "-n", "shop", "--type=merge", "-p", '{"spec":{"replicas":5}}')
    await api.ok("patch", "deploy", "web", "-n", "shop", "--type=json",
                 "-p", '[{"op":"replace","path":"/spec/replicas","value":6}]')
    assert (await api.ok("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}")) == "6"
    await api.ok("scale", "deploy", "web", "-n", "shop", "--replicas=2")
    assert (await api.ok("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}")) == "2"
    cm = json.loads(await api.ok("get", "cm", "settings", "-n", "shop", "-o", "json"))
    cm["data"]["color"] = "green"
    await api.ok("replace", "-f", "-", input=json.dumps(cm))
    cm["data"]["color"] = "red"
    del cm["metadata"]["resourceVersion"]
    await api.ok("replace", "--force", "-f", "-", input=json.dumps(cm))
    assert (await api.ok("get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.data.color}")) == "red"


async def test_create_generators(api, tmp_path):
    await api.ok("create", "namespace", "gen")
    await api.ok("create", "configmap", "lit", "-n", "gen", "--from-literal=a=1", "--from-literal=b=2")
    (tmp_path / "conf.txt").write_text("hello\n")
    await api.ok("create", "configmap", "file", "-n", "gen", f"--from-file={tmp_path / 'conf.txt'}")
    await api.ok("create", "secret", "generic", "s", "-n", "gen", "--from-literal=password=hunter2")
    await api.ok("create", "job", "j", "-n", "gen", "--image=busybox", "--", "echo", "hi")
    await api.ok("create", "deployment", "d", "-n", "gen", "--image=nginx", "--replicas=2")
    names = await api.ok("get", "cm,secret,job,deploy", "-n", "gen", "-o", "name")
    for n in ("configmap/lit", "configmap/file", "secret/s", "job.batch/j", "deployment.apps/d"):
        assert n in names
    assert "hello" in await api.ok("get", "cm", "file", "-n", "gen", "-o", "yaml")


async def test_server_side_apply_conflict_and_force(api):
    await api.ok("apply", "--server-side", "-f", "-", input=MANIFEST)
    await api.ok("scale", "deploy", "web", "-n", "shop", "--replicas=7")
    r = await api.kubectl("apply", "--server-side", "-f", "-", input=MANIFEST)
    assert r.code != 0 and "conflict" in r.err.lower()
    await api.ok("apply", "--server-side", "--force-conflicts", "-f", "-", input=MANIFEST)
    assert (await api.ok("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}")) == "2"


async def test_dry_run_server_leaves_nothing(api):
    namespace, rest = MANIFEST.split("---\n", 1)
    out = await api.ok("apply", "--dry-run=server", "-f", "-", input=namespace)
    assert "namespace/shop created (server dry run)" in out
    r = await api.kubectl("get", "ns", "shop")
    assert r.code != 0 and "NotFound" in r.err
    await api.ok("apply", "-f", "-", input=namespace)
    out = await api.ok("apply", "--dry-run=server", "-f", "-", input=rest)
    assert "deployment.apps/web created (server dry run)" in out
    assert (await api.ok("get", "deploy,svc,cm", "-n", "shop", "-o", "name")).strip() == ""


async def test_delete_by_name_label_all_and_cascade(api):
    await api.ok("apply", "-f", "-", input=MANIFEST)
    await api.ok("create", "configmap", "x1", "-n", "shop")
    await api.ok("create", "configmap", "x2", "-n", "shop")
    await api.ok("delete", "cm", "x1", "-n", "shop")
    await api.ok("delete", "cm", "-l", "app=web", "-n", "shop")
    names = await api.ok("get", "cm", "-n", "shop", "-o", "name")
    assert "x1" not in names and "settings" not in names and "x2" in names
    await api.ok("delete", "cm", "--all", "-n", "shop")
    assert "configmap/x2" not in await api.ok("get", "cm", "-n", "shop", "-o", "name")
    await api.ok("delete", "deploy", "web", "-n", "shop", "--cascade=orphan")
    assert "web" not in await api.ok("get", "deploy", "-n", "shop", "-o", "name")


async def test_explain_api_resources_and_strict_validation(api):
    out = await api.ok("explain", "deployment.spec.strategy")
    assert "rollingUpdate" in out and "type" in out
    resources = await api.ok("api-resources")
    assert "deployments" in resources and "deploy" in resources and "apps/v1" in resources
    versions = await api.ok("api-versions")
    assert "apps/v1" in versions and "rbac.authorization.k8s.io/v1" in versions
    bad = MANIFEST.split("---\n")[3].replace("\ndata:", "\nbogus: 1\ndata:")
    r = await api.kubectl("apply", "--validate=strict", "-f", "-", input=bad)
    assert r.code != 0 and "bogus" in r.err


@pytest.mark.parametrize("version", ["1.27", "1.30"])
async def test_older_kubectl_versions(api, version):
    out = await api.ok("apply", "-f", "-", input=MANIFEST, version=version)
    assert "deployment.apps/web" in out
    assert "web" in await api.ok("get", "deploy", "-n", "shop", version=version)
    await api.ok("delete", "cm", "settings", "-n", "shop", version=version)
