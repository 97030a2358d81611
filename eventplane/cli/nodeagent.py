"""`eventplane nodeagent`: one node's agent (its kubelet) as a process of its own.

Registers the node, renews its lease in NATS KV and runs the pods bound to it
(nodeagent/). The runtime is Docker when its socket answers, else host
processes (not isolated), unless --runtime says which; the choice is logged.
SIGINT or SIGTERM stops the agent and leaves every container running: a
restarted agent adopts them.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from eventplane import config

from . import options
from .running import StopRequest, run, run_until_stopped

log = logging.getLogger("eventplane.cli")

DEFAULT_STATE_DIR = "/var/lib/eventplane/nodeagent"


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("nodeagent", help="run a node agent (pods bound to this node as containers)")
    p.add_argument("--node-name", default=os.environ.get("EVENTPLANE_NODE_NAME") or socket.gethostname().lower(),
                   help="the Node's name (default: $EVENTPLANE_NODE_NAME or the host name)")
    p.add_argument("--zone", help="topology.kubernetes.io/zone label of the node")
    p.add_argument("--node-label", action="append", default=[], metavar="KEY=VALUE", help="another node label")
    p.add_argument("--kubeconfig", help="kubeconfig of the API server (default: $KUBECONFIG, DIR/kubeconfig with "
                                        "--data-dir, else ~/.kube/config)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="eventplane data directory written by `eventplane up`: its endpoints.json names NATS and "
                        "its kubeconfig the API")
    options.add_nats_url(p)
    options.add_via(p)
    p.add_argument("--runtime", choices=("auto", "docker", "process"), default="auto",
                   help="container runtime (default: docker when its socket answers, else process)")
    p.add_argument("--state-dir", help=f"where pod volumes live (default: DIR/nodeagent, else {DEFAULT_STATE_DIR})")
    p.add_argument("--node-ip", help="the node's InternalIP (default: the first address of an interface that is up)")
    p.add_argument("--pod-manifest-path", metavar="DIR", help="a folder of static pod manifests, mirrored into the API")
    p.add_argument("--allow-privileged", action="store_true", help="run containers that ask to be privileged")
    p.add_argument("--proxy-services", action="store_true",
                   help="proxy Services' ClusterIPs and nodePorts to their ready endpoints (TCP, UDP; adds each "
                        "ClusterIP to lo) and answer cluster DNS on kube-dns's address")
    p.set_defaults(func=nodeagent_command)


def nodeagent_command(args: argparse.Namespace) -> int:
    from nodeagent import run_nodeagent

    stop = StopRequest().install()
    nats_url = options.nats_url(args)
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or (
        str(Path(config.resolve_data_dir(args.data_dir, os.environ)) / "kubeconfig") if args.data_dir else None)
    state_dir = args.state_dir or (str(Path(config.resolve_data_dir(args.data_dir, os.environ)) / "nodeagent")
                                   if args.data_dir else DEFAULT_STATE_DIR)
    labels = {}
    for item in args.node_label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise config.ConfigError(f"--node-label wants KEY=VALUE, not {item!r}")
        labels[key] = value
    runtime = None if args.runtime == "auto" else args.runtime

    async def main() -> None:
        async with options.component_client(args, kubeconfig, user_agent=f"eventplane-nodeagent/{args.node_name}",
                                            nats_url=nats_url) as client:
            await run_nodeagent(client, nats_url, node_name=args.node_name, zone=args.zone, runtime=runtime,
                                data_dir=state_dir, node_ip=args.node_ip, allow_privileged=args.allow_privileged,
                                labels=labels, pod_manifest_path=args.pod_manifest_path,
                                proxy_services=args.proxy_services)

    log.info("node agent %s: API from %s, NATS %s", args.node_name, kubeconfig or "the default kubeconfig", nats_url)
    stopped = run(run_until_stopped(stop, main()))
    if not stopped:
        log.error("the node agent ended by itself")
        return 1
    log.info("node agent stopped (%s); its containers keep running", stop.signal_name)
    return 0
