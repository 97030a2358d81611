"""`epctl audit` as a user runs it (a child process with KUBECONFIG) against a real API server:
requests by two users, then the audit table and json filtered by user, verb, resource,
namespace, time and outcome."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from tests.e2e.test_epctl import epctl, ok


async def test_epctl_audit(api):
    with (api.server.config.data_dir / "tokens.csv").open("a") as f:
        f.write('carol-token-1,carol,carol-uid,"devs"\n')
    before = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    code, _, _ = await api.http("POST", "/api/v1/namespaces",
                                body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    assert code == 201
    code, _, _ = await api.http("POST", "/api/v1/namespaces/shop/configmaps",
                                body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}})
    assert code == 201
    code, _, _ = await api.http("GET", "/api/v1/namespaces/shop/configmaps/settings", token="carol-token-1")
    assert code == 200
    code, _, _ = await api.http("DELETE", "/api/v1/namespaces/shop/configmaps/settings", token="carol-token-1")
    assert code == 200
    code, _, _ = await api.http("GET", "/api/v1/namespaces/shop/configmaps", token="not-a-token")
    assert code == 401

    table = (await ok(api, "audit", "--user", "carol")).splitlines()
    assert table[0].split() == ["TIME", "USER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "CODE"]
    assert [line.split()[1:] for line in table[1:]] == [["carol", "get", "configmaps", "shop", "settings", "200"],
                                                        ["carol", "delete", "configmaps", "shop", "settings", "200"]]
    assert table[1].split()[0].endswith("Z")

    created = json.loads(await ok(api, "audit", "--verb", "create", "-n", "shop", "-o", "json"))
    assert created["kind"] == "EventList"
    assert [(e["user"]["username"], e["objectRef"]["resource"]) for e in created["items"]] == \
        [("admin", "configmaps")]

    denied = (await ok(api, "audit", "--outcome", "denied", "--since", "-10m", "--no-headers")).splitlines()
    assert [line.split()[1:] for line in denied] == [["system:anonymous", "list", "configmaps", "shop", "-", "401"]]
    assert len((await ok(api, "audit", "--user", "carol", "--since", before, "--no-headers")).splitlines()) == 2
    assert len((await ok(api, "audit", "--resource", "configmaps", "--user", "carol", "--until", before,
                         "--no-headers")).splitlines()) == 0

    r = await epctl(api, "audit", "--since", "yesterday")
    assert r.code == 1 and "not a time" in r.err


async def test_epctl_audit_via_nats(api, servers):
    from eventplane.api.natsapi import NatsApi

    prefix = f"t{os.getpid()}audit.api"
    env = {"EVENTPLANE_NATS_URL": servers.nats_url}
    async with NatsApi(api.server, prefix=prefix):
        nats = ["--via", "nats", "--nats-prefix", prefix]
        await ok(api, *nats, "get", "namespaces", env=env)
        over_rest = (await ok(api, "audit", "--verb", "list", "--resource", "namespaces")).splitlines()
        over_nats = (await ok(api, *nats, "audit", "--verb", "list", "--resource", "namespaces", env=env))
        assert [line.split()[1:] for line in over_rest] == [
            ["USER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "CODE"], ["admin", "list", "namespaces", "-", "-", "200"]]
        assert over_nats.splitlines() == over_rest
        as_json = json.loads(await ok(api, *nats, "audit", "--transport", "nats", "--user", "admin", "-o", "json",
                                      env=env))
        assert [(e["verb"], e.get("objectRef", {}).get("resource"), e["requestURI"].rsplit(".", 1)[-1])
                for e in as_json["items"]] == [("get", None, "discovery"), ("list", "namespaces", "list"),
                                               ("list", "events", "audit")]
