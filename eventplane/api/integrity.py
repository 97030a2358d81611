"""The log's integrity and portability in history.eventplane.io/v1, over REST (verify and
replay over NATS too):

    GET  /apis/history.eventplane.io/v1/verify[?from=RV&to=RV]  → ChainVerification
    GET  /apis/history.eventplane.io/v1/export[?until=AT]       → the portable file (NDJSON, streamed)
    POST /apis/history.eventplane.io/v1/import                  ← the portable file; into an empty log only
    GET  /apis/history.eventplane.io/v1/replay?to=AT[&controller=NAME] → ReplayDiff

AT is what `asOf` accepts (history.resolve_as_of): a resourceVersion, an RFC 3339 time or a
negative duration. Fed by aiohttp (routes added in app.py, ahead of history.py's) and, for
verify and replay, by the NATS API's subjects of those names (natsapi.py: the same query
functions; export and import stay REST-only, a whole log is no request/reply); works on
the store through verify.py, exporting.py, importing.py and replay.py; epctl's verify,
export, import and replay commands are the clients. docs/operations.md tells the story.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from aiohttp import web

from eventplane.objects import errors
from eventplane.store import exporting, importing, portable, replay

from .history import GROUP_VERSION, PREFIX, resolve_as_of

NDJSON = "application/x-ndjson"
REPLAYABLE_CONTROLLERS = ("deployment", "replicaset", "replicationcontroller")   # = reconcilers.replay.REPLAYABLE


class IntegrityHandler:
    def __init__(self, resources) -> None:
        self.resources = resources  # rest.ResourceHandler: its registry holds the store

    @property
    def store(self):
        return self.resources.registry.store

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(PREFIX + "/verify", self.verify)
        router.add_get(PREFIX + "/export", self.export)
        router.add_post(PREFIX + "/import", self.import_)
        router.add_get(PREFIX + "/replay", self.replay)

    async def verify(self, request: web.Request) -> web.Response:
        return web.json_response(await verification(self.store, request.query))

    async def export(self, request: web.Request) -> web.StreamResponse:
        until = request.query.get("until")
        position = await resolve_as_of(self.store.pool, until) if until else None
        lines = exporting.export_lines(self.store.pool, until=position)
        header = await anext(lines)  # before the answer starts, so an error can still be a Status
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        await response.write(header)
        async for line in lines:
            await response.write(line)
        await response.write_eof()
        return response

    async def import_(self, request: web.Request) -> web.Response:
        # The API server bootstrapped its namespaces, so its log is never empty: this answers 409 and
        # points at `eventplane import`, unless the server was started on an empty log some other way.
        try:
            async with self.store.pool.acquire() as conn:
                result = await importing.import_log(conn, _lines(request))
        except importing.ImportRefusedError as exc:
            if exc.not_empty:
                raise errors.ConflictError(str(exc)) from exc
            raise errors.BadRequestError(f"import refused: {exc}") from exc
        except portable.FormatError as exc:
            raise errors.BadRequestError(f"import refused: {exc}") from exc
        return web.json_response({"kind": "ImportResult", "apiVersion": GROUP_VERSION,
                                  **asdict(result)})

    async def replay(self, request: web.Request) -> web.Response:
        return web.json_response(await replay_of(self.store, request.query))


# --- the queries, shared by REST (IntegrityHandler) and NATS (natsapi.py) ------------------------

async def verification(store, q: Mapping[str, str]) -> dict[str, Any]:
    """ChainVerification of positions from..to (both optional)."""
    result = await store.verify(start=_position(q, "from"), end=_position(q, "to"))
    return {"kind": "ChainVerification", "apiVersion": GROUP_VERSION, "ok": result.ok, "checked": result.checked,
            "first": result.first, "last": result.last, "brokenAt": result.broken_at, "reason": result.reason}


async def replay_of(store, q: Mapping[str, str]) -> dict[str, Any]:
    """ReplayDiff: the objects as they were at `to`, against live state."""
    if q.get("controller"):
        # Controllers' decision functions run in the client (eventplane/cli/epctl_replay.py, over this
        # group's export), which keeps the API free of reconciler code; the names are reconcilers/replay.py's.
        raise NotImplementedStatus(
            f"replay of controller {q['controller']!r} is not computed by the server: `epctl replay --controller "
            f"NAME` replays one in the client, from the exported log (replayable controllers: "
            f"{', '.join(REPLAYABLE_CONTROLLERS)})")
    to = q.get("to")
    if not to:
        raise errors.BadRequestError("replay needs to=RV|TIME|-DURATION")
    diff = await replay.replay_diff(store.pool, await resolve_as_of(store.pool, to))
    return {"kind": "ReplayDiff", "apiVersion": GROUP_VERSION, "at": diff.at, "head": diff.head,
            "objectsThen": diff.objects_then, "objectsNow": diff.objects_now,
            "kinds": {k: {"created": c.created, "deleted": c.deleted, "changed": c.changed}
                      for k, c in sorted(diff.kinds.items())}}


class NotImplementedStatus(errors.EventplaneError):
    code = 501
    reason = "NotImplemented"


def _position(q: Mapping[str, str], name: str) -> int | None:
    text = q.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) < 1:
        raise errors.BadRequestError(f"{name} must be a position (1 or more), not {text!r}")
    return int(text)


async def _lines(request: web.Request):
    """The body's lines, split here: aiohttp's own line reader refuses lines longer than 128 KiB,
    and an event's payload may be 1.5 MiB (2 MiB in base64)."""
    buffer = b""
    async for chunk in request.content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line
    if buffer:
        yield buffer
