"""`epctl explain-schedule pod/NAME`: why the scheduler put a pod where it did, or could not.

Reads the pod's Events (core/v1, field selector involvedObject.name) and takes
the newest one carrying the scheduler's decision record in its annotation
(reconcilers/scheduler/record.py): every recorded filter result and score,
as the scheduler stored it in the log at the time of the decision, not as
the scheduler would decide now. `--all` prints every recorded decision of
the pod, oldest first (each failed attempt, then the binding).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from eventplane.client import Client
from reconcilers.scheduler.record import RECORD_ANNOTATION, explain_record, loads

from .epctl_output import UsageError

HELP = "Explain a pod's scheduling decision (per-node filter results and scores), from the recorded Events"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="pod/NAME", help="the pod, as pod/NAME or NAME")
    p.add_argument("--all", action="store_true", help="every recorded decision of the pod, oldest first")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")


def _pod_name(target: str) -> str:
    kind, sep, name = target.partition("/")
    if not sep:
        return kind
    if kind.lower() not in ("pod", "pods", "po") or not name or "/" in name:
        raise UsageError(f"explain-schedule explains pods: name one as pod/NAME (got {target!r})")
    return name


def _recorded(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for e in events:
        text = ((e.get("metadata") or {}).get("annotations") or {}).get(RECORD_ANNOTATION)
        if not text:
            continue
        try:
            out.append((e, loads(text)))
        except ValueError:
            continue
    out.sort(key=lambda pair: int(pair[0]["metadata"].get("resourceVersion") or 0))
    return out


async def run(args: argparse.Namespace, client: Client) -> int:
    name = _pod_name(args.target)
    namespace = args.namespace or client.namespace
    listed = await client.list("events", namespace=namespace,
                               field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}")
    recorded = _recorded(listed.get("items") or [])
    if not recorded:
        raise UsageError(f'no scheduling decision is recorded for pod "{name}" in namespace "{namespace}"')
    chosen = recorded if args.all else recorded[-1:]
    if args.output == "json":
        doc = [dict(rec, event=e["metadata"]["name"], resourceVersion=e["metadata"]["resourceVersion"])
               for e, rec in chosen]
        sys.stdout.write(json.dumps(doc if args.all else doc[0], indent=2) + "\n")
        return 0
    texts = []
    for e, rec in chosen:
        m = e["metadata"]
        header = [f"Event {m['namespace']}/{m['name']} ({e.get('reason')}, resourceVersion {m['resourceVersion']}, "
                  f"{e.get('lastTimestamp') or m.get('creationTimestamp')}) by "
                  f"{e.get('reportingInstance') or (e.get('source') or {}).get('component', '')}"]
        texts.append(explain_record(rec, header=header))
    sys.stdout.write("\n".join(texts))
    return 0
