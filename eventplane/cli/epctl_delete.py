"""`epctl delete`: by TYPE NAME…, TYPE/NAME…, -f FILE, or TYPE with -l SELECTOR or --all,
printing `deployment.apps "web" deleted` per object as kubectl does.

As kubectl, it waits (unless --wait=false) for objects that finalizers or a
grace period keep, by watching each until its DELETED event arrives.
"""
from __future__ import annotations

import argparse
import sys

from eventplane.client import Client, kind_name
from eventplane.objects import errors
from eventplane.objects.schema import ResourceInfo

from .epctl_get import parse_targets, resolve_targets
from .epctl_manifests import read_manifests
from .epctl_output import UsageError, error_text

HELP = "Delete resources by file, type and name, or selector"
CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}


def go_bool(text: str) -> bool:
    """kubectl's boolean flags: --wait, --wait=true, --wait=false."""
    value = text.lower()
    if value not in ("true", "false", "1", "0", "t", "f"):
        raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")
    return value in ("true", "1", "t")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="TYPE[/NAME]", help="TYPE NAME..., or TYPE/NAME...")
    p.add_argument("-f", "--filename", action="append", metavar="FILE", help="delete what these manifests name")
    p.add_argument("-R", "--recursive", action="store_true", help="descend into directories given with -f")
    p.add_argument("-l", "--selector", help="delete the objects with these labels")
    p.add_argument("--field-selector", help="delete the objects whose fields match")
    p.add_argument("--all", action="store_true", help="delete every object of the type in the namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="with -l or --all: in every namespace")
    p.add_argument("--ignore-not-found", action="store_true", help="a missing object is no error")
    p.add_argument("--cascade", choices=tuple(CASCADE), default="background",
                   help="what happens to dependents (default: background)")
    p.add_argument("--grace-period", type=int, default=None, metavar="SECONDS",
                   help="seconds a pod gets to stop (default: the pod's own)")
    p.add_argument("--now", action="store_true", help="a grace period of 1 second")
    p.add_argument("--wait", nargs="?", const=True, default=True, type=go_bool, metavar="BOOL",
                   help="wait until the objects are gone (default: true; --wait=false not to)")
    p.add_argument("--timeout", type=float, default=0, metavar="SECONDS",
                   help="how long to wait for deletion (default: 0 = for ever)")
    p.add_argument("--dry-run", choices=("none", "server"), default="none",
                   help="server: let the server check everything and delete nothing")
    p.add_argument("-o", "--output", choices=("name",), help="print only resource/name")


async def _targets(args: argparse.Namespace, client: Client) -> list[tuple[ResourceInfo, str, str]]:
    """(resource, namespace, name) of everything to delete."""
    out: list[tuple[ResourceInfo, str, str]] = []
    if args.filename:
        if args.resources:
            raise UsageError("give either -f or resource arguments, not both")
        for m in read_manifests(args.filename, recursive=args.recursive):
            info = await client.resolve_object(m.object)
            meta = m.object.get("metadata") or {}
            ns = (meta.get("namespace") or args.namespace or client.namespace) if info.namespaced else ""
            out.append((info, ns, meta.get("name", "")))
        return out
    selecting = bool(args.selector or args.field_selector or args.all)
    for info, names in await resolve_targets(client, parse_targets(args.resources)):
        if names and selecting:
            raise UsageError("name cannot be provided when a selector or --all is specified")
        if names:
            ns = (args.namespace or client.namespace) if info.namespaced else ""
            out.extend((info, ns, name) for name in names)
        elif selecting:
            listed = await client.list(info, namespace=args.namespace, all_namespaces=args.all_namespaces,
                                       label_selector=args.selector, field_selector=args.field_selector)
            out.extend((info, o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in listed["items"])
        else:
            raise UsageError("resource(s) were provided, but no name was specified")
    return out


async def run(args: argparse.Namespace, client: Client) -> int:
    if not args.filename and not args.resources:
        raise UsageError("you must provide one or more resources by argument or filename")
    targets = await _targets(args, client)
    if not targets:
        print("No resources found", file=sys.stderr)
        return 0
    ignore_missing = args.ignore_not_found or args.all or bool(args.selector)
    dry_run = args.dry_run == "server"
    grace = 1 if args.now else args.grace_period
    code = 0
    for info, ns, name in targets:
        try:
            obj = await client.delete(info, name, namespace=ns, propagation_policy=CASCADE[args.cascade],
                                      grace_period_seconds=grace, dry_run=dry_run)
        except errors.NotFoundError as exc:
            if not ignore_missing:
                print(error_text(exc), file=sys.stderr)
                code = 1
            continue
        except errors.EventplaneError as exc:
            print(error_text(exc), file=sys.stderr)
            code = 1
            continue
        if args.output == "name":
            print(f"{kind_name(info)}/{name}")
        else:
            print(f'{kind_name(info)} "{name}" deleted' + (" (server dry run)" if dry_run else ""))
        meta = obj.get("metadata") or {}
        if args.wait and not dry_run and meta.get("deletionTimestamp"):
            if not await _wait_gone(client, info, ns, name, meta.get("resourceVersion"), args.timeout):
                print(f"error: timed out waiting for the condition on {info.resource}/{name}", file=sys.stderr)
                code = 1
    return code


async def _wait_gone(client: Client, info: ResourceInfo, ns: str, name: str, rv: str | None,
                     timeout: float) -> bool:
    """True once the object's DELETED event arrives; False when `timeout` (0 = none) passes first."""
    while True:
        try:
            async with client.watch(info, namespace=ns, name=name, resource_version=rv,
                                    timeout=timeout or None) as w:
                async for kind, _ in w:
                    if kind == "DELETED":
                        return True
            return False
        except errors.GoneError:
            try:  # too old a version to watch from: start again from the object as it is now
                rv = (await client.get(info, name, namespace=ns))["metadata"]["resourceVersion"]
            except errors.NotFoundError:
                return True
