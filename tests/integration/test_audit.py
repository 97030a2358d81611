"""Audit against a real API server, PostgreSQL and NATS: requests by two users (writes,
reads, a watch, a refused token), queried by user, verb, resource, time and
outcome over REST; policy levels from a policy file; and Secrets' data never in
the audit table, whatever the policy asks.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest

from eventplane.api.server import ApiConfig, ApiServer
from eventplane.store import EventStore
from eventplane.store.audit import AuditQuery, AuditRecord, AuditWriter, query_audit
from tests.support.apiserver import Api, free_port
from tests.support.relaying import running_relay

EVENTS = "/apis/audit.eventplane.io/v1/events"
SECRET_TEXT = "hunter2-top-secret-value"
SECRET_B64 = base64.b64encode(SECRET_TEXT.encode()).decode()

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: RequestResponse
  resources: [{group: "", resources: [configmaps]}]
  namespaces: [rr]
- level: Request
  resources: [{group: "", resources: [configmaps]}]
  namespaces: [req]
- level: None
  resources: [{group: "", resources: [configmaps]}]
  namespaces: [quiet]
- level: RequestResponse    # asked for, but a Secret is recorded at Metadata at most
  resources: [{group: "", resources: [secrets]}]
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*"]
- level: Metadata
"""


def configmap(name: str, namespace: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {"color": "blue"}}


def secret(name: str, namespace: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {"password": SECRET_B64}, "stringData": {"token": SECRET_TEXT}}


def add_token(api: Api, token: str, user: str, groups: str = "") -> None:
    path = api.server.config.data_dir / "tokens.csv"
    with path.open("a") as f:
        f.write(f'{token},{user},{user}-uid,"{groups}"\n')


async def query(api: Api, **params) -> list[dict]:
    code, body, _ = await api.http("GET", f"{EVENTS}?{urlencode(params)}")
    assert code == 200, body
    assert body["kind"] == "EventList"
    return body["items"]


async def audit_rows(api: Api) -> list[str]:
    """Every row of the table as text, for grepping."""
    await api.server.auditor.writer.flush()
    async with api.server.store.pool.acquire() as conn:
        return [r[0] for r in await conn.fetch("SELECT a::text FROM audit_events a")]


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


async def test_requests_of_two_users_are_recorded_and_queried(api):
    add_token(api, "bob-token-123", "bob", "devs")
    start = datetime.now(timezone.utc)
    code, _, _ = await api.http("POST", "/api/v1/namespaces/default/configmaps", body=configmap("settings"))
    assert code == 201
    await asyncio.sleep(0.05)
    middle = datetime.now(timezone.utc)
    code, _, _ = await api.http("GET", "/api/v1/namespaces/default/configmaps/settings", token="bob-token-123")
    assert code == 200
    code, _, _ = await api.http("GET", "/api/v1/namespaces/default/configmaps", token="bob-token-123")
    assert code == 200
    code, _, _ = await api.http("GET", "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
                                token="bob-token-123")
    assert code == 200
    code, _, _ = await api.http("GET", "/api/v1/namespaces/default/pods", token="wrong-token")
    assert code == 401
    code, _, _ = await api.http("GET", "/api/v1/namespaces/default/configmaps/absent", token="bob-token-123")
    assert code == 404
    code, _, _ = await api.http("POST", "/api/v1/namespaces/default/secrets", body=secret("db"))
    assert code == 201

    bob = await query(api, user="bob")
    assert [(e["verb"], e["responseStatus"]["code"]) for e in bob] == \
        [("get", 200), ("list", 200), ("watch", 200), ("get", 404)]
    first = bob[0]
    assert first["user"] == {"username": "bob", "groups": ["devs", "system:authenticated"]}
    assert first["objectRef"] == {"resource": "configmaps", "namespace": "default", "name": "settings",
                                  "apiVersion": "v1"}
    assert first["stage"] == "ResponseComplete" and first["level"] == "Metadata"
    assert first["requestURI"] == "/api/v1/namespaces/default/configmaps/settings"
    assert first["sourceIPs"] == ["127.0.0.1"] and first["userAgent"]
    assert "requestObject" not in first and "responseObject" not in first
    assert first["annotations"]["eventplane.io/transport"] == "rest"
    assert bob[-1]["annotations"]["eventplane.io/outcome"] == "error"
    watch = bob[2]
    received = datetime.fromisoformat(watch["requestReceivedTimestamp"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(watch["stageTimestamp"].replace("Z", "+00:00"))
    assert ended - received >= timedelta(seconds=0.9)  # recorded when the watch ended

    created = await query(api, verb="create", resource="configmaps")
    assert [(e["user"]["username"], e["objectRef"]["namespace"]) for e in created] == [("admin", "default")]
    assert created[0]["responseStatus"]["code"] == 201

    denied = await query(api, outcome="denied")
    assert len(denied) == 1
    assert denied[0]["user"]["username"] == "system:anonymous"
    assert denied[0]["responseStatus"]["code"] == 401 and denied[0]["verb"] == "list"
    assert denied[0]["objectRef"]["resource"] == "pods"

    # time windows, absolute and relative
    assert await query(api, user="bob", until=rfc3339(middle)) == []
    assert len(await query(api, user="bob", since=rfc3339(middle))) == 4
    assert len(await query(api, user="bob", since="-1m")) == 4
    assert [e["verb"] for e in await query(api, user="admin", since=rfc3339(start), until=rfc3339(middle))] == \
        ["create"]
    assert len(await query(api, user="bob", limit="2")) == 2
    assert [e["verb"] for e in await query(api, user="bob", limit="2")] == ["watch", "get"]  # the newest two

    rows = await audit_rows(api)
    assert not [r for r in rows if SECRET_TEXT in r or SECRET_B64 in r]

    code, body, _ = await api.http("GET", f"{EVENTS}?outcome=maybe")
    assert code == 400 and "outcome" in body["message"]
    code, body, _ = await api.http("GET", f"{EVENTS}?since=yesterday")
    assert code == 400


async def test_the_audit_group_is_discoverable(api):
    code, body, _ = await api.http("GET", "/apis")
    assert code == 200
    assert "audit.eventplane.io" in [g["name"] for g in body["groups"]]
    code, body, _ = await api.http("GET", "/apis/audit.eventplane.io/v1")
    assert code == 200 and body["resources"][0]["name"] == "events"
    out = await api.ok("get", "--raw", EVENTS + "?verb=list&limit=5")
    assert json.loads(out)["kind"] == "EventList"


@contextlib.asynccontextmanager
async def api_with_policy(database_url, nats_url, bus, data_dir, policy_file):
    data_dir.mkdir(parents=True, exist_ok=True)
    async with running_relay(database_url, nats_url, bus):
        server = ApiServer(ApiConfig(database_url=database_url, nats_url=nats_url, data_dir=data_dir, bus=bus,
                                     port=free_port(), audit_policy=policy_file,
                                     nats_api_prefix=bus.subject_prefix.rsplit(".", 1)[0] + ".api"))
        await server.start()
        try:
            yield Api(server, data_dir / "kubeconfig")
        finally:
            await server.stop()


async def test_policy_levels_from_a_policy_file(database_url, servers, bus, tmp_path):
    policy = tmp_path / "audit-policy.yaml"
    policy.write_text(POLICY)
    async with api_with_policy(database_url, servers.nats_url, bus[0], tmp_path / "api", policy) as api:
        for ns in ("rr", "req", "quiet"):
            code, _, _ = await api.http("POST", "/api/v1/namespaces",
                                        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            assert code == 201
            code, _, _ = await api.http("POST", f"/api/v1/namespaces/{ns}/configmaps", body=configmap("c", ns))
            assert code == 201
        code, _, _ = await api.http("POST", "/api/v1/namespaces/rr/secrets", body=secret("s", "rr"))
        assert code == 201
        code, _, _ = await api.http("GET", "/api/v1/namespaces/rr/secrets/s")
        assert code == 200
        code, _, _ = await api.http("GET", "/api/v1/secrets")
        assert code == 200
        code, _, _ = await api.http("PUT", "/api/v1/namespaces/rr/secrets/s", body=secret("s", "rr"))
        assert code == 200
        code, _, _ = await api.http("GET", "/healthz", token="")
        assert code == 200

        by_ns = {e["objectRef"]["namespace"]: e for e in await query(api, verb="create", resource="configmaps")}
        assert set(by_ns) == {"rr", "req"}  # quiet: level None
        assert by_ns["rr"]["level"] == "RequestResponse"
        assert by_ns["rr"]["requestObject"]["data"] == {"color": "blue"}
        assert by_ns["rr"]["responseObject"]["metadata"]["uid"]
        assert by_ns["req"]["level"] == "Request"
        assert by_ns["req"]["requestObject"]["data"] == {"color": "blue"}
        assert "responseObject" not in by_ns["req"]
        namespaces = await query(api, verb="create", resource="namespaces")
        assert len(namespaces) == 3 and {e["level"] for e in namespaces} == {"Metadata"}
        assert "requestObject" not in namespaces[0]

        secrets = await query(api, resource="secrets")
        assert [e["verb"] for e in secrets] == ["create", "get", "list", "update"]
        assert {e["level"] for e in secrets} == {"Metadata"}
        assert not [e for e in secrets if "requestObject" in e or "responseObject" in e]
        rows = await audit_rows(api)
        assert not [r for r in rows if "/healthz" in r]
        assert not [r for r in rows if SECRET_TEXT in r or SECRET_B64 in r]


async def test_a_bad_policy_file_stops_the_server_starting(database_url, servers, bus, tmp_path):
    policy = tmp_path / "audit-policy.yaml"
    policy.write_text("kind: Policy\nrules:\n- level: Everything\n")
    with pytest.raises(ValueError, match="rules\\[0\\].level"):
        async with api_with_policy(database_url, servers.nats_url, bus[0], tmp_path / "api", policy):
            pass


async def test_a_full_queue_drops_records_and_never_blocks(database_url):
    writer = AuditWriter(database_url, queue_size=2)
    await writer.start()
    try:
        now = datetime.now(timezone.utc)
        for i in range(5):  # no await between: the writer cannot drain, the queue fills
            writer.record(AuditRecord(audit_id=uuid.uuid4(), stage="ResponseComplete", level="Metadata",
                                      time_received=now, time_completed=now, user_name=f"u{i}", verb="get",
                                      request_uri="/x", outcome="allowed", transport="rest"))
        assert writer.dropped == 3
        assert await writer.flush()
        assert writer.written == 2
    finally:
        await writer.close()
    async with EventStore.connect(database_url) as store:
        assert [r["user_name"] for r in await query_audit(store.pool, AuditQuery())] == ["u0", "u1"]


async def test_nats_requests_are_recorded(api, servers):
    import nats

    from eventplane.api.natsapi import NatsApi
    from eventplane.objects.auditpolicy import Policy

    add_token(api, "dave-token-9", "dave")
    # everything at RequestResponse: what the NATS path records, and that Secrets stay out regardless
    api.server.auditor.policy = Policy.from_dict({"rules": [{"level": "RequestResponse"}]})
    nc = await nats.connect(servers.nats_url)
    try:
        async with NatsApi(api.server, prefix=f"t{os.getpid()}audit.api") as natsapi:
            async def call(verb: str, body: dict, token: str) -> int:
                msg = await nc.request(f"{natsapi.prefix}.{verb}", json.dumps(body).encode(),
                                       headers={"Authorization": f"Bearer {token}", "User-Agent": "audit-test"},
                                       timeout=10)
                return int(msg.headers["Status"])

            admin = api.server.admin_token
            assert await call("create", {"resource": "configmaps", "namespace": "default",
                                         "body": configmap("n1")}, admin) == 201
            assert await call("get", {"resource": "cm", "namespace": "default", "name": "n1"},
                              "dave-token-9") == 200
            assert await call("list", {"resource": "configmaps"}, "dave-token-9") == 200
            assert await call("get", {"resource": "configmaps", "name": "n1"}, "bad-token") == 401
            assert await call("create", {"resource": "secrets", "namespace": "default", "body": secret("n2")},
                              admin) == 201
            assert await call("apply", {"body": [configmap("n3"), secret("n4")]}, admin) == 200
            assert await call("delete", {"resource": "secrets", "namespace": "default"}, admin) == 200
    finally:
        await nc.close()

    nats_events = await query(api, transport="nats")
    got = [(e["user"]["username"], e["verb"], e.get("objectRef", {}).get("resource"),
            e.get("objectRef", {}).get("namespace"), e["responseStatus"]["code"]) for e in nats_events]
    assert got == [("admin", "create", "configmaps", "default", 201),
                   ("dave", "get", "configmaps", "default", 200),
                   ("dave", "list", "configmaps", None, 200),
                   ("system:anonymous", "get", None, None, 401),
                   ("admin", "create", "secrets", "default", 201),
                   ("admin", "patch", None, None, 200),
                   ("admin", "deletecollection", "secrets", "default", 200)]
    first = nats_events[0]
    assert first["requestURI"].endswith("audit.api.create") and first["userAgent"] == "audit-test"
    assert first["requestObject"]["metadata"]["name"] == "n1" and first["responseObject"]["metadata"]["uid"]
    assert nats_events[1]["objectRef"]["name"] == "n1"
    for e in nats_events[4:]:  # the secret create, the apply holding a Secret, the delete of secrets
        assert "requestObject" not in e and "responseObject" not in e
    assert [e["level"] for e in nats_events[4:]] == ["Metadata", "RequestResponse", "Metadata"]
    rows = await audit_rows(api)
    assert not [r for r in rows if SECRET_TEXT in r or SECRET_B64 in r]


async def test_a_watch_the_client_leaves_is_recorded_when_it_ends(api):
    import ssl

    import aiohttp

    ssl_ctx = ssl.create_default_context(cadata=api.server.pki.ca_pem.decode())
    async with aiohttp.ClientSession() as session:
        async with session.get(api.url + "/api/v1/namespaces?watch=true", ssl=ssl_ctx,
                               headers={"Authorization": f"Bearer {api.server.admin_token}"}) as resp:
            assert resp.status == 200
            await resp.content.readline()  # the first ADDED: the watch is open
    for _ in range(50):  # the server notices the closed connection and cancels the handler
        watches = await query(api, verb="watch", resource="namespaces")
        if watches:
            break
        await asyncio.sleep(0.1)
    assert [(e["user"]["username"], e["responseStatus"]["code"]) for e in watches] == [("admin", 200)]
