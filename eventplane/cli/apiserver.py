"""`eventplane apiserver`: the Kubernetes API as a process of its own.

For a real deployment: several API servers behind a load balancer share one
PostgreSQL and one NATS, and one PKI/token directory (--data-dir). SIGINT or
SIGTERM stops it cleanly with exit code 0.
"""
from __future__ import annotations

import argparse
import logging

from eventplane import config
from eventplane.api.server import ApiServer

from . import options
from .running import StopRequest, run, run_until_stopped

log = logging.getLogger("eventplane.cli")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("apiserver", help="run the Kubernetes API server in the foreground")
    options.add_database_source(p)
    options.add_nats_url(p)
    options.add_bus_options(p)
    options.add_api_options(p)
    p.add_argument("--pki-dir", metavar="DIR", help="where the CA, serving certificate and token file live "
                                                    "(default: the data directory)")
    p.set_defaults(func=apiserver_command)


def apiserver_command(args: argparse.Namespace) -> int:
    stop = StopRequest().install()
    database_url = options.database_url(args)
    nats_url = options.nats_url(args)
    data_dir = config.resolve_data_dir(args.pki_dir or args.data_dir)
    api = ApiServer(options.api_config(args, database_url, nats_url, options.bus_config(args), data_dir))
    stopped = run(run_until_stopped(stop, api.serve_forever()))
    if not stopped:
        log.error("the API server ended by itself")
        return 1
    log.info("API server stopped (%s)", stop.signal_name)
    return 0
