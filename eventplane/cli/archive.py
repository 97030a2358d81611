"""`eventplane import FILE` and `eventplane partitions list|create-ahead|detach --before RV`:
moving history into a database and old history out of it (docs/operations.md, "Retention").

Registered by maintenance.py beside migrate and verify; each finds its database the same
way, works through eventplane.store (importing.py, partitions.py), prints what it did and
exits 0, or 1 with the reason.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import asyncpg

from eventplane.store import importing, migrate, partitions, portable

from . import options
from .running import run

CONNECT_TIMEOUT = 10.0


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("import", help="load an `epctl export` file into an empty database "
                                           "(before the API server first starts on it)")
    options.add_database_source(p)
    p.add_argument("file", metavar="FILE", help="the export file, or - for stdin")
    p.set_defaults(func=import_command)

    p = commands.add_parser("partitions", help="the event log's partitions: list, create ahead, detach old ones")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("list", help="each partition's range and the positions it holds")
    options.add_database_source(a)
    options.add_output(a)
    a.set_defaults(func=list_command)
    a = actions.add_parser("create-ahead", help="create partitions beyond the head before appends need them")
    options.add_database_source(a)
    a.add_argument("--count", type=int, default=1, metavar="N", help="whole partitions to keep ahead (default 1)")
    a.set_defaults(func=create_ahead_command)
    a = actions.add_parser("detach", help="detach the partitions wholly before a position, for archiving")
    options.add_database_source(a)
    a.add_argument("--before", type=int, required=True, metavar="RV",
                   help="detach partitions whose every position is below RV")
    a.set_defaults(func=detach_command)


def _with_connection(args: argparse.Namespace, work):
    url = options.database_url(args)

    async def main():
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return run(main())


def import_command(args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> importing.ImportResult:
        await migrate(conn)  # a brand-new database: the schema first
        if args.file == "-":
            return await importing.import_log(conn, sys.stdin.buffer)
        with open(args.file, "rb") as f:
            return await importing.import_log(conn, f)

    try:
        r = _with_connection(args, work)
    except (importing.ImportRefusedError, portable.FormatError, OSError) as exc:
        print(f"import refused: {exc}", file=sys.stderr)
        return 1
    print(f"imported {r.events} events (positions {r.first}..{r.head}), {r.objects} live objects")
    return 0


def list_command(args: argparse.Namespace) -> int:
    found = _with_connection(args, partitions.list_partitions)
    if args.output == "json":
        print(json.dumps([asdict(p) for p in found]))
        return 0
    print(f"{'NAME':<24} {'RANGE':<28} HOLDS")
    for p in found:
        holds = f"{p.first}..{p.last}" if p.first is not None else "nothing yet"
        print(f"{p.name:<24} {f'{p.start}..{p.end - 1}':<28} {holds}")
    return 0


def create_ahead_command(args: argparse.Namespace) -> int:
    created = _with_connection(args, lambda conn: partitions.create_ahead(conn, partitions=args.count))
    print("\n".join(f"created {name}" for name in created) or "nothing to create")
    return 0


def detach_command(args: argparse.Namespace) -> int:
    try:
        detached = _with_connection(args, lambda conn: partitions.detach_before(conn, args.before))
    except partitions.PartitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in detached:
        print(f"detached {p.name} (positions {p.first}..{p.last}); archive it with "
              f"`pg_dump -t {p.name} …`, then DROP TABLE {p.name}")
    if not detached:
        print(f"nothing to detach: no partition lies wholly before position {args.before}")
    return 0
