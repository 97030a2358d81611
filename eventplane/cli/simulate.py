"""`eventplane simulate-nodes`: N simulated nodes, for scale tests and benchmarks (like kwok).

Registers the nodes, holds their leases in NATS KV and turns the pods bound
to them Running and Ready without running any container
(nodeagent/simulated, docs/nodes.md). Not for real workloads: nothing runs.
SIGINT or SIGTERM stops it; the nodes stay registered, and the node lifecycle
controller marks them NotReady once their leases lapse.
"""
from __future__ import annotations

import argparse
import logging
import os

from eventplane import config

from . import options
from .running import StopRequest, run, run_until_stopped

log = logging.getLogger("eventplane.cli")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "simulate-nodes",
        help="run N simulated nodes (no containers) for scale tests and benchmarks",
        description="Register N simulated nodes and act as their agent: hold their leases and turn the pods "
                    "bound to them Running and Ready without running any container, as kwok does. A tool for "
                    "scale tests and benchmarks, not for real workloads. Pods with restartPolicy Never or "
                    "OnFailure end after sim.eventplane.io/run-seconds (default 1 s) with exit code "
                    "sim.eventplane.io/exit-code (default 0); sim.eventplane.io/ready-seconds delays readiness. "
                    "See docs/nodes.md.")
    p.add_argument("--count", type=int, required=True, help="how many nodes")
    p.add_argument("--cpu", default="32", help="CPU capacity of each node (default: 32)")
    p.add_argument("--memory", default="128Gi", help="memory capacity of each node (default: 128Gi)")
    p.add_argument("--ephemeral-storage", default="100Gi", help="ephemeral-storage of each node (default: 100Gi)")
    p.add_argument("--pods-per-node", type=int, default=110, help="pod capacity of each node (default: 110)")
    p.add_argument("--zones", type=int, default=3,
                   help="spread the nodes over zone-0..zone-(N-1) (topology.kubernetes.io/zone; default: 3)")
    p.add_argument("--name-prefix", default="sim-", help="node names are PREFIX0, PREFIX1, … (default: sim-)")
    p.add_argument("--lease-duration", type=float, default=40.0,
                   help="seconds a node's lease lasts without renewal (default: 40)")
    p.add_argument("--renew-interval", type=float, default=10.0, help="seconds between renewals (default: 10)")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig to use (default: the data directory's, else $KUBECONFIG or ~/.kube/config)")
    options.add_nats_url(p)
    options.add_via(p)
    options.add_data_dir(p)
    p.set_defaults(func=simulate_command)


def kubeconfig_path(args: argparse.Namespace) -> str | None:
    if args.kubeconfig:
        return args.kubeconfig
    if args.data_dir or os.environ.get(config.ENV_DATA_DIR):
        try:
            return config.Endpoints.read(config.resolve_data_dir(args.data_dir)).kubeconfig
        except config.EndpointsMissing:
            return None
    return None


def simulate_command(args: argparse.Namespace) -> int:
    from nodeagent.simulated import SimulatorConfig, run_simulated_nodes

    stop = StopRequest().install()
    nats_url = options.nats_url(args)
    try:
        SimulatorConfig(count=args.count, cpu=args.cpu, memory=args.memory, pods_per_node=args.pods_per_node,
                        zones=args.zones, lease_duration=args.lease_duration, renew_interval=args.renew_interval)
    except ValueError as exc:
        raise config.ConfigError(str(exc)) from None

    async def main() -> None:
        async with options.component_client(args, kubeconfig_path(args), user_agent="eventplane-client/0.1",
                                            nats_url=nats_url) as client:
            await run_simulated_nodes(client, nats_url, count=args.count, cpu=args.cpu, memory=args.memory,
                                      zones=args.zones, pods_per_node=args.pods_per_node,
                                      name_prefix=args.name_prefix, ephemeral_storage=args.ephemeral_storage,
                                      lease_duration=args.lease_duration, renew_interval=args.renew_interval)

    log.info("simulate-nodes: %d simulated nodes for scale tests and benchmarks (no containers run)", args.count)
    stopped = run(run_until_stopped(stop, main()))
    if not stopped:
        log.error("simulate-nodes ended by itself")
        return 1
    log.info("simulate-nodes stopped (%s)", stop.signal_name)
    return 0
