"""`eventplane controllers`: the controller manager as a process of its own.

Runs the controllers of reconcilers/controllers/registry.py (all of them, or those named by
`--controllers`) against the API server of a kubeconfig, leader-elected on the Lease
kube-system/eventplane-controller-manager: start several, exactly one acts, and another takes
over within the lease duration when it dies (reconcilers/manager.py, docs/controllers.md).
SIGINT or SIGTERM stops it; the lease is released on the way out so a standby takes over at once.
"""
from __future__ import annotations

import argparse
import logging

from eventplane import config

from . import options
from .running import StopRequest, run, run_until_stopped
from .simulate import kubeconfig_path

log = logging.getLogger("eventplane.cli")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "controllers", help="run the controller manager (leader-elected) in the foreground",
        description="Run the controllers (ReplicaSet, Deployment, …) against the API server, leader-elected "
                    "through a Lease so that several processes can run and exactly one acts.")
    p.add_argument("--controllers", default=None, metavar="A,B",
                   help="the controllers to run: a comma-separated list of names, `all`, and `-name` to leave "
                        "one out (default: the default set; see --list)")
    p.add_argument("--list", action="store_true", help="print the known controllers and exit")
    p.add_argument("--identity", default=None,
                   help="this process's identity in the leader Lease (default: hostname_uuid)")
    p.add_argument("--lease-duration", type=float, default=15.0, help="seconds (default: 15)")
    p.add_argument("--renew-deadline", type=float, default=10.0, help="seconds (default: 10)")
    p.add_argument("--retry-period", type=float, default=2.0, help="seconds (default: 2)")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig to use (default: the data directory's, else $KUBECONFIG or ~/.kube/config)")
    options.add_nats_url(p)
    options.add_via(p)
    options.add_data_dir(p)
    p.set_defaults(func=controllers_command)


def controllers_command(args: argparse.Namespace) -> int:
    from reconcilers.controllers.registry import CONTROLLERS
    from reconcilers.manager import ControllerManager, resolve_names

    if args.list:
        default = set(resolve_names(None))
        for name in sorted(CONTROLLERS):
            print(f"{name}{'  (default)' if name in default else ''}")
        return 0
    try:
        names = resolve_names(args.controllers)
    except ValueError as exc:
        raise config.ConfigError(str(exc)) from None
    # Without NATS there is no node lifecycle controller: it reads the node leases.
    nats_url = options.optional_nats_url(args)
    stop = StopRequest().install()

    async def main() -> None:
        async with options.component_client(args, kubeconfig_path(args), user_agent="eventplane-client/0.1",
                                            nats_url=nats_url) as client:
            manager = ControllerManager(client, names=names, identity=args.identity, nats_url=nats_url,
                                        lease_duration=args.lease_duration, renew_deadline=args.renew_deadline,
                                        retry_period=args.retry_period)
            await manager.run()

    log.info("controllers: %s", ", ".join(names))
    stopped = run(run_until_stopped(stop, main()))
    if not stopped:
        log.error("controllers ended by itself")
        return 1
    log.info("controllers stopped (%s)", stop.signal_name)
    return 0
