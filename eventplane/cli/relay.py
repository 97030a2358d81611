"""`eventplane relay`: the relay from PostgreSQL to JetStream as a process of its own.

For a real deployment (compose.yaml) and for failure tests that SIGKILL it.
Start as many as you like: one holds the relay's advisory lock and publishes,
the others stand by on that lock and take over within moments of the leader's
death. SIGINT or SIGTERM stops it cleanly with exit code 0.
"""
from __future__ import annotations

import argparse
import logging

from eventplane.bus import run_relay

from . import options
from .running import StopRequest, run, run_until_stopped

log = logging.getLogger("eventplane.cli")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("relay", help="run the relay from PostgreSQL to JetStream in the foreground")
    options.add_database_source(p)
    options.add_nats_url(p)
    options.add_bus_options(p)
    p.set_defaults(func=relay_command)


def relay_command(args: argparse.Namespace) -> int:
    stop = StopRequest().install()
    database_url = options.database_url(args)
    nats_url = options.nats_url(args)
    bus = options.bus_config(args)
    log.info("relay: database %s, nats %s, stream %s, subjects %s.>", database_url, nats_url, bus.stream,
             bus.subject_prefix)
    stopped = run(run_until_stopped(stop, run_relay(database_url, nats_url, bus)))
    if not stopped:
        log.error("the relay ended by itself")
        return 1
    log.info("relay stopped (%s)", stop.signal_name)
    return 0
