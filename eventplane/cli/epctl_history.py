"""`epctl history`, `epctl diff` and `epctl why`: an object's past, from the history API
(history.eventplane.io/v1, docs/history.md). `epctl get --at` lives in epctl_get.

Each command is a class with epctl's command interface (HELP, register, run), so one
module serves the three; epctl.py's COMMANDS table lists them.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from eventplane.client import Client

from .epctl_output import UsageError, dump, render


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="KIND/NAME", help="the object, e.g. deploy/web (or KIND NAME)")
    p.add_argument("name", nargs="?", help=argparse.SUPPRESS)


def _split(args: argparse.Namespace) -> tuple[str, str]:
    kind, _, name = args.target.partition("/")
    if args.name and not name:
        name = args.name
    elif args.name:
        raise UsageError("give the object as KIND/NAME or as KIND NAME, not both")
    if not kind or not name or "/" in name:
        raise UsageError(f"name one object as KIND/NAME, e.g. deploy/web (got {args.target!r})")
    return kind, name


def _time(text: str | None) -> str:
    """RFC 3339 to the millisecond: enough to read, short enough for a table."""
    if not text:
        return "<none>"
    head, _, frac = text.rstrip("Z").partition(".")
    return f"{head}.{(frac + '000')[:3]}Z"


def _object(ref: dict[str, Any]) -> str:
    resource = ref["resource"] + (f".{ref['group']}" if ref.get("group") else "")
    return (f"{ref['namespace']}/" if ref.get("namespace") else "") + f"{resource}/{ref['name']}"


class History:
    HELP = "Show every version of an object: who changed what, when (deleted incarnations too)"

    @staticmethod
    def register(p: argparse.ArgumentParser) -> None:
        _target(p)
        p.add_argument("--uid", help="only the incarnation with this uid")
        p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table", help="output format")

    @staticmethod
    async def run(args: argparse.Namespace, client: Client) -> int:
        kind, name = _split(args)
        doc = await client.history(kind, name, namespace=args.namespace, uid=args.uid)
        if args.output != "table":
            sys.stdout.write(dump(doc, args.output))
            return 0
        items = doc.get("items") or []
        with_uid = len({i["uid"] for i in items}) > 1
        lines = [["RESOURCEVERSION", "TIME", "ACTOR", "VERB", "TYPE"] + (["UID"] if with_uid else []) + ["SUMMARY"]]
        for i in items:
            lines.append([i["resourceVersion"], _time(i["time"]), i["actor"], i["verb"], i["type"]]
                         + ([i["uid"]] if with_uid else []) + [i["summary"]])
        sys.stdout.write(render(lines))
        return 0


class Diff:
    HELP = "Show how an object changed between two points (RV, RFC 3339 time or -10m), as a unified YAML diff"

    @staticmethod
    def register(p: argparse.ArgumentParser) -> None:
        _target(p)
        p.add_argument("--from", dest="from_", metavar="RV|TIME", help="the earlier point (default: before the first "
                                                                        "event)")
        p.add_argument("--to", metavar="RV|TIME", help="the later point (default: now)")
        p.add_argument("--field", metavar="PATH", help="follow one field over time instead, e.g. spec.replicas or "
                                                       "spec.template.spec.containers[0].image")
        p.add_argument("-o", "--output", choices=("diff", "json", "yaml"), default="diff", help="output format")

    @staticmethod
    async def run(args: argparse.Namespace, client: Client) -> int:
        kind, name = _split(args)
        doc = await client.diff(kind, name, namespace=args.namespace, from_=args.from_, to=args.to, field=args.field)
        if args.output != "diff":
            sys.stdout.write(dump(doc, args.output))
            return 0
        if args.field:
            lines = [["RESOURCEVERSION", "TIME", "ACTOR", args.field.upper()]]
            for v in doc.get("values") or []:
                value = json.dumps(v["value"], separators=(",", ":")) if v["present"] else "<absent>"
                if isinstance(v["value"], str) and v["present"]:
                    value = v["value"]
                lines.append([v["resourceVersion"], _time(v["time"]) if v["time"] else "(from)",
                              v["actor"] or "", value])
            sys.stdout.write(render(lines))
        else:
            sys.stdout.write(doc.get("diff") or "")
        return 0


class Why:
    HELP = "Show the chain of causes behind an object: from the request that started it to its latest change"

    @staticmethod
    def register(p: argparse.ArgumentParser) -> None:
        _target(p)
        p.add_argument("--resource-version", metavar="RV", help="explain this event of the object instead of its "
                                                                "latest")
        p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table", help="output format")

    @staticmethod
    async def run(args: argparse.Namespace, client: Client) -> int:
        kind, name = _split(args)
        doc = await client.why(kind, name, namespace=args.namespace, resource_version=args.resource_version)
        if args.output != "table":
            sys.stdout.write(dump(doc, args.output))
            return 0
        lines = [["STEP", "RESOURCEVERSION", "TIME", "ACTOR", "VERB", "TYPE", "OBJECT", "NEXT AFTER"]]
        for n, s in enumerate(doc.get("steps") or [], start=1):
            latency = s.get("latencySeconds")
            lines.append([str(n), s["resourceVersion"], _time(s["time"]), s["actor"], s["verb"], s["type"],
                          _object(s["object"]), "-" if latency is None else f"{latency * 1000:.0f}ms"])
        sys.stdout.write(render(lines))
        total = doc.get("totalSeconds") or 0
        note = "" if doc.get("complete", True) else " (the first cause is no longer in the log)"
        sys.stdout.write(f"{len(lines) - 1} steps in {total * 1000:.0f}ms{note}\n")
        return 0
