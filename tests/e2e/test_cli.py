"""The `eventplane` command as an operator uses it: real processes, real
embedded servers, signals, exit codes and what the command prints.

`up` is started as a child process of the test and stopped by its PID; the
servers it starts are checked through the PIDs it records in endpoints.json.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import pytest

from eventplane.embedded import EmbeddedNats, EmbeddedPostgres
from eventplane.objects.events import StreamId
from eventplane.store import Append, Context, EventStore
from eventplane.store.migrate import available as available_migrations
from tests.support.servers import drop_database, fresh_database

CLI = [sys.executable, "-m", "eventplane.cli.server"]
START_DEADLINE = 60.0
STOP_DEADLINE = 30.0
CONTEXT = Context(actor="test", verb="create")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without any EVENTPLANE_* setting of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTPLANE_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Result:
    code: int
    out: str
    err: str


async def eventplane(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> Result:
    proc = await asyncio.create_subprocess_exec(*CLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                env=env or clean_env())
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Result(proc.returncode, out.decode(), err.decode())


class Launched:
    """A long-running `eventplane` subcommand started by a test, its output in files."""

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        n = len(list(workdir.glob("launched-*.err")))
        self.out_path = workdir / f"launched-{n}.out"
        self.err_path = workdir / f"launched-{n}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([*CLI, *args], stdout=out, stderr=err, cwd=workdir, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return f"stdout:\n{self.out_path.read_text()}\nstderr:\n{self.err_path.read_text()}"

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_DEADLINE) -> int:
        """Send `sig` and wait for the exit code; fail when it takes longer than `timeout`."""
        self.proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"pid {self.pid} still running {timeout}s after {sig!r}\n" + \
                self.output()
            await asyncio.sleep(0.05)
        return self.proc.returncode


# The tests of the embedded servers' life cycle count events exactly: they run `up` without the
# components that write on their own (the node agent registers its node, controllers make
# ServiceAccounts); tests/e2e/test_up_workloads.py runs the whole system.
QUIET = ("--no-scheduler", "--no-controllers", "--no-nodeagent")


@pytest.fixture
def data_root():
    """Where a test's `up` keeps its data: outside pytest's tmp tree, because any other pytest session
    starting on this machine resets /tmp/pytest-of-USER to 0700, and the embedded PostgreSQL, which
    runs as its own user, must be able to reach its data directory."""
    path = Path(tempfile.mkdtemp(prefix="ep-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def launch(tmp_path):
    launched: list[Launched] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Launched:
        # Each `up` gets its own API port and its own HOME, so ~/.kube/config is the test's.
        env = {**(env or clean_env()), "EVENTPLANE_API_PORT": str(free_port()), "HOME": str(tmp_path / "home")}
        p = Launched(list(args), tmp_path, env)
        launched.append(p)
        return p

    yield start
    for p in launched:  # only what this test started, by PID
        if p.proc.poll() is None:
            p.proc.terminate()
            try:
                p.proc.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()


async def wait_until_up(data_dir: Path, process: Launched) -> dict:
    """Poll `eventplane status -o json` until `process` has written endpoints.json and its
    database and NATS are up."""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        assert process.proc.poll() is None, f"eventplane exited with {process.proc.returncode}\n" + process.output()
        r = await eventplane("status", "--data-dir", str(data_dir), "-o", "json")
        # endpoints.json may still be an earlier `up`'s: wait for this one's.
        if r.code == 0 and endpoints(data_dir)["pids"]["eventplane"] == process.pid:
            report = json.loads(r.out)
            if report["database"]["up"] and report["nats"]["up"] and (report["api"] or {}).get("up"):
                return report
        assert time.monotonic() < deadline, f"not up within {START_DEADLINE}s: {r}\n" + process.output()
        await asyncio.sleep(0.2)


def endpoints(data_dir: Path) -> dict:
    return json.loads((data_dir / "endpoints.json").read_text())


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def stop_orphans(pids: dict[str, int], data_dir: Path) -> None:
    """Stop the servers a killed `up` of this test left, if the test failed before `up` did."""
    for name, sig in (("nats", signal.SIGTERM), ("postgres", signal.SIGINT)):
        pid = pids.get(name)
        if pid and not gone(pid) and str(data_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, sig)


def configmap(name: str, **data: str) -> Append:
    uid = str(uuid.uuid4())
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "uid": uid}, "data": data}
    return Append(StreamId("", "configmaps", "default", name), "Created", obj, uid=uid)


async def head_of(database_url: str) -> int:
    """Positions already taken (the API server's bootstrap namespaces among them)."""
    async with EventStore.connect(database_url) as store:
        return await store.head()


async def append_configmaps(database_url: str, count: int) -> None:
    async with EventStore.connect(database_url) as store:
        for i in range(count):
            await store.append(configmap(f"cm-{i}", n=str(i)), CONTEXT)


async def stream_last_seq(nats_url: str, stream: str, *, at_least: int, timeout: float = 15.0) -> int:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            try:
                last = (await js.stream_info(stream)).state.last_seq
            except nats.js.errors.NotFoundError:
                last = 0
            if last >= at_least or time.monotonic() > deadline:
                return last
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


# --- up: stop, resume, recover --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_up_stops_cleanly_and_resumes_with_its_data(tmp_path, launch, data_root):
    data = data_root / "data"
    up = launch("up", "--data-dir", str(data), *QUIET)
    report = await wait_until_up(data, up)
    assert report["data_dir"] == str(data)
    assert report["api"]["url"].startswith("https://127.0.0.1:") and report["api"]["up"]
    assert report["kubeconfig"] == str(data / "kubeconfig")
    first = endpoints(data)
    assert first["embedded"] == {"postgres": True, "nats": True}
    assert (data / "postgres" / "PG_VERSION").exists()

    base = await head_of(first["database_url"])
    await append_configmaps(first["database_url"], 5)
    assert await stream_last_seq(first["nats_url"], "EVENTS", at_least=base + 5) == base + 5  # up runs the relay

    assert await up.stop(signal.SIGTERM) == 0, up.output()
    assert gone(first["pids"]["postgres"]) and gone(first["pids"]["nats"])
    down = json.loads((await eventplane("status", "--data-dir", str(data), "-o", "json")).out)
    assert not down["database"]["up"] and not down["nats"]["up"]

    again = launch("up", "--data-dir", str(data), *QUIET)
    await wait_until_up(data, again)
    second = endpoints(data)
    async with EventStore.connect(second["database_url"]) as store:
        assert await store.head() == base + 5
    r = await eventplane("verify", "--data-dir", str(data))
    assert (r.code, r.out.strip()) == (0, f"ok: {base + 5} events verified (positions 1..{base + 5})"), r
    assert await again.stop(signal.SIGINT) == 0, again.output()
    assert gone(second["pids"]["postgres"]) and gone(second["pids"]["nats"])


@pytest.mark.slow
async def test_up_after_a_killed_up_resumes_and_no_server_outlives_it(tmp_path, launch, data_root):
    data = data_root / "data"
    up = launch("up", "--data-dir", str(data), *QUIET)
    await wait_until_up(data, up)
    base = await head_of(endpoints(data)["database_url"])
    await append_configmaps(endpoints(data)["database_url"], 2)
    left = endpoints(data)["pids"]
    assert await up.stop(signal.SIGKILL) == -signal.SIGKILL

    try:
        # The servers end with the process that started them (PR_SET_PDEATHSIG), and a new
        # `up` stops whatever is still shutting down before it starts its own.
        second = launch("up", "--data-dir", str(data), *QUIET)
        await wait_until_up(data, second)
        assert gone(left["postgres"]) and gone(left["nats"])
        async with EventStore.connect(endpoints(data)["database_url"]) as store:
            assert await store.head() == base + 2

        r = await eventplane("up", "--data-dir", str(data), timeout=30)
        assert r.code == 1 and f"already running on {data}" in r.err, r
        assert await second.stop() == 0, second.output()
    finally:
        stop_orphans(left, data)


# --- up with existing servers ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_up_uses_existing_servers_by_url(tmp_path, launch, data_root):
    existing = data_root / "existing"
    pg, ns = EmbeddedPostgres(existing), EmbeddedNats(existing)
    pg.start()
    try:
        ns.start()
        data = data_root / "data"
        up = launch("up", "--data-dir", str(data), *QUIET, "--database-url", pg.url, "--nats-url", ns.url)
        await wait_until_up(data, up)
        assert not (data / "postgres").exists() and not (data / "nats").exists()
        e = endpoints(data)
        assert e["embedded"] == {"postgres": False, "nats": False}
        assert (e["database_url"], e["nats_url"]) == (pg.url, ns.url)
        assert set(e["pids"]) == {"eventplane"}

        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SELECT to_regclass('events') IS NOT NULL")  # up migrated it
        finally:
            await conn.close()

        base = await head_of(pg.url)
        nc = await nats.connect(ns.url)
        try:
            seen = await nc.subscribe("ep.ev.core.configmaps.>")
            await append_configmaps(pg.url, 1)
            msg = await seen.next_msg(timeout=15)
            assert msg.subject == "ep.ev.core.configmaps.default.cm-0._"
        finally:
            await nc.close()
        assert await stream_last_seq(ns.url, "EVENTS", at_least=base + 1) == base + 1

        assert await up.stop() == 0, up.output()
        conn = await asyncpg.connect(pg.url)  # existing servers are not ours to stop
        await conn.close()
    finally:
        ns.stop()
        pg.stop()


async def test_migrate_takes_the_database_from_the_environment(servers):
    url = await fresh_database(servers, migrated=False)
    try:
        env = clean_env(EVENTPLANE_DATABASE_URL=url)
        r = await eventplane("migrate", env=env)
        assert (r.code, r.out.splitlines()) == (0, [f"applied {m.name}" for m in available_migrations()]), r
        r = await eventplane("migrate", env=env)
        assert (r.code, r.out.strip()) == (0, "nothing to apply"), r
        # A flag beats the environment.
        elsewhere = clean_env(EVENTPLANE_DATABASE_URL="postgresql://nobody@/nowhere?host=/nonexistent")
        r = await eventplane("verify", "--database-url", url, env=elsewhere)
        assert r.code == 0, r
    finally:
        await drop_database(servers, url)


# --- the relay as its own process ------------------------------------------------------------------------------


async def test_relay_runs_standalone_and_stops_on_sigterm(servers, database_url, bus_names, launch):
    relay = launch("relay", "--database-url", database_url, "--nats-url", servers.nats_url,
                   "--stream", bus_names["stream"], "--subject-prefix", bus_names["prefix"])
    try:
        await append_configmaps(database_url, 3)
        assert await stream_last_seq(servers.nats_url, bus_names["stream"], at_least=3) == 3, relay.output()
        assert await relay.stop(signal.SIGTERM) == 0, relay.output()
    finally:
        nc = await nats.connect(servers.nats_url)
        try:
            await nc.jetstream().delete_stream(bus_names["stream"])
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()


# --- status, verify, rebuild -----------------------------------------------------------------------------------


async def test_status_without_endpoints_fails_with_a_clear_message(tmp_path):
    r = await eventplane("status", "--data-dir", str(tmp_path))
    assert r.code == 1
    assert f"no {tmp_path / 'endpoints.json'}" in r.err and "eventplane up" in r.err, r


async def test_verify_names_the_tampered_position(store, database_url):
    for i in range(8):
        await store.append(configmap(f"cm-{i}"), CONTEXT)
    r = await eventplane("verify", "--database-url", database_url)
    assert (r.code, r.out.strip()) == (0, "ok: 8 events verified (positions 1..8)"), r

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE events SET payload = $1 WHERE position = 5", b"\x80")
    finally:
        await conn.close()

    r = await eventplane("verify", "--database-url", database_url)
    assert r.code == 1 and r.out.startswith("broken at position 5: "), r
    r = await eventplane("verify", "--database-url", database_url, "-o", "json")
    assert r.code == 1 and json.loads(r.out)["broken_at"] == 5, r
    r = await eventplane("verify", "--database-url", database_url, "--from", "1", "--to", "4")
    assert (r.code, r.out.strip()) == (0, "ok: 4 events verified (positions 1..4)"), r


async def test_projections_rebuild_counts_live_objects(store, database_url):
    appends = [configmap(f"cm-{i}") for i in range(3)]
    for a in appends:
        await store.append(a, CONTEXT)
    gone_one = appends[0]
    await store.append(Append(gone_one.stream, "Deleted", gone_one.object, uid=gone_one.uid), CONTEXT)
    r = await eventplane("projections", "rebuild", "--database-url", database_url)
    assert (r.code, r.out.strip()) == (0, "rebuilt objects: 2 live objects"), r
    assert [o["metadata"]["name"] for o in await store.list(group="", resource="configmaps")] == ["cm-1", "cm-2"]


@pytest.mark.slow
async def test_up_serves_the_kubernetes_api_and_plain_kubectl_works(tmp_path, launch, data_root):
    """After `up`, a plain `kubectl get ns` works: the eventplane context was merged into ~/.kube/config."""
    data = data_root / "data"
    home = tmp_path / "home"
    up = launch("up", "--data-dir", str(data))
    await wait_until_up(data, up)
    e = endpoints(data)
    assert e["api_url"].startswith("https://127.0.0.1:") and Path(e["kubeconfig"]).exists()
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "get", "ns", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**clean_env(), "HOME": str(home), "KUBECONFIG": ""})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "default" in out.decode() and "kube-system" in out.decode()
    config = (home / ".kube" / "config").read_text()
    assert "current-context: eventplane" in config
    assert await up.stop(signal.SIGTERM) == 0, up.output()


async def test_audit_prune_deletes_only_records_older_than_the_cutoff(database_url):
    from datetime import datetime, timedelta, timezone

    from eventplane.store.audit import COLUMNS, AuditRecord

    now = datetime.now(timezone.utc)
    ages = [400, 100, 91, 89, 1, 0]                       # days
    records = [AuditRecord(audit_id=uuid.uuid4(), stage="ResponseComplete", level="Metadata",
                           time_received=now - timedelta(days=d), time_completed=now - timedelta(days=d),
                           user_name="alice", verb="get", request_uri="/api", outcome="allowed", transport="rest")
               for d in ages]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table("audit_events", records=[r.row() for r in records], columns=COLUMNS)
        r = await eventplane("audit", "prune", "--database-url", database_url, "--older-than", "90d", "--dry-run")
        assert r.code == 0 and r.out.startswith("would delete 3 audit records"), r
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 6
        r = await eventplane("audit", "prune", "--database-url", database_url, "--older-than", "90d",
                             "--batch-size", "2")
        assert r.code == 0 and r.out.startswith("deleted 3 audit records"), r
        left = sorted(round((now - t).total_seconds() / 86400)
                      for (t,) in await conn.fetch("SELECT time_received FROM audit_events"))
        assert left == [0, 1, 89]
        r = await eventplane("audit", "prune", "--database-url", database_url, "--before", "yesterday")
        assert r.code == 1 and "RFC 3339" in r.err, r
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 3
    finally:
        await conn.close()
