"""`epctl export [--until RV|TIME|-DURATION] > FILE`: the history as a portable file (the
format is documented in eventplane/store/portable.py and docs/operations.md), streamed from
GET history.eventplane.io/v1/export to stdout as it arrives."""
from __future__ import annotations

import argparse
import sys

from eventplane.client import Client
from eventplane.client import integrity

from .epctl_verify import require_rest

HELP = "Write the event log as a portable NDJSON file to stdout"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--until", metavar="RV|TIME",
                   help="last event: a resourceVersion, an RFC 3339 time or -10m (default: the head)")


async def run(args: argparse.Namespace, client: Client) -> int:
    require_rest(client, "export")
    out = sys.stdout.buffer
    async for line in integrity.export_lines(client, {"until": args.until} if args.until else {}):
        out.write(line)
    out.flush()
    return 0
