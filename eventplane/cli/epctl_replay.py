"""`epctl replay`: two ways of going back over the log.

`epctl replay --to RV|TIME|-DURATION`: the server rebuilds the objects projection as it was at
that point, in a scratch table, and says what differs from live state, per resource (GET
history.eventplane.io/v1/replay, or the NATS API's replay subject).

`epctl replay --controller NAME [--from RV|TIME] [--to RV|TIME]`: one controller's recorded
decisions, replayed here, in the client. The log up to `--to` is read through GET
history.eventplane.io/v1/export (REST only: a whole log is a stream), its events are fed in
order to reconcilers/replay.py, which rebuilds the world they describe, finds the writes the
controller made (by their causation) and runs the controller's pure decision function on the
world as it was just before them; this command prints, per decision, what was recorded and what
the function would do, and a summary. The server runs no controller code: it keeps the API free
of reconciler imports, and a changed controller can be tried against real history without
touching the cluster (`controller_replay(..., decide=...)` from Python). docs/history.md,
"Replaying a controller", says what is compared and what makes it imprecise.
"""
from __future__ import annotations

import argparse
import base64
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from eventplane.client import Client
from eventplane.client import integrity
from eventplane.objects.events import unpack
from reconcilers import replay as controller_replays
from reconcilers.controllers.registry import CONTROLLERS

from .epctl_output import UsageError, render

HELP = "Compare the state at a past point with the live state, or replay a controller's decisions"

DIFFER_EXIT = 2   # --controller: some replayed decision differs from the recorded one


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", metavar="RV|TIME",
                   help="the point to replay to: a resourceVersion, an RFC 3339 time or -10m (required without "
                        "--controller; with it, the last event read, default the head)")
    p.add_argument("--from", dest="start", metavar="RV|TIME",
                   help="with --controller: report only decisions whose first write is at or after this point")
    p.add_argument("--controller", metavar="NAME",
                   help="replay one controller's recorded decisions with its decision function and compare the "
                        "writes it would make with those recorded "
                        f"({', '.join(sorted(controller_replays.REPLAYABLE))}); exits {DIFFER_EXIT} when one differs")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")


async def run(args: argparse.Namespace, client: Client) -> int:
    if args.controller:
        return await run_controller(args, client)
    if args.start:
        raise UsageError("--from goes with --controller; replay of the state takes --to only")
    if not args.to:
        raise UsageError("replay needs --to RV|TIME|-DURATION (or --controller NAME)")
    r = await integrity.replay(client, args.to)
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


# --- --controller ---------------------------------------------------------------------------------

def check_controller(name: str) -> None:
    """A clear error for a name that cannot be replayed, naming those that can."""
    supported = ", ".join(sorted(controller_replays.REPLAYABLE))
    if name in controller_replays.REPLAYABLE:
        return
    if name in CONTROLLERS:
        raise UsageError(f"controller {name!r} cannot be replayed: its decisions are not yet fed to the replay "
                         f"(replayable controllers: {supported})")
    raise UsageError(f"unknown controller {name!r} (replayable controllers: {supported})")


async def controller_replay(client: Client, name: str, *, start: str | None = None, end: str | None = None,
                            decide: Callable[..., Any] | None = None) -> dict[str, Any]:
    """The ControllerReplay document: controller `name`'s decisions whose first write lies in
    start..end (RV, RFC 3339 time or -10m; default the whole log), replayed with its decision
    function, or with `decide` in its place (how a test or a person tries a changed controller)."""
    check_controller(name)
    try:
        integrity.rest_of(client, "replay --controller")
    except ValueError as exc:
        raise UsageError("replay --controller works over REST only (use --via rest): it reads the log through "
                         "the export, a stream, not one NATS request and its answer") from exc
    first = 0
    if start:
        # a position is itself the first; a time resolves to the last event at or before it
        first = int(start) if start.strip().isdigit() else \
            int((await client.query("positions", {"at": start}))["resourceVersion"]) + 1
    r = controller_replays.replayer(name, decide=decide)
    streams = tuple(r.streams)
    lines = integrity.export_lines(client, {"until": end} if end else {})
    header = json.loads(await anext(lines))
    async for line in lines:
        d = json.loads(line)
        if not d["stream"].startswith(streams):
            continue
        obj = unpack(base64.b64decode(d["payload"]))
        obj.setdefault("metadata", {})["resourceVersion"] = str(d["position"])
        controller_replays.feed(r, controller_replays.Recorded(d["position"], d["stream"], d["type"], d["causation"],
                                                               obj, d.get("actor") or "", d.get("occurredAt") or ""))
    decisions = [x for x in r.decisions() if (x.writes[0] if x.writes else x.view + 1) >= first]
    agree = sum(1 for x in decisions if x.agree)
    late = sum(1 for x in decisions if x.agreement == "earlier")
    warnings = []
    if header["first"] > 1:
        warnings.append(f"the log starts at position {header['first']} (older partitions are detached): objects "
                        "last written before it are missing from the replayed world")
    return {"kind": "ControllerReplay", "apiVersion": "history.eventplane.io/v1", "controller": name,
            "from": first or header["first"], "to": header["head"], "warnings": warnings,
            "decisions": {"replayed": len(decisions), "agree": agree, "differ": len(decisions) - agree,
                          "agreeEarlier": late},
            "items": [x.to_json() for x in decisions]}


def words(actions: list[str]) -> str:
    """create ×3, delete web-x2b9q: identical words counted."""
    if not actions:
        return "nothing"
    counts = Counter(actions)
    return ", ".join(w if n == 1 else f"{w} ×{n}" for w, n in sorted(counts.items()))


def _span(positions: list[int]) -> str:
    if not positions:
        return "-"
    return str(positions[0]) if len(positions) == 1 else f"{positions[0]}..{positions[-1]}"


def summary(doc: dict[str, Any]) -> str:
    c = doc["decisions"]
    text = f"decisions: {c['replayed']} replayed, {c['agree']} agree, {c['differ']} differ"
    if c["agreeEarlier"]:
        text += (f" ({c['agreeEarlier']} agree only on an earlier world, between their causation and their "
                 "first write: the controller's caches were behind the log)")
    return text


async def run_controller(args: argparse.Namespace, client: Client) -> int:
    doc = await controller_replay(client, args.controller, start=args.start, end=args.to)
    if args.output == "json":
        print(json.dumps(doc))
    else:
        print(f"replayed controller {doc['controller']} over positions {doc['from']}..{doc['to']}")
        if doc["items"]:
            rows = [["CAUSATION", "OBJECT", "WRITES", "RECORDED", "REPLAYED", "AGREE"]]
            for x in doc["items"]:
                agree = "NO" if not x["agree"] else "yes" if x["agreement"] == "view" else \
                    f"yes (as of {x['agreedAt']})"
                rows.append([str(x["causation"]), x["object"], _span(x["writes"]), words(x["recorded"]),
                             words(x["replayed"]), agree])
            print(render(rows), end="")
        print(summary(doc))
        for w in doc["warnings"]:
            print(f"warning: {w}")
        for x in doc["items"]:
            if not x["agree"]:
                print(f"differs: {x['kind']} {x['object']} at causation {x['causation']} (writes "
                      f"{_span(x['writes'])}, world as of {x['view']}): would "
                      f"{words(x['replayed']) if x['replayed'] else 'do nothing'}, recorded {words(x['recorded'])}")
    return 0 if doc["decisions"]["differ"] == 0 else DIFFER_EXIT
