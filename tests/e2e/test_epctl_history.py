"""epctl history / get --at / diff / why as a user runs them (a child process reading
KUBECONFIG) against a running API server, over REST and `--via nats` (the same output),
and `kubectl get --raw ...?asOf=` where kubectl is installed."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import datetime, timezone

import pytest
import yaml

from eventplane.api.natsapi import NatsApi
from tests.e2e.test_epctl import ages_masked, epctl, ok
from tests.integration.test_history import add_user

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {{app: web{extra}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {image}
"""


async def apply(api, tmp_path, **kw) -> None:
    values = {"replicas": 2, "image": "nginx:1.25", "extra": "", **kw}
    path = tmp_path / "web.yaml"
    path.write_text(DEPLOY.format(**values))
    await ok(api, "apply", "-f", str(path))


async def rv_of(api) -> str:
    return yaml.safe_load(await ok(api, "get", "deploy/web", "-o", "yaml"))["metadata"]["resourceVersion"]


async def test_history_get_at_and_diff(api, tmp_path):
    await apply(api, tmp_path)
    first = await ok(api, "get", "deploy/web", "-o", "yaml")
    rv1 = yaml.safe_load(first)["metadata"]["resourceVersion"]
    await asyncio.sleep(0.02)
    t1 = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    await asyncio.sleep(0.02)
    await apply(api, tmp_path, replicas=5)
    await apply(api, tmp_path, replicas=5, image="nginx:1.27")
    rv3 = await rv_of(api)
    await apply(api, tmp_path, replicas=5, image="nginx:1.27", extra=", tier: front")
    await ok(api, "delete", "deploy/web")

    out = await ok(api, "history", "deploy/web")
    header, *rows = out.splitlines()
    assert header.split() == ["RESOURCEVERSION", "TIME", "ACTOR", "VERB", "TYPE", "SUMMARY"]
    summaries = [r.split(None, 5)[5] for r in rows]
    assert summaries[:4] == ["created", "spec.replicas 2→5", "image nginx:1.25→1.27", "labels +tier=front"]
    assert summaries[-1] == "deleted" and rows[0].split()[0] == rv1 and rows[0].split()[2] == "admin"
    as_json = json.loads(await ok(api, "history", "deploy", "web", "-o", "json"))
    assert [i["summary"] for i in as_json["items"]] == summaries

    # get --at: by resourceVersion and by time, the same shape and content as get then
    assert await ok(api, "get", "deploy/web", "--at", rv1, "-o", "yaml") == first
    assert await ok(api, "get", "deploy/web", "--at", t1, "-o", "yaml") == first
    table = await ok(api, "get", "deployments", "-A", "-l", "app=web", "--at", rv3)
    assert table.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"] and "web" in table
    gone = await epctl(api, "get", "deploy/web")
    assert gone.code == 1 and "NotFound" in gone.err
    future = await epctl(api, "get", "deploy/web", "--at", "2999-01-01T00:00:00Z")
    assert future.code == 1 and "in the future" in future.err

    diff = await ok(api, "diff", "deploy/web", "--from", rv1, "--to", rv3)
    assert f"--- deployments/web@{rv1}" in diff and "-  replicas: 2" in diff and "+  replicas: 5" in diff
    assert "+      - image: nginx:1.27" in diff
    field = await ok(api, "diff", "deploy/web", "--field", "spec.replicas")
    assert [line.split()[-1] for line in field.splitlines()] == ["SPEC.REPLICAS", "<absent>", "2", "5", "<absent>"]

    if shutil.which("kubectl"):
        raw = await api.ok("get", "--raw", f"/apis/apps/v1/namespaces/default/deployments?asOf={rv3}")
        assert [i["metadata"]["name"] for i in json.loads(raw)["items"]] == ["web"]
        raw = await api.ok("get", "--raw", "/api/v1/namespaces/default/configmaps?asOf=-5m")
        assert json.loads(raw)["kind"] == "ConfigMapList"


async def test_why_prints_the_chain_with_latencies(api):
    alice, ctl, sched = add_user(api, "alice"), add_user(api, "system:controller:replicaset"), \
        add_user(api, "system:scheduler")
    status, dep, _ = await api.http("POST", "/apis/apps/v1/namespaces/default/deployments", token=alice, body={
        "metadata": {"name": "shop"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    assert status == 201
    await asyncio.sleep(0.05)
    status, pod, _ = await api.http("POST", "/api/v1/namespaces/default/pods", token=ctl, body={
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        headers={"X-Eventplane-Causation": dep["metadata"]["resourceVersion"]})
    assert status == 201
    status, _, _ = await api.http("POST", "/api/v1/namespaces/default/pods/p/binding", token=sched, body={
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "node-1"}},
        headers={"X-Eventplane-Causation": pod["metadata"]["resourceVersion"]})
    assert status == 201

    out = await ok(api, "why", "pod/p")
    header, *rows, total = out.splitlines()
    assert header.split() == ["STEP", "RESOURCEVERSION", "TIME", "ACTOR", "VERB", "TYPE", "OBJECT", "NEXT", "AFTER"]
    cells = [r.split() for r in rows]
    assert [(c[3], c[5], c[6]) for c in cells] == [
        ("alice", "Created", "default/deployments.apps/shop"),
        ("system:controller:replicaset", "Created", "default/pods/p"),
        ("system:scheduler", "Bound", "default/pods/p")]
    assert int(cells[0][7].removesuffix("ms")) >= 50 and cells[2][7] == "-"
    assert total.startswith("3 steps in ")
    doc = json.loads(await ok(api, "why", "pod/p", "-o", "json"))
    assert doc["complete"] and len(doc["steps"]) == 3


@pytest.mark.parametrize("args, message", [
    (["history", "deploy"], "name one object as KIND/NAME"),
    (["history", "deploy/nope"], "NotFound"),
    (["diff", "deploy/nope", "--field", "spec"], "NotFound"),
])
async def test_usage_and_missing_objects(api, args, message):
    r = await epctl(api, *args)
    assert r.code == 1 and message in r.err, r.err


async def test_the_same_over_nats(api, servers, tmp_path):
    await apply(api, tmp_path)
    rv1 = await rv_of(api)
    await apply(api, tmp_path, replicas=5)
    await apply(api, tmp_path, replicas=5, image="nginx:1.27")
    rv3 = await rv_of(api)
    prefix = f"t{os.getpid()}history.api"
    env = {"EVENTPLANE_NATS_URL": servers.nats_url}
    nats = ["--via", "nats", "--nats-prefix", prefix]
    async with NatsApi(api.server, prefix=prefix):
        for args in (["history", "deploy/web"], ["history", "deploy", "web", "-o", "json"],
                     ["get", "deploy/web", "--at", rv1, "-o", "yaml"], ["get", "deploy", "-A", "--at", rv3],
                     ["diff", "deploy/web", "--from", rv1, "--to", rv3],
                     ["diff", "deploy/web", "--field", "spec.replicas"],
                     ["why", "deploy/web", "-o", "json"]):
            over_rest = await ok(api, *args)
            assert ages_masked(await ok(api, *nats, *args, env=env)) == ages_masked(over_rest), args
        assert "+  replicas: 5" in await ok(api, *nats, "diff", "deploy/web", "--from", rv1, env=env)
        missing = await epctl(api, *nats, "history", "deploy/nope", env=env)
        assert missing.code == 1 and "NotFound" in missing.err
        future = await epctl(api, *nats, "get", "deploy/web", "--at", "2999-01-01T00:00:00Z", env=env)
        assert future.code == 1 and "in the future" in future.err
