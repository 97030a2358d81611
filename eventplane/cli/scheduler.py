"""`eventplane scheduler`: the scheduler as a process of its own (reconcilers/scheduler).

Talks to the API server named by a kubeconfig, like any client. Leader-elected
through the Lease kube-system/<scheduler name>, so several may run and one
acts; schedulers with different `--scheduler-name`s run side by side, each
binding only the pods whose spec.schedulerName names it. SIGINT or SIGTERM
releases the lease and exits with 0.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket

from reconcilers.scheduler import PROFILES, Options
from reconcilers.scheduler.scheduler import DEFAULT_SCHEDULER_NAME, run_scheduler

from . import options
from .running import StopRequest, run, run_until_stopped

log = logging.getLogger("eventplane.cli")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("scheduler", help="run the scheduler (leader-elected) in the foreground")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig of the API server (default: $KUBECONFIG)")
    p.add_argument("--context", help="kubeconfig context to use")
    options.add_nats_url(p)
    options.add_via(p)
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                   help=f"schedule the pods whose spec.schedulerName is this (default: {DEFAULT_SCHEDULER_NAME})")
    p.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_SCHEDULER_NAME,
                   help="scorers and weights: default-scheduler (spread, least allocated), bin-packing "
                        "(most allocated) or hybrid (balanced)")
    p.add_argument("--identity", default=None, help="leader-election identity (default: hostname_pid)")
    p.add_argument("--no-leader-elect", action="store_true", help="act without holding the lease")
    p.add_argument("--no-preemption", action="store_true", help="never preempt lower-priority pods")
    p.add_argument("--no-events", action="store_true",
                   help="post no Scheduled/FailedScheduling Events (and so record no decisions to explain)")
    borg = p.add_argument_group("Borg's optimizations (each on by default; off to measure it)")
    borg.add_argument("--no-equivalence-classes", action="store_true",
                      help="decide every pod alone instead of sharing work within an equivalence class")
    borg.add_argument("--no-score-cache", action="store_true", help="score every node afresh for every pod")
    borg.add_argument("--no-relaxed-randomization", action="store_true",
                      help="examine every node instead of stopping at percentageOfNodesToScore")
    borg.add_argument("--percentage-of-nodes-to-score", type=int, metavar="P", default=None,
                      help="fixed percentage instead of kube's adaptive max(50 - nodes/125, 5)")
    p.set_defaults(func=scheduler_command)


def options_from(args: argparse.Namespace) -> Options:
    return Options(equivalence_classes=not args.no_equivalence_classes, score_cache=not args.no_score_cache,
                   relaxed_randomization=not args.no_relaxed_randomization,
                   percentage_of_nodes_to_score=args.percentage_of_nodes_to_score)


def scheduler_command(args: argparse.Namespace) -> int:
    stop = StopRequest().install()
    identity = args.identity or f"{socket.gethostname()}_{os.getpid()}"

    async def main() -> None:
        async with options.component_client(args, args.kubeconfig, context=args.context,
                                            user_agent="eventplane-scheduler/0.1") as c:
            await run_scheduler(c, identity=identity, scheduler_name=args.scheduler_name,
                                profile=PROFILES[args.profile], options=options_from(args),
                                preemption_enabled=not args.no_preemption, leader_elect=not args.no_leader_elect,
                                events=not args.no_events)

    log.info("scheduler %s (%s), profile %s", args.scheduler_name, identity, args.profile)
    stopped = run(run_until_stopped(stop, main()))
    if not stopped:
        log.error("the scheduler ended by itself")
        return 1
    log.info("scheduler stopped (%s)", stop.signal_name)
    return 0
