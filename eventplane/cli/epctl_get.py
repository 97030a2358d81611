"""`epctl get`: objects by type, name, selector — as the server's Tables (the columns
kubectl shows), or as yaml, json, or names.

Also home of kubectl's reading of resource arguments (`TYPE`, `TYPE NAME…`,
`TYPE1,TYPE2`, `TYPE/NAME…`), which `epctl delete` shares.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from eventplane.client import Client
from eventplane.objects import errors
from eventplane.objects.schema import ResourceInfo

from .epctl_output import UsageError, as_list, dump, error_text, object_name, render, table_lines

HELP = "Display one or many resources"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="TYPE[/NAME]",
                   help="TYPE [NAME...], TYPE1,TYPE2, or TYPE/NAME...")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=cache")
    p.add_argument("--field-selector", help="field selector, e.g. metadata.name=web")
    p.add_argument("-o", "--output", choices=("yaml", "json", "wide", "name"), help="output format")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--show-kind", action="store_true", help="prefix names with their kind")
    p.add_argument("--no-headers", action="store_true", help="omit the header line of tables")
    p.add_argument("--ignore-not-found", action="store_true", help="a missing named object is no error")
    p.add_argument("--at", metavar="RV|TIME|-10m", help="as it was then: a resourceVersion, an RFC 3339 time, or a "
                                                      "duration back from now (docs/history.md)")


def parse_targets(args: list[str]) -> list[tuple[str, list[str]]]:
    """(type, names) pairs in order, as kubectl's ResourceTypeOrNameArgs reads them."""
    if not args:
        raise UsageError("you must specify the type of resource to get")
    if any("/" in a for a in args):
        if not all("/" in a for a in args):
            raise UsageError("there is no need to specify a resource type as a separate argument when passing "
                             "arguments in resource/name form (e.g. 'epctl get resource/<resource_name>' instead "
                             "of 'epctl get resource resource/<resource_name>'")
        out: list[tuple[str, list[str]]] = []
        for a in args:
            kind, _, name = a.partition("/")
            if not kind or not name or "/" in name:
                raise UsageError(f"arguments in resource/name form must have a single resource and name: {a!r}")
            if out and out[-1][0] == kind:
                out[-1][1].append(name)
            else:
                out.append((kind, [name]))
        return out
    return [(t, list(args[1:])) for t in args[0].split(",") if t]


async def resolve_targets(client: Client, targets: list[tuple[str, list[str]]]) -> list[tuple[ResourceInfo, list[str]]]:
    """Resolve type names; a category (`all`) stands for its members."""
    out = []
    for kind, names in targets:
        resources = await client.resources()
        members = resources.category(kind) if resources.find(kind) is None else []
        if members and not names:
            out.extend((info, []) for info in members)
        else:
            out.append((await client.resolve(kind), names))
    return out


async def run(args: argparse.Namespace, client: Client) -> int:
    named = any(names for _, names in parse_targets(args.resources))
    if args.selector and named:
        raise UsageError("name cannot be provided when a selector is specified")
    if args.all_namespaces and named:
        raise UsageError("a resource cannot be retrieved by name across all namespaces")
    targets = await resolve_targets(client, parse_targets(args.resources))
    tabular = args.output in (None, "wide")
    code = 0
    tables: list[tuple[ResourceInfo, dict[str, Any]]] = []
    objects: list[tuple[ResourceInfo, dict[str, Any]]] = []
    listed = False
    for info, names in targets:
        if not names:
            listed = True
            got = await client.list(info, namespace=args.namespace, all_namespaces=args.all_namespaces,
                                    label_selector=args.selector, field_selector=args.field_selector, table=tabular,
                                    as_of=args.at)
            if tabular:
                tables.append((info, got))
            else:
                objects.extend((info, o) for o in got.get("items") or [])
            continue
        merged: dict[str, Any] | None = None
        for name in names:
            try:
                got = await client.get(info, name, namespace=args.namespace, table=tabular, as_of=args.at)
            except errors.EventplaneError as exc:
                if not (isinstance(exc, errors.NotFoundError) and args.ignore_not_found):
                    print(error_text(exc), file=sys.stderr)
                    code = 1
                continue
            if not tabular:
                objects.append((info, got))
            elif merged is None:
                merged = got
            else:
                merged = {**merged, "rows": (merged.get("rows") or []) + (got.get("rows") or [])}
        if merged is not None:
            tables.append((info, merged))
    single = len(targets) == 1 and len(targets[0][1]) == 1
    empty = not objects and not any(t.get("rows") for _, t in tables)
    if args.output in ("yaml", "json"):
        if objects or listed:
            sys.stdout.write(dump(objects[0][1] if single and objects else as_list([o for _, o in objects]),
                                  args.output))
        return code
    if empty:
        if listed and code == 0:
            print(_nothing_found(args, client, [info for info, _ in targets]), file=sys.stderr)
        return code
    if args.output == "name":
        sys.stdout.write("".join(object_name(info, obj) + "\n" for info, obj in objects))
        return code
    with_kind = args.show_kind or len(targets) > 1
    blocks = [render(table_lines(info, table, wide=args.output == "wide", namespace_column=args.all_namespaces,
                                 with_kind=with_kind, show_labels=args.show_labels, headers=not args.no_headers))
              for info, table in tables if table.get("rows")]
    sys.stdout.write("\n".join(blocks))
    return code


def _nothing_found(args: argparse.Namespace, client: Client, infos: list[ResourceInfo]) -> str:
    if args.all_namespaces or not any(info.namespaced for info in infos):
        return "No resources found"
    return f"No resources found in {args.namespace or client.namespace} namespace."
