"""`eventplane status`: what `eventplane up` wrote into a data directory's
endpoints.json, and whether each endpoint answers now.

Probes are short and read-only: PostgreSQL must accept a connection and answer
`SELECT 1`; NATS must accept a TCP connection and greet with its INFO line.
Down is a normal answer (exit 0); only a data directory without
endpoints.json is an error (exit 1).
"""
from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from eventplane.config import Endpoints, resolve_data_dir

from . import options
from .running import run

PROBE_TIMEOUT = 2.0
NATS_DEFAULT_PORT = 4222


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("status", help="show the endpoints of `eventplane up` and whether they are up")
    options.add_data_dir(p)
    options.add_output(p)
    p.set_defaults(func=status_command)


async def database_is_up(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    try:
        async with asyncio.timeout(timeout):
            conn = await asyncpg.connect(url, timeout=timeout)
            try:
                return await conn.fetchval("SELECT 1") == 1
            finally:
                await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


async def nats_is_up(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Up when any server of a comma-separated URL list greets us."""
    results = await asyncio.gather(*(_nats_greets(u.strip(), timeout) for u in url.split(",") if u.strip()))
    return any(results)


async def _nats_greets(url: str, timeout: float) -> bool:
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1",
                                                           parts.port or NATS_DEFAULT_PORT)
            try:
                return (await reader.readline()).startswith(b"INFO ")
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError):
        return False


async def _tcp_is_up(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", port)
            writer.close()
            return True
    except (OSError, TimeoutError, ValueError):
        return False


async def probe(data_dir: str, endpoints: Endpoints) -> dict[str, Any]:
    db_up, nats_up, api_up = await asyncio.gather(
        database_is_up(endpoints.database_url), nats_is_up(endpoints.nats_url),
        _tcp_is_up(endpoints.api_url, PROBE_TIMEOUT) if endpoints.api_url else asyncio.sleep(0, False))

    def server(name: str, url: str, up: bool) -> dict[str, Any]:
        return {"url": url, "up": up, "embedded": bool(endpoints.embedded.get(name)),
                "pid": endpoints.pids.get(name)}

    return {
        "data_dir": data_dir,
        "database": server("postgres", endpoints.database_url, db_up),
        "nats": server("nats", endpoints.nats_url, nats_up),
        "api": {"url": endpoints.api_url, "up": api_up} if endpoints.api_url else None,
        "kubeconfig": endpoints.kubeconfig,
    }


def status_command(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    endpoints = Endpoints.read(data_dir)
    report = run(probe(str(data_dir), endpoints))
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(format_text(report))
    return 0


def format_text(report: dict[str, Any]) -> str:
    def line(label: str, entry: dict[str, Any] | None) -> str:
        if entry is None:
            return f"{label:<11}-  (not yet)"
        state = "up" if entry["up"] else "DOWN"
        how = ""
        if "embedded" in entry:
            how = f" (embedded, pid {entry['pid']})" if entry["embedded"] else " (external)"
        return f"{label:<11}{state:<5} {entry['url']}{how}"

    return "\n".join([
        f"{'data dir':<11}{report['data_dir']}",
        line("database", report["database"]),
        line("nats", report["nats"]),
        line("api", report["api"]),
        f"{'kubeconfig':<11}{report['kubeconfig'] or '-  (not yet)'}",
    ])
