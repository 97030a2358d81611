"""history.eventplane.io over NATS against a real API server, PostgreSQL and NATS: the
history, diff, why, positions, verify and replay subjects, and `asOf` on get and list,
answer what REST answers for the same scripted life (test_history.scripted_life), in
JSON and msgpack; errors keep their codes and wording. Then the client's history,
time-travel and integrity calls over both transports.
"""
from __future__ import annotations

import pytest

from eventplane.client import Client
from eventplane.client import integrity as client_integrity
from eventplane.objects import errors
from tests.integration.test_history import CM, DEPLOY, H, ok, scripted_life
from tests.integration.test_natsapi import Raw, natsapi, nc  # noqa: F401 — fixtures

WEB = {"apiVersion": "apps/v1", "resource": "deployments", "namespace": "default", "name": "web"}


@pytest.fixture
def raw(nc, natsapi, api):  # noqa: F811 — the fixtures imported above
    return Raw(nc, natsapi, api.server.admin_token)


def iso(t) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("media", ["json", "msgpack"])
async def test_history_diff_and_why_answer_as_rest_does(api, raw, media):
    s = await scripted_life(api)
    rv = lambda k: s[k]["metadata"]["resourceVersion"]  # noqa: E731

    code, got = await raw("history", WEB, media=media)
    assert code == 200 and got == await ok(api, "GET", f"{H}/history{DEPLOY}/web")
    uid = s["created"]["metadata"]["uid"]
    code, got = await raw("history", {**WEB, "uid": uid}, media=media)
    assert code == 200 and {i["uid"] for i in got["items"]} == {uid}

    for query, fields in ((f"from={rv('created')}&to={rv('image')}", {"from": rv("created"), "to": rv("image")}),
                          (f"from={iso(s['t1'])}&to={rv('image')}", {"from": iso(s["t1"]), "to": int(rv("image"))}),
                          ("field=spec.replicas", {"field": "spec.replicas"})):
        code, got = await raw("diff", {**WEB, **fields}, media=media)
        assert code == 200 and got == await ok(api, "GET", f"{H}/diff{DEPLOY}/web?{query}"), query

    code, got = await raw("why", {"resource": "deploy", "name": "web"}, media=media)  # namespace: default
    assert code == 200 and got == await ok(api, "GET", f"{H}/why{DEPLOY}/web")
    code, got = await raw("why", {**WEB, "resourceVersion": rv("scaled")}, media=media)
    assert code == 200 and [st["actor"] for st in got["steps"]] == ["bob"]

    code, got = await raw("positions", {"at": rv("scaled")}, media=media)
    assert code == 200 and got["resourceVersion"] == rv("scaled") and int(got["head"]) >= int(rv("again"))


async def test_as_of_on_get_and_list(api, raw):
    s = await scripted_life(api)
    strip = lambda o: {k: v for k, v in o.items() if k != "status"}  # noqa: E731
    for at, expected in ((s["scaled"]["metadata"]["resourceVersion"], s["scaled"]),
                         (int(s["scaled"]["metadata"]["resourceVersion"]), s["scaled"]),
                         (iso(s["t1"]), s["created"]), (s["t2"].isoformat(), s["scaled"])):
        code, got = await raw("get", {**WEB, "asOf": at})
        assert code == 200 and strip(got) == strip(expected), at
    code, got = await raw("get", {**WEB, "asOf": "-1h"})
    assert code == 404 and got["reason"] == "NotFound"

    t2 = iso(s["t2"])
    code, listed = await raw("list", {"resource": "configmaps", "namespace": "default", "asOf": t2})
    assert code == 200 and listed == await ok(api, "GET", f"{CM}?asOf={t2}")
    code, sel = await raw("list", {"resource": "cm", "namespace": "default", "asOf": t2, "labelSelector": "app=y"},
                          media="msgpack")
    assert code == 200 and [i["metadata"]["name"] for i in sel["items"]] == ["two"]
    code, table = await raw("list", {"resource": "cm", "namespace": "default", "asOf": t2, "as": "Table"})
    assert code == 200 and [r["cells"][0] for r in table["rows"]] == ["one", "two"]


async def test_errors_keep_their_codes_and_words(api, raw):
    created = await ok(api, "POST", CM, {"metadata": {"name": "c"}})
    head = int(created["metadata"]["resourceVersion"])
    cm = {"resource": "configmaps", "namespace": "default", "name": "c"}
    for req, code_, words in (
            ({**cm, "asOf": head + 1000}, 504, "beyond the newest resourceVersion"),
            ({**cm, "asOf": "2999-01-01T00:00:00Z"}, 400, "in the future"),
            ({**cm, "asOf": "yesterday"}, 400, "negative duration"),
            ({**cm, "asOf": head, "resourceVersion": str(head), "resourceVersionMatch": "Exact"}, 400,
             "cannot be combined")):
        code, status = await raw("get", req)
        assert (code, status["kind"]) == (code_, "Status") and words in status["message"], req
    code, status = await raw("history", {"resource": "configmaps"})
    assert code == 400 and 'no "name"' in status["message"]
    code, status = await raw("history", {**cm, "name": "nope"})
    assert code == 404 and status["message"] == 'configmaps "nope" not found'
    code, status = await raw("diff", {**cm, "from": head, "to": 1})
    assert code == 400 and "after" in status["message"]
    code, status = await raw("why", {**cm, "resourceVersion": "1"})
    assert code == 404 and "is not an event of configmaps/c" in status["message"]
    code, status = await raw("positions", {})
    assert code == 400 and "at is required" in status["message"]
    code, status = await raw("replay", {"to": "1", "controller": "deployment"})
    assert code == 501 and "is not computed by the server" in status["message"]
    code, status = await raw("verify", {"from": "0"})
    assert code == 400 and "must be a position" in status["message"]
    code, status = await raw("export", {})
    assert code == 404 and "unknown operation" in status["message"]


@pytest.mark.parametrize("media", ["json", "msgpack"])
async def test_verify_and_replay(api, raw, media):
    s = await scripted_life(api)
    head = await api.server.store.head()
    code, got = await raw("verify", {}, media=media)
    assert code == 200 and got == await ok(api, "GET", f"{H}/verify")
    assert got["ok"] and got["checked"] == head and got["last"] == head
    code, got = await raw("verify", {"from": 2, "to": "3"}, media=media)
    assert code == 200 and (got["checked"], got["first"], got["last"]) == (2, 2, 3)
    at = s["scaled"]["metadata"]["resourceVersion"]
    code, got = await raw("replay", {"to": at}, media=media)
    assert code == 200 and got == await ok(api, "GET", f"{H}/replay?to={at}")
    assert got["kind"] == "ReplayDiff" and got["at"] == int(at) and got["kinds"]


# --- the client, over both transports -------------------------------------------------------------

@pytest.fixture(params=["rest", "nats"])
async def client(request, api, natsapi, servers):  # noqa: F811 — the fixture imported above
    if request.param == "rest":
        c = Client.from_kubeconfig(str(api.kubeconfig))
    else:
        c = Client.via_nats(servers.nats_url, api.server.admin_token, prefix=natsapi.prefix)
    async with c:
        yield c


async def test_client_reads_the_past(api, client):
    s = await scripted_life(api)
    rv = lambda k: s[k]["metadata"]["resourceVersion"]  # noqa: E731
    hist = await client.history("deploy", "web")
    assert [i["summary"] for i in hist["items"]][:2] == ["created", "spec.replicas 2→5"]
    assert (await client.get_at("deploy", "web", rv("scaled")))["spec"]["replicas"] == 5
    listed = await client.list("cm", as_of=iso(s["t2"]))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["one", "two"]
    d = await client.diff("deploy", "web", from_=rv("created"), to=int(rv("image")))
    assert "+  replicas: 5" in d["diff"]
    f = await client.diff("deploy", "web", field="spec.replicas")
    assert [v["value"] for v in f["values"]] == [None, 2, 5, None, 1]
    why = await client.why("deployments.apps", "web", resource_version=rv("scaled"))
    assert [st["actor"] for st in why["steps"]] == ["bob"]
    with pytest.raises(errors.NotFoundError):
        await client.history("cm", "nope")
    with pytest.raises(errors.BadRequestError, match="in the future"):
        await client.get("deploy", "web", as_of="2999-01-01T00:00:00Z")

    verified = await client_integrity.verify(client, start=2, end=3)
    assert verified["ok"] and verified["checked"] == 2
    replayed = await client_integrity.replay(client, rv("scaled"))
    assert replayed["at"] == int(rv("scaled"))
    with pytest.raises(errors.EventplaneError, match="is not computed by the server") as caught:
        await client_integrity.replay(client, "1", controller="deployment")
    assert caught.value.code == 501
