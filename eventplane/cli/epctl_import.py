"""`epctl import FILE`: sends an export (epctl export) to POST history.eventplane.io/v1/import.

Import needs an empty log, and an API server bootstraps its namespaces when it starts, so
against a running server this is refused with a pointer to `eventplane import`, which loads
the file into the database before the API server first starts (docs/operations.md)."""
from __future__ import annotations

import argparse

from eventplane.client import Client
from eventplane.client import integrity

from .epctl_output import UsageError
from .epctl_verify import require_rest

HELP = "Load an exported history into an empty cluster"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="a file written by `epctl export`")


async def run(args: argparse.Namespace, client: Client) -> int:
    require_rest(client, "import")
    try:
        f = open(args.file, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from exc
    with f:
        r = await integrity.post_file(client, "import", f)
    print(f"imported {r['events']} events (positions {r['first']}..{r['head']}), {r['objects']} live objects")
    return 0
