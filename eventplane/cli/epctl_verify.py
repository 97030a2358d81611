"""`epctl verify [--from RV] [--to RV]`: the server walks the log's hash chain and names the
first broken link (GET history.eventplane.io/v1/verify, or the NATS API's verify subject).
Exit 1 when the chain is broken."""
from __future__ import annotations

import argparse
import json

from eventplane.client import Client
from eventplane.client import integrity

from .epctl_output import UsageError

HELP = "Check the event log's hash chain"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", type=int, metavar="RV",
                   help="first position (default: the first stored one; the link into it is checked too)")
    p.add_argument("--to", dest="end", type=int, metavar="RV", help="last position (default: the head)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")


def require_rest(client: Client, command: str) -> None:
    """Export and import stream a whole log: REST only, refused clearly with --via nats."""
    try:
        integrity.rest_of(client, command)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


async def run(args: argparse.Namespace, client: Client) -> int:
    r = await integrity.verify(client, start=args.start, end=args.end)
    if args.output == "json":
        print(json.dumps(r))
    elif r["ok"] and not r["checked"]:
        print(f"ok: 0 events verified (none from position {r['first']})")
    elif r["ok"]:
        print(f"ok: {r['checked']} events verified (positions {r['first']}..{r['last']})")
    else:
        print(f"broken at position {r['brokenAt']}: {r['reason']} ({r['checked']} events before it verified)")
    return 0 if r["ok"] else 1
