"""epctl verify, export, import and replay against a running API server, and `eventplane import`
of the export into a fresh database behind a second API server: the same objects, the same
history, a chain that still verifies; a changed byte is named by verify. Verify and replay
answer the same `--via nats`; export and import stay REST-only."""
from __future__ import annotations

import json
import os
import sys

import asyncpg
import nats
import pytest
import yaml

from eventplane.api.natsapi import NatsApi
from eventplane.bus import BusConfig
from tests.e2e.test_epctl import MANIFESTS, epctl, ok
from tests.support.apiserver import running_api
from tests.support.servers import drop_database, fresh_database

SERVER = [sys.executable, "-m", "eventplane.cli.server"]
KINDS = ("namespaces", "configmaps", "deployments", "services")


async def _scripted(api, tmp_path) -> int:
    """Apply, apply changed, delete; returns the head after the first apply."""
    path = tmp_path / "shop.yaml"
    path.write_text(MANIFESTS)
    await ok(api, "apply", "-f", str(path))
    first_apply = await api.server.store.head()
    path.write_text(MANIFESTS.replace("replicas: 2", "replicas: 5").replace("color: blue", "color: red"))
    await ok(api, "apply", "-f", str(path))
    await ok(api, "delete", "service", "web", "-n", "shop")
    return first_apply


async def _state(api) -> dict[str, object]:
    return {k: yaml.safe_load(await ok(api, "get", k, "-A", "-o", "yaml")) for k in KINDS}


async def _events(url: str) -> list[tuple]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch("SELECT * FROM events ORDER BY position")]
    finally:
        await conn.close()


async def _eventplane(*args: str):
    import asyncio

    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTPLANE_")}
    proc = await asyncio.create_subprocess_exec(*SERVER, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_verify_export_import_replay(api, database_url, servers, tmp_path):
    first_apply = await _scripted(api, tmp_path)
    head = await api.server.store.head()

    assert await ok(api, "verify") == f"ok: {head} events verified (positions 1..{head})\n"
    assert await ok(api, "verify", "--from", "2", "--to", "3") == "ok: 2 events verified (positions 2..3)\n"
    reply = json.loads(await ok(api, "verify", "-o", "json"))
    assert reply == {"kind": "ChainVerification", "apiVersion": "history.eventplane.io/v1", "ok": True,
                     "checked": head, "first": 1, "last": head, "brokenAt": None, "reason": ""}

    exported = await epctl(api, "export")
    assert exported.code == 0, exported.err
    lines = exported.out.splitlines()
    assert json.loads(lines[0]) == {"kind": "EventplaneExport", "version": 1, "events": head, "first": 1,
                                    "head": head}
    assert len(lines) == head + 1
    until = await epctl(api, "export", "--until", "3")
    assert json.loads(until.out.splitlines()[0])["events"] == 3
    export_file = tmp_path / "history.ndjson"
    export_file.write_text(exported.out)

    # epctl import cannot go into a running server's log: it is never empty
    refused = await epctl(api, "import", str(export_file))
    assert refused.code == 1 and "not empty" in refused.err and "eventplane import" in refused.err

    # replay: back to before the second apply
    replayed = await ok(api, "replay", "--to", str(first_apply))
    assert f"replayed to position {first_apply} (live head {head})" in replayed
    diff = json.loads(await ok(api, "replay", "--to", str(first_apply), "-o", "json"))
    assert diff["kinds"] == {
        "configmaps": {"created": [], "deleted": [], "changed": ["shop/settings"]},
        "deployments.apps": {"created": [], "deleted": [], "changed": ["shop/web"]},
        "services": {"created": [], "deleted": ["shop/web"], "changed": []}}
    assert "services: 0 created, 1 deleted, 0 changed since\n  deleted: shop/web" in replayed
    no_controller = await epctl(api, "replay", "--to", "3", "--controller", "nope")
    assert no_controller.code == 1 and "unknown controller 'nope'" in no_controller.err

    # eventplane import into a fresh database, then an API server on it
    url = await fresh_database(servers, migrated=False)
    bus = BusConfig(stream=f"IMPORTED_{os.getpid()}", subject_prefix=f"imp{os.getpid()}.ev")
    try:
        code, out, err = await _eventplane("import", "--database-url", url, str(export_file))
        assert code == 0, err
        assert out.startswith(f"imported {head} events (positions 1..{head})")
        code, _, err = await _eventplane("import", "--database-url", url, str(export_file))
        assert code == 1 and "not empty" in err
        assert await _events(url) == await _events(database_url)
        async with running_api(url, servers.nats_url, bus, tmp_path / "imported") as imported:
            assert await _state(imported) == await _state(api)
            assert await ok(imported, "verify") == f"ok: {head} events verified (positions 1..{head})\n"
    finally:
        nc = await nats.connect(servers.nats_url)
        try:
            await nc.jetstream().delete_stream(bus.stream)
        except Exception:
            pass
        await nc.close()
        await drop_database(servers, url)

    # a changed byte in a row: verify names its position
    await api.server.store.pool.execute(
        "UPDATE events SET payload = overlay(payload placing '\\x5a'::bytea from 10 for 1) WHERE position = 6")
    broken = await epctl(api, "verify")
    assert broken.code == 1
    assert broken.out.startswith("broken at position 6: hash does not match the event's contents")


async def test_verify_and_replay_via_nats(api, servers, tmp_path):
    first_apply = await _scripted(api, tmp_path)
    prefix = f"t{os.getpid()}integrity.api"
    env = {"EVENTPLANE_NATS_URL": servers.nats_url}
    nats = ["--via", "nats", "--nats-prefix", prefix]
    async with NatsApi(api.server, prefix=prefix):
        for args in (["verify"], ["verify", "--from", "2", "--to", "3", "-o", "json"],
                     ["replay", "--to", str(first_apply)], ["replay", "--to", str(first_apply), "-o", "json"]):
            assert await ok(api, *nats, *args, env=env) == await ok(api, *args), args
        no_controllers = await epctl(api, *nats, "replay", "--to", "3", "--controller", "deployment", env=env)
        assert no_controllers.code == 1 and "replay --controller works over REST only" in no_controllers.err
        await api.server.store.pool.execute(
            "UPDATE events SET payload = overlay(payload placing '\\x5a'::bytea from 10 for 1) WHERE position = 4")
        broken = await epctl(api, *nats, "verify", env=env)
        assert broken.code == 1 and broken.out.startswith("broken at position 4: ")


@pytest.mark.parametrize("command", [["export"], ["import", "history.ndjson"]])
async def test_export_and_import_are_rest_only(api, servers, command):
    r = await epctl(api, *command, "--via", "nats", "--nats-url", servers.nats_url, "--token", "x")
    assert r.code == 1 and "works over REST only" in r.err
