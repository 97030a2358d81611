"""`epctl apply -f FILE|DIR|-`: server-side apply of every manifest, in file order,
printing `deployment.apps/web serverside-applied` per object as kubectl does.

Namespaced objects without a namespace get -n's (or the context's); an object
whose namespace differs from an explicit -n is refused, as kubectl refuses it.
A failing object does not stop the others; the exit code is 1 if any failed.
"""
from __future__ import annotations

import argparse
import copy
import sys

from eventplane.client import Client
from eventplane.objects import errors

from .epctl_manifests import read_manifests
from .epctl_output import UsageError, as_list, dump, error_text, object_name

HELP = "Apply a configuration to resources from files or stdin (server-side apply)"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                   help="a file, a directory of .yaml/.yml/.json files, or - for stdin (repeatable)")
    p.add_argument("-R", "--recursive", action="store_true", help="descend into directories given with -f")
    p.add_argument("--field-manager", default="epctl", help="field manager of the applied fields (default: epctl)")
    p.add_argument("--force-conflicts", action="store_true", help="take over fields other managers own")
    p.add_argument("--dry-run", choices=("none", "server"), default="none",
                   help="server: let the server check everything and store nothing")
    p.add_argument("--server-side", action="store_true", help="accepted for kubectl's sake: apply is always "
                                                              "server-side")
    p.add_argument("-o", "--output", choices=("yaml", "json", "name"), help="print the applied objects")


async def run(args: argparse.Namespace, client: Client) -> int:
    manifests = read_manifests(args.filename, recursive=args.recursive)
    if not manifests:
        raise UsageError("no objects passed to apply")
    code = 0
    docs = []
    for m in manifests:
        try:
            info = await client.resolve_object(m.object)
        except errors.EventplaneError as exc:
            print(error_text(exc), file=sys.stderr)
            code = 1
            continue
        obj = copy.deepcopy(m.object)
        if info.namespaced:
            meta = obj.setdefault("metadata", {})
            ns = meta.get("namespace")
            if args.namespace and ns and ns != args.namespace:
                print(f'error: the namespace from the provided object "{ns}" does not match the namespace '
                      f'"{args.namespace}". You must pass \'--namespace={ns}\' to perform this operation.',
                      file=sys.stderr)
                code = 1
                continue
            meta["namespace"] = ns or args.namespace or client.namespace
        docs.append((info, obj))
    dry_run = args.dry_run == "server"
    results = await client.apply([obj for _, obj in docs], field_manager=args.field_manager,
                                 force=args.force_conflicts, dry_run=dry_run) if docs else []
    applied = []
    for (info, _), result in zip(docs, results):
        if isinstance(result, BaseException):
            print(error_text(result), file=sys.stderr)
            code = 1
            continue
        applied.append(result)
        if args.output == "name":
            print(object_name(info, result))
        elif args.output is None:
            print(f"{object_name(info, result)} serverside-applied" + (" (server dry run)" if dry_run else ""))
    if args.output in ("yaml", "json") and applied:
        sys.stdout.write(dump(applied[0] if len(applied) == 1 else as_list(applied), args.output))
    return code
