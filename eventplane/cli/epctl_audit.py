"""`epctl audit`: who did what, when — the API server's audit records, filtered.

Asks `GET /apis/audit.eventplane.io/v1/events` (eventplane/api/audit.py) and
prints a table (TIME USER VERB RESOURCE NAMESPACE NAME CODE), or the
audit.k8s.io/v1 EventList as json or yaml. `--since`/`--until` take RFC 3339
or a time ago (`-10m`, `-2h`, `-1d`), resolved by the server's clock.
The namespace filter is the global `-n/--namespace`, given explicitly.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from eventplane.client import Client

from .epctl_output import UsageError, dump, render

HELP = "Show the audit records of API requests: by user, verb, resource, namespace, time, outcome"
EVENTS_PATH = "/apis/audit.eventplane.io/v1/events"
OUTCOMES = ("allowed", "denied", "error")


def register(p: argparse.ArgumentParser) -> None:
    # `--since -10m` as kubectl users type it: argparse takes "-10m" for an option unless it looks
    # like a negative number, so durations count as negative numbers here.
    p._negative_number_matcher = re.compile(r"^-\d+(\.\d*)?[smhd]?$")  # noqa: SLF001
    p.add_argument("--user", help="the user's name, e.g. alice or system:anonymous")
    p.add_argument("--verb", help="get, list, watch, create, update, patch, delete, deletecollection")
    p.add_argument("--resource", help="the resource (plural, as in the path), e.g. pods, deployments")
    p.add_argument("--name", help="the object's name")
    p.add_argument("--since", metavar="T", help="not before T: RFC 3339 or a time ago (-10m, -2h, -1d)")
    p.add_argument("--until", metavar="T", help="not after T: RFC 3339 or a time ago")
    p.add_argument("--outcome", choices=OUTCOMES, help="allowed, denied (401/403) or error")
    p.add_argument("--transport", choices=("rest", "nats"), help="only requests that came this way")
    p.add_argument("--limit", type=int, default=500, help="the newest N records (default 500)")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table", help="output format")
    p.add_argument("--no-headers", action="store_true", help="omit the header line of the table")


def params(args: argparse.Namespace) -> dict[str, str]:
    out = {k: str(getattr(args, k)) for k in ("user", "verb", "resource", "name", "since", "until", "outcome",
                                              "transport") if getattr(args, k, None)}
    if getattr(args, "namespace", None):
        out["namespace"] = args.namespace
    if args.limit <= 0:
        raise UsageError("--limit must be positive")
    out["limit"] = str(args.limit)
    return out


def table(events: list[dict[str, Any]], *, headers: bool = True) -> list[list[str]]:
    lines = [["TIME", "USER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "CODE"]] if headers else []
    for e in events:
        ref = e.get("objectRef") or {}
        resource = ref.get("resource", "")
        if resource and ref.get("apiGroup"):
            resource = f"{resource}.{ref['apiGroup']}"
        if ref.get("subresource"):
            resource = f"{resource}/{ref['subresource']}"
        if not resource:
            resource = (e.get("requestURI") or "").split("?")[0]  # a path that names no resource
        stamp = e.get("requestReceivedTimestamp", "")
        lines.append([stamp[:19] + "Z" if len(stamp) > 19 else stamp, (e.get("user") or {}).get("username", ""),
                      e.get("verb", ""), resource, ref.get("namespace", "") or "-", ref.get("name", "") or "-",
                      str((e.get("responseStatus") or {}).get("code", ""))])
    return lines


async def fetch(client: Client, query: dict[str, str]) -> dict[str, Any]:
    from eventplane.client.nats import NatsTransport

    transport = client.transport
    if isinstance(transport, NatsTransport):
        return (await transport.request("audit", query)).value  # the NATS API's `audit` subject
    return (await transport._send("GET", EVENTS_PATH, params=query)).value  # noqa: SLF001 — a raw GET


async def run(args: argparse.Namespace, client: Client) -> int:
    events = await fetch(client, params(args))
    if args.output == "table":
        items = events.get("items") or []
        if not items:
            print("No audit records found.", file=sys.stderr)
            return 0
        sys.stdout.write(render(table(items, headers=not args.no_headers)))
    else:
        sys.stdout.write(dump(events, args.output))
    return 0
