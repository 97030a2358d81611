"""The API server's HTTP application: health and version, discovery, OpenAPI, and the
resource paths; authentication and Kubernetes Status errors as middleware.

Fed by aiohttp over TLS (server.py); hands resource requests to rest.py.
"""
from __future__ import annotations

import logging
import platform
import warnings
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource, MatchInfoError, PrefixResource, UrlMappingMatchInfo

from eventplane.objects import errors
from eventplane.objects.schema import Catalog

from . import audit, codec, discovery, openapiv2pb, podproxy, strategy
from .history import HistoryHandler
from .integrity import IntegrityHandler
from .openapi import OpenAPI
from .rest import ResourceHandler

log = logging.getLogger("eventplane.api")

PUBLIC_PATHS = {"/livez", "/readyz", "/healthz", "/version"}
VERSION_INFO = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-eventplane", "gitCommit": "eventplane",
                "gitTreeState": "clean", "buildDate": "2026-11-28T00:00:00Z",
                "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
                "platform": f"linux/{'amd64' if platform.machine() == 'x86_64' else platform.machine()}"}


_HTTP_ERRORS: dict[int, type[errors.EventplaneError]] = {
    404: errors.NotFoundError, 405: errors.MethodNotSupportedError, 413: errors.RequestEntityTooLargeError,
    415: errors.UnsupportedMediaTypeError}


class _Router(web.UrlDispatcher):
    """aiohttp's router, remembering which resource answered each (method, path).

    aiohttp tries, for every request, each resource registered under each prefix of the path
    (pods/log and the others under /api/v1/namespaces, then /api/v1, then /api): a coroutine and
    a match apiece. Once the routes are frozen, the same method and path are answered by the same
    resource — the ones tried before it fail again — so the one that answered is asked directly.
    A miss, or an app with sub-apps (whose resources are not this router's), takes aiohttp's way."""

    MAX_REMEMBERED = 4096

    def __init__(self) -> None:
        super().__init__()
        self._answered: dict[tuple[str, str], AbstractResource] = {}
        self._remembering = False

    def freeze(self) -> None:
        super().freeze()
        self._answered.clear()
        self._remembering = not any(isinstance(r, PrefixResource) for r in self._resources)

    async def resolve(self, request: web.Request) -> UrlMappingMatchInfo:
        if not self._remembering:
            return await super().resolve(request)
        key = (request.method, request.rel_url.path_safe)
        resource = self._answered.get(key)
        if resource is not None:
            match_info, _ = await resource.resolve(request)
            if match_info is not None:
                return match_info
        match_info = await super().resolve(request)
        if not isinstance(match_info, MatchInfoError):
            if len(self._answered) >= self.MAX_REMEMBERED:
                self._answered.clear()
            self._answered[key] = match_info.route.resource
        return match_info


def _status_response(exc: errors.EventplaneError) -> web.Response:
    return web.Response(body=codec.encode(exc.to_status()), status=exc.code, content_type="application/json")


def build_app(*, authenticate: Callable, catalog: Callable[[], Catalog], resources: ResourceHandler,
              openapi: Callable[[], OpenAPI], ready: Callable[[], bool], server_address: str,
              auditor: audit.Auditor | None = None) -> web.Application:
    @web.middleware
    async def errors_and_auth(request: web.Request, handler):
        request["request_id"] = request.headers.get("X-Request-Id") or strategy.new_uid()
        try:
            user = authenticate(request)
            if user is None and request.path.rstrip("/") not in PUBLIC_PATHS and \
                    not request.path.startswith(("/livez/", "/readyz/", "/healthz/")):
                raise errors.UnauthorizedError("Unauthorized")
            request["user"] = user
            return await handler(request)
        except errors.EventplaneError as exc:
            return _status_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # aiohttp's own refusals (body too large, bad method) answered as Kubernetes would
            cls = _HTTP_ERRORS.get(exc.status, errors.BadRequestError)
            return _status_response(cls(exc.text or exc.reason))
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return _status_response(errors.EventplaneError("an internal error occurred; see the server log"))

    # audit first: it sees the status errors_and_auth answers (401s too) and the user it found
    middlewares = [audit.middleware(auditor), errors_and_auth] if auditor else [errors_and_auth]
    with warnings.catch_warnings():  # router= is deprecated, but still the way to give the app a router
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(middlewares=middlewares, client_max_size=3 * 1024 * 1024, router=_Router())

    async def health(request: web.Request) -> web.Response:
        if request.path.startswith("/readyz") and not ready():
            return web.Response(text="[-]eventplane not ready\nreadyz check failed", status=500)
        return web.Response(text="ok")

    async def version(_request: web.Request) -> web.Response:
        return web.json_response(VERSION_INFO)

    def negotiated(request: web.Request, *, core: bool) -> web.Response | None:
        v = discovery.aggregated_version(codec.parse_accept(request.headers.get("Accept")))
        if v is None:
            return None
        return web.Response(body=codec.encode(discovery.aggregated(catalog(), core=core, version=v)),
                            headers={"Content-Type": discovery.AGGREGATED.format(v=v)})

    async def api_root(request: web.Request) -> web.Response:
        return negotiated(request, core=True) or web.json_response(discovery.api_versions(server_address))

    async def apis_root(request: web.Request) -> web.Response:
        return negotiated(request, core=False) or web.json_response(discovery.api_group_list(catalog()))

    async def core_v1(_request: web.Request) -> web.Response:
        return web.json_response(discovery.resource_list(catalog(), "", "v1"))

    async def group(request: web.Request) -> web.Response:
        doc = discovery.api_group(catalog(), request.match_info["group"])
        if doc is None:
            raise errors.NotFoundError("the server could not find the requested resource")
        return web.json_response(doc)

    async def group_version(request: web.Request) -> web.Response:
        doc = discovery.resource_list(catalog(), request.match_info["group"], request.match_info["version"])
        if doc is None:
            raise errors.NotFoundError("the server could not find the requested resource")
        return web.json_response(doc)

    async def openapi_v2(request: web.Request) -> web.Response:
        # kubectl accepts only protobuf here (1.27-1.30 cannot apply without it); others get JSON, */* included.
        content_type = openapiv2pb.negotiate(request.headers.get("Accept"))
        if content_type is None:
            raise errors.NotAcceptableError("only application/json and "
                                            f"{openapiv2pb.MEDIA_TYPE} are available at /openapi/v2")
        body, etag = openapiv2pb.variant(openapi(), content_type)
        headers = {"Vary": "Accept", "ETag": etag}
        if_none_match = request.headers.get("If-None-Match", "")
        if if_none_match.strip() == "*" or etag in (t.strip().removeprefix("W/") for t in if_none_match.split(",")):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type, headers=headers)

    async def openapi_v3_index(_request: web.Request) -> web.Response:
        return web.json_response(openapi().v3_index())

    async def openapi_v3(request: web.Request) -> web.Response:
        doc = openapi().v3(request.match_info["tail"])
        if doc is None:
            raise errors.NotFoundError("the server could not find the requested resource")
        return web.Response(body=doc, content_type="application/json",
                            headers={"Cache-Control": "public, immutable"} if "hash" in request.query else {})

    for path in ("/livez", "/readyz", "/healthz"):
        app.router.add_get(path, health)
        app.router.add_get(path + "/{check:.*}", health)
    app.router.add_get("/version", version)
    app.router.add_get("/api", api_root)
    app.router.add_get("/api/", api_root)
    app.router.add_get("/apis", apis_root)
    app.router.add_get("/apis/", apis_root)
    app.router.add_get("/api/v1", core_v1)
    app.router.add_get("/api/v1/", core_v1)
    podproxy.add_routes(app.router, resources)  # pods/log, relayed to the pod's node agent over NATS
    IntegrityHandler(resources).add_routes(app.router)  # verify, export, import, replay: ahead of history's
    HistoryHandler(resources).add_routes(app.router)  # history.eventplane.io, ahead of /apis/{group}
    if auditor:
        audit.add_routes(app.router, auditor)  # audit.eventplane.io, ahead of /apis/{group}
    app.router.add_get("/apis/{group}", group)
    app.router.add_get("/apis/{group}/", group)
    app.router.add_get("/apis/{group}/{version}", group_version)
    app.router.add_get("/apis/{group}/{version}/", group_version)
    app.router.add_get("/openapi/v2", openapi_v2)
    app.router.add_get("/openapi/v3", openapi_v3_index)
    app.router.add_get("/openapi/v3/{tail:.+}", openapi_v3)
    app.router.add_route("*", "/api/{tail:.+}", resources.__call__)
    app.router.add_route("*", "/apis/{tail:.+}", resources.__call__)
    return app
