"""`eventplane audit prune`: audit retention, apart from the event log's.

The event log keeps everything (old partitions are detached and archived, see
docs/operations.md); audit records of every read and watch grow much faster and
are usually kept for a fixed period (90 days, a year) set by policy. This
deletes those received before a point, in batches, and prints how many. Run it
from cron or a Kubernetes CronJob; `--dry-run` counts without deleting.
"""
from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta, timezone

import asyncpg

from eventplane.config import ConfigError
from eventplane.store.audit import PRUNE_BATCH, prune_audit

from . import options
from .running import run

_AGE = re.compile(r"^(\d+)(d|h|m)$")
_UNITS = {"d": 86400, "h": 3600, "m": 60}


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("audit", help="operate on the audit records")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = actions.add_parser("prune", help="delete audit records older than a retention period")
    options.add_database_source(r)
    when = r.add_mutually_exclusive_group(required=True)
    when.add_argument("--older-than", metavar="AGE", help="delete records received more than AGE ago (90d, 12h, 30m)")
    when.add_argument("--before", metavar="TIME", help="delete records received before an RFC 3339 time")
    r.add_argument("--batch-size", type=int, default=PRUNE_BATCH, help="rows per transaction")
    r.add_argument("--dry-run", action="store_true", help="count the records, delete nothing")
    r.set_defaults(func=prune_command)


def cutoff(args: argparse.Namespace, now: datetime | None = None) -> datetime:
    if args.older_than is not None:
        m = _AGE.match(args.older_than.strip())
        if not m:
            raise ConfigError(f"--older-than {args.older_than!r}: expected a number and d, h or m (e.g. 90d)")
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    try:
        when = datetime.fromisoformat(args.before.strip().replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ConfigError(f"--before {args.before!r}: expected an RFC 3339 time with a zone (2026-01-02T15:04:05Z)")
    return when


def prune_command(args: argparse.Namespace) -> int:
    url = options.database_url(args)
    before = cutoff(args)
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be 1 or more")

    async def main() -> int:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            return await prune_audit(pool, before, batch_size=args.batch_size, dry_run=args.dry_run)
        finally:
            await pool.close()

    count = run(main())
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {count} audit records received before {before.isoformat()}")
    return 0
