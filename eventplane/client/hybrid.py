"""Requests over NATS, watches and discovery over REST: the transport of components that hold
both a kubeconfig and the bus's address.

Built by Client.from_kubeconfig(..., nats_url=URL) when the kubeconfig carries a
bearer token (the NATS API authenticates by token alone). A request over NATS
skips TLS, HTTP parsing and path routing on the API server — about a quarter of
the server's CPU per write (bench/api.py's `--via nats` line) — and
`write_many` sends a burst of writes as one message. Watches stay on REST,
whose stream the informers and resumption logic have always used; the
subresources the NATS API does not serve (`scale`) go over REST too.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .nats import NatsTransport
from .operation import Op, Reply, Write
from .rest import RestTransport

REST_ONLY_SUBRESOURCES = frozenset({"scale"})


class HybridTransport:
    def __init__(self, rest: RestTransport, nats: NatsTransport) -> None:
        self.rest = rest
        self.nats = nats

    async def call(self, op: Op) -> Reply:
        if op.subresource in REST_ONLY_SUBRESOURCES:
            return await self.rest.call(op)
        return await self.nats.call(op)

    def watch(self, op: Op) -> AsyncIterator[dict[str, Any]]:
        return self.rest.watch(op)

    async def query(self, what: str, params: dict[str, str], target: Op | None = None) -> Reply:
        return await self.nats.query(what, params, target)

    async def discover(self) -> list[dict[str, Any]]:
        return await self.rest.discover()

    async def apply_many(self, docs: list[dict[str, Any]], write: Write, namespace: str) -> Reply:
        return await self.nats.apply_many(docs, write, namespace)

    async def write_many(self, op: Op, docs: list[Any], causations: list[int | None]) -> Reply:
        return await self.nats.write_many(op, docs, causations)

    async def close(self) -> None:
        try:
            await self.nats.close()
        finally:
            await self.rest.close()
