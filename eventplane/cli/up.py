"""`eventplane up`: the whole system on one machine, in the foreground.

Starts embedded PostgreSQL and NATS in the data directory (unless URLs of
existing servers are given), applies migrations, writes DIR/endpoints.json for
`eventplane status` and the other commands, then runs the components that
exist in this process until SIGINT or SIGTERM: today the relay. Stopping
cancels the components, then stops NATS, then PostgreSQL. A later `up` on the
same directory resumes with all its data.

One `up` per data directory at a time: it holds DIR/up.lock for its life.
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import time
from contextlib import ExitStack, closing
from dataclasses import replace
from pathlib import Path
from typing import IO

import asyncpg

from eventplane import config
from eventplane.api.server import ApiServer
from eventplane.auth.kubeconfig import default_path, merge_into, write_kubeconfig
from eventplane.bus import BusConfig, run_relay
from eventplane.config import ConfigError, Endpoints
from eventplane.embedded import EmbeddedNats, EmbeddedPostgres
from eventplane.store import migrate

from . import options
from .running import StopRequest, run, run_until_stopped

log = logging.getLogger("eventplane.up")

LOCK_FILE = "up.lock"
LEFTOVER_STOP_TIMEOUT = 30.0


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("up", help="run eventplane on this machine (embedded PostgreSQL and NATS by default)")
    options.add_data_dir(p)
    p.add_argument("--database-url", metavar="URL",
                   help=f"use this PostgreSQL instead of an embedded one (default: ${config.ENV_DATABASE_URL})")
    options.add_nats_url(p)
    options.add_bus_options(p)
    options.add_api_options(p)
    p.add_argument("--no-kubeconfig-merge", action="store_true",
                   help="write DIR/kubeconfig only; leave ~/.kube/config alone")
    p.set_defaults(func=up_command)


def up_command(args: argparse.Namespace) -> int:
    stop = StopRequest().install()
    data_dir = config.resolve_data_dir(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = config.first(args.database_url, os.environ.get(config.ENV_DATABASE_URL))
    nats_url = config.first(args.nats_url, os.environ.get(config.ENV_NATS_URL))
    bus = options.bus_config(args)
    with ExitStack() as cleanup:
        cleanup.enter_context(_hold(data_dir))
        _stop_leftovers(data_dir)
        # Signals only set `stop` here; it is checked between steps, so a server
        # is never left half-started, and cleanup runs in reverse order.
        pg = nats = None
        if not database_url:
            pg = EmbeddedPostgres(data_dir)
            cleanup.callback(_stopping, "postgres", pg.stop)
            log.info("starting embedded PostgreSQL in %s", pg.pgdata)
            database_url = pg.start()
        if not nats_url and not stop.requested:
            nats = EmbeddedNats(data_dir)
            cleanup.callback(_stopping, "nats", nats.stop)
            log.info("starting embedded NATS in %s", nats.store_dir)
            nats_url = nats.start()
        if stop.requested:
            log.info("stopping before start-up finished (%s)", stop.signal_name)
            return 0
        endpoints = Endpoints(
            database_url=database_url, nats_url=nats_url,
            pids={"eventplane": os.getpid(),
                  **({"postgres": pg.pid} if pg else {}), **({"nats": nats.pid} if nats else {})},
            embedded={"postgres": pg is not None, "nats": nats is not None},
            bus={"stream": bus.stream, "subject_prefix": bus.subject_prefix})
        return run(_serve(stop, data_dir, endpoints, bus, args))


async def _serve(stop: StopRequest, data_dir: Path, endpoints: Endpoints, bus: BusConfig,
                 args: argparse.Namespace) -> int:
    async def components() -> None:
        conn = await asyncpg.connect(endpoints.database_url)
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
        log.info("migrations: %s", ", ".join(applied) if applied else "nothing to apply")
        api = ApiServer(options.api_config(args, endpoints.database_url, endpoints.nats_url, bus, data_dir))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(run_relay(endpoints.database_url, endpoints.nats_url, bus), name="relay")
            await api.start()
            try:
                kubeconfig = write_admin_kubeconfig(api, data_dir, merge=not args.no_kubeconfig_merge)
                final = replace(endpoints, api_url=api.url, kubeconfig=str(kubeconfig))
                path = final.write(data_dir)
                print(summary(data_dir, path, final), flush=True)
                await asyncio.Event().wait()
            finally:
                await asyncio.shield(api.stop())

    try:
        stopped = await run_until_stopped(stop, components())
    except Exception:
        log.exception("a component failed; stopping")
        return 1
    if not stopped:
        log.error("the components ended by themselves; stopping")
        return 1
    log.info("stopping (%s)", stop.signal_name)
    return 0


def write_admin_kubeconfig(api: ApiServer, data_dir: Path, *, merge: bool) -> Path:
    """DIR/kubeconfig for the admin, merged into the user's kubeconfig as kind does (unless told not to)."""
    path = data_dir / "kubeconfig"
    write_kubeconfig(path, server_url=api.url, ca_pem=api.pki.ca_pem, user_name="eventplane-admin",
                     token=api.admin_token)
    if merge:
        target = default_path()
        merge_into(target, path)
        log.info("merged context eventplane into %s and made it current", target)
    return path


def summary(data_dir: Path, endpoints_path: Path, e: Endpoints) -> str:
    def how(name: str) -> str:
        return f"embedded, pid {e.pids[name]}" if e.embedded.get(name) else "external"

    return "\n".join([
        f"eventplane is up in {data_dir}",
        f"  database    {e.database_url}  ({how('postgres')})",
        f"  nats        {e.nats_url}  ({how('nats')})",
        f"  events      stream {e.bus['stream']}, subjects {e.bus['subject_prefix']}.>",
        f"  api         {e.api_url}",
        f"  kubeconfig  {e.kubeconfig}",
        f"  endpoints   {endpoints_path}",
        "Stop with Ctrl-C.",
    ])


def _stopping(name: str, stop: object) -> None:
    log.info("stopping %s", name)
    stop()  # type: ignore[operator]


def _hold(data_dir: Path) -> closing[IO[str]]:
    """Take DIR/up.lock, or fail saying which process has it. The kernel drops the
    lock when its holder dies, so a killed `up` never blocks the next one."""
    handle = open(data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"eventplane up is already running on {data_dir} (pid {holder})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return closing(handle)  # closing the file releases the lock


def _stop_leftovers(data_dir: Path) -> None:
    """An earlier `up` here that was killed outright (SIGKILL, OOM) may leave its
    embedded servers still shutting down (they get SIGTERM when their parent
    dies) or, off Linux, running. We hold the lock, so no `up` owns them any
    more: stop each one whose command line names this directory, and wait."""
    try:
        previous = Endpoints.read(data_dir)
    except ConfigError:
        return
    marks = {"postgres": (str(data_dir / "postgres"), signal.SIGINT), "nats": (str(data_dir / "nats.conf"),
                                                                             signal.SIGTERM)}
    for name, (mark, sig) in marks.items():
        pid = previous.pids.get(name)
        if not previous.embedded.get(name) or not pid or not _runs_with(pid, mark):
            continue
        log.warning("stopping %s (pid %d) left running by an earlier eventplane up on %s", name, pid, data_dir)
        try:
            os.kill(pid, sig)
            deadline = time.monotonic() + LEFTOVER_STOP_TIMEOUT
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _runs_with(pid: int, mark: str) -> bool:
    """True when process `pid` exists and `mark` is one of its arguments."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return mark.encode() in args


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited already
