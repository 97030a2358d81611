"""`eventplane`: the command that runs and operates the servers.

Parses the command line and hands it to one subcommand module: `up` (the
whole system on one machine), `status`, `relay` (one component as its own
process), and `migrate`, `verify`, `projections rebuild` (operations on the
log). Errors an operator can act on (a missing setting, a server that does not
answer) end in one line on stderr and exit code 1; anything else also logs its
traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import asyncpg
import nats.errors

from eventplane.config import ConfigError

from . import apiserver, auditretention, maintenance, relay, simulate, status, up
from . import scheduler
from . import controllers
from . import nodeagent
from .running import setup_logging

log = logging.getLogger("eventplane.cli")

ENV_LOG_LEVEL = "EVENTPLANE_LOG_LEVEL"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventplane",
        description="A Kubernetes-compatible control plane whose source of truth is an event log.")
    parser.add_argument("--log-level", default=os.environ.get(ENV_LOG_LEVEL, "info"),
                        choices=("debug", "info", "warning", "error"),
                        help=f"log level on stderr (default: ${ENV_LOG_LEVEL} or info)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (up, status, relay, apiserver, maintenance, auditretention, simulate, scheduler, controllers, nodeagent):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    sys.exit(execute(args))


def execute(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"eventplane: {exc}", file=sys.stderr)
    except asyncpg.UndefinedTableError as exc:
        print(f"eventplane: the database has no event tables ({exc}); run `eventplane migrate`", file=sys.stderr)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, nats.errors.Error) as exc:
        print(f"eventplane: {type(exc).__name__}: {exc}", file=sys.stderr)
    except Exception:
        log.exception("eventplane %s failed", args.command)
    return 1


if __name__ == "__main__":
    main()
