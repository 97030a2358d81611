"""`epctl replay --to RV|TIME|-DURATION`: the server rebuilds the objects projection as it was
at that point, in a scratch table, and says what differs from live state, per resource
(GET history.eventplane.io/v1/replay, or the NATS API's replay subject). `--controller NAME`
is refused: no controllers exist yet."""
from __future__ import annotations

import argparse
import json

from eventplane.client import Client
from eventplane.client import integrity

HELP = "Compare the state at a past point with the live state"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, metavar="RV|TIME",
                   help="the point to replay to: a resourceVersion, an RFC 3339 time or -10m")
    p.add_argument("--controller", metavar="NAME",
                   help="feed the events to one controller's decisions (not available: no controllers exist yet)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")


async def run(args: argparse.Namespace, client: Client) -> int:
    r = await integrity.replay(client, args.to, controller=args.controller)
    if args.output == "json":
        print(json.dumps(r))
        return 0
    print(f"replayed to position {r['at']} (live head {r['head']}): {r['objectsThen']} objects then, "
          f"{r['objectsNow']} now")
    if not r["kinds"]:
        print("no differences")
    for kind, c in r["kinds"].items():
        print(f"{kind}: {len(c['created'])} created, {len(c['deleted'])} deleted, {len(c['changed'])} changed since")
        for what in ("created", "deleted", "changed"):
            if c[what]:
                print(f"  {what}: {' '.join(c[what])}")
    return 0
