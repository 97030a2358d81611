"""`eventplane up`: the whole system on one machine, in the foreground.

Starts embedded PostgreSQL and NATS in the data directory (unless URLs of
existing servers are given), applies migrations, writes DIR/endpoints.json for
`eventplane status` and the other commands, then runs the components that
exist in this process until SIGINT or SIGTERM: the relay, the API server, the
scheduler, the controller manager and a node agent for this machine (Docker
when its socket answers, else host processes), each leader-elected or
node-scoped as if it ran alone (`--no-scheduler`, `--no-controllers`,
`--no-nodeagent` leave one out; `--simulated-nodes N` adds N kwok-like nodes for
scale experiments). Stopping cancels the components (containers keep running,
as they do when a kubelet stops: the next `up` adopts them), then stops NATS,
then PostgreSQL. A later `up` on the same directory resumes with all its data.

One `up` per data directory at a time: it holds DIR/up.lock for its life.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import time
from contextlib import ExitStack, closing
from dataclasses import replace
from pathlib import Path
from typing import IO

import asyncpg

from eventplane import config
from eventplane.api.server import ApiServer
from eventplane.auth.certs import issue_client_cert
from eventplane.auth.kubeconfig import default_path, merge_into, write_kubeconfig
from eventplane.auth.tokens import ensure_user_token
from eventplane.bus import BusConfig, run_relay
from eventplane.client import Client
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
    group = p.add_argument_group("components")
    group.add_argument("--no-scheduler", action="store_true", help="do not run the scheduler")
    group.add_argument("--no-controllers", action="store_true", help="do not run the controller manager")
    group.add_argument("--controllers", metavar="A,B", default=None,
                       help="the controllers to run (names, `all`, `-name`; default: the default set)")
    group.add_argument("--no-nodeagent", action="store_true", help="do not run a node agent for this machine")
    group.add_argument("--node-name", default=os.environ.get("EVENTPLANE_NODE_NAME") or socket.gethostname().lower(),
                       help="this machine's Node (default: $EVENTPLANE_NODE_NAME or the host name)")
    group.add_argument("--runtime", choices=("auto", "docker", "process"), default="auto",
                       help="the node agent's runtime (default: Docker when its socket answers, else host "
                            "processes, which are not isolated)")
    group.add_argument("--proxy-services", action="store_true",
                       help="let the node agent serve Service ClusterIPs (adds each as a /32 on lo; needs root)")
    group.add_argument("--simulated-nodes", type=int, default=0, metavar="N",
                       help="also run N simulated nodes (kwok-like: pods turn Running without containers; for "
                            "scale tests)")
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
                async with contextlib.AsyncExitStack() as clients:
                    def client_as(component: str, user: str, groups: tuple[str, ...] = ()) -> Client:
                        config = write_component_kubeconfig(api, data_dir, component, user, groups)
                        # Requests over NATS (cheaper for the API server than HTTPS), watches over REST.
                        return Client.from_kubeconfig(str(config), user_agent=f"eventplane-{component}",
                                                      nats_url=endpoints.nats_url)
                    started = await start_components(tasks, client_as, clients, endpoints.nats_url, data_dir, args)
                    print(summary(data_dir, path, final, started), flush=True)
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


async def start_components(tasks: asyncio.TaskGroup, client_as, clients: contextlib.AsyncExitStack, nats_url: str,
                           data_dir: Path, args: argparse.Namespace) -> list[str]:
    """The scheduler, controllers and node agent as tasks of `up`, each through the same entry point as
    its own command and each as its own user — Kubernetes' names, so history and audit say who acted
    (system:kube-scheduler, system:kube-controller-manager, system:node:NAME); returns a line per
    component for the summary."""
    from nodeagent import choose_runtime, run_nodeagent
    from nodeagent.simulated import run_simulated_nodes
    from reconcilers.manager import resolve_names, run_controllers
    from reconcilers.scheduler.scheduler import run_scheduler

    identity = f"{socket.gethostname().lower()}_{os.getpid()}"
    lines = []
    if not args.no_scheduler:
        client = await clients.enter_async_context(client_as("scheduler", "system:kube-scheduler"))
        tasks.create_task(run_scheduler(client, identity=identity), name="scheduler")
        lines.append("scheduler   default-scheduler (leader-elected)")
    if not args.no_controllers:
        try:
            names = resolve_names(args.controllers)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        client = await clients.enter_async_context(client_as("controllers", "system:kube-controller-manager"))
        tasks.create_task(run_controllers(client, names=names, identity=identity, nats_url=nats_url),
                          name="controllers")
        lines.append(f"controllers {', '.join(sorted(names))}")
    if not args.no_nodeagent:
        state_dir = data_dir / "nodeagent"
        runtime = await choose_runtime(None if args.runtime == "auto" else args.runtime, args.node_name,
                                       data_dir=state_dir)
        client = await clients.enter_async_context(
            client_as("nodeagent", f"system:node:{args.node_name}", ("system:nodes",)))
        tasks.create_task(run_nodeagent(client, nats_url, node_name=args.node_name, runtime=runtime,
                                        data_dir=state_dir, proxy_services=args.proxy_services), name="nodeagent")
        isolation = "containers" if runtime.name == "docker" else "host processes, NOT isolated"
        proxy = ", Services proxied on lo" if args.proxy_services else ""
        lines.append(f"node        {args.node_name} (runtime {runtime.name}: {isolation}{proxy})")
    if args.simulated_nodes > 0:
        client = await clients.enter_async_context(
            client_as("simulated-nodes", "system:node:simulated", ("system:nodes",)))
        tasks.create_task(run_simulated_nodes(client, nats_url, count=args.simulated_nodes), name="simulated-nodes")
        lines.append(f"simulated   {args.simulated_nodes} nodes (no containers: a tool for scale tests)")
    return lines


def write_component_kubeconfig(api: ApiServer, data_dir: Path, component: str, user: str,
                               groups: tuple[str, ...]) -> Path:
    """DIR/components/NAME.kubeconfig: a client certificate for `user` signed by the cluster CA, made
    anew on every start (valid for a year, like every client certificate of issue_client_cert), and a
    bearer token of the same user from DIR/tokens.csv, kept across starts, for the NATS API (`up`'s
    components send their requests there). The same file runs the component as a process of its own,
    over REST: `eventplane scheduler --kubeconfig DIR/components/scheduler.kubeconfig`."""
    path = data_dir / "components" / f"{component}.kubeconfig"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    cert, key = issue_client_cert(api.pki, user, groups)
    token = ensure_user_token(data_dir / "tokens.csv", user, groups)
    write_kubeconfig(path, server_url=api.url, ca_pem=api.pki.ca_pem, user_name=user, client_cert_pem=cert,
                     client_key_pem=key, token=token)
    return path


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


def summary(data_dir: Path, endpoints_path: Path, e: Endpoints, components: list[str] = ()) -> str:
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
        *(f"  {line}" for line in components),
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
