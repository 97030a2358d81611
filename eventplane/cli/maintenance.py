"""`eventplane migrate`, `eventplane verify` and `eventplane projections rebuild`:
one-shot operations on the event log, run by an operator or a deployment job.

Each finds its database through `options.database_url` (flag, data directory,
environment), does one thing through `eventplane.store`, prints what it did,
and exits 0 on success, 1 on failure (a broken chain, an unreachable server).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import asyncpg

from eventplane.config import ConfigError
from eventplane.store import EventStore, VerifyResult, migrate

from . import archive, options
from .running import run

CONNECT_TIMEOUT = 10.0


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("migrate", help="apply the database migrations that are missing")
    options.add_database_source(p)
    p.set_defaults(func=migrate_command)

    p = commands.add_parser("verify", help="walk the event log's hash chain")
    options.add_database_source(p)
    p.add_argument("--from", dest="start", type=int, metavar="N",
                   help="first position (default: the first stored one, 1 unless partitions were detached)")
    p.add_argument("--to", dest="end", type=int, metavar="N", help="last position (default: the last event)")
    options.add_output(p)
    p.set_defaults(func=verify_command)

    p = commands.add_parser("projections", help="operate on projections")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = actions.add_parser("rebuild", help="rebuild the objects table from the events table")
    options.add_database_source(r)
    r.set_defaults(func=rebuild_command)

    archive.register(commands)  # import, partitions


def migrate_command(args: argparse.Namespace) -> int:
    url = options.database_url(args)

    async def main() -> list[str]:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    applied = run(main())
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("nothing to apply")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    url = options.database_url(args)
    if args.start is not None and args.start < 1:
        raise ConfigError("--from must be 1 or more")

    async def main() -> VerifyResult:
        # No migration here: verifying must not change the database it checks.
        store = await EventStore.open(url, min_size=1, max_size=1, migrate_schema=False)
        try:
            return await store.verify(start=args.start, end=args.end)
        finally:
            await store.close()

    result = run(main())
    if args.output == "json":
        print(json.dumps(asdict(result)))
    elif result.ok and not result.checked:
        print(f"ok: 0 events verified (none from position {result.first})")
    elif result.ok:
        print(f"ok: {result.checked} events verified (positions {result.first}..{result.last})")
    else:
        print(f"broken at position {result.broken_at}: {result.reason} "
              f"({result.checked} events before it verified)")
    return 0 if result.ok else 1


def rebuild_command(args: argparse.Namespace) -> int:
    url = options.database_url(args)

    async def main() -> int:
        store = await EventStore.open(url, min_size=1, max_size=1, migrate_schema=False)
        try:
            return await store.rebuild_objects()
        finally:
            await store.close()

    live = run(main())
    print(f"rebuilt objects: {live} live objects")
    return 0
