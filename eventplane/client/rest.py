"""The REST transport: operations as Kubernetes HTTP requests, over one pooled aiohttp
session trusting the kubeconfig's CA.

Fed by client.py with Ops; speaks to eventplane's API server, or any
Kubernetes API server, exactly as kubectl would: resource paths, JSON bodies,
`application/apply-patch+yaml` for server-side apply, `as=Table` for tables,
newline-delimited WatchEvents. Connection failures become UnreachableError
(client.py retries what is safe to retry); error answers become the error
classes of their Status.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import tempfile
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from .kubeconfig import ClusterAccess
from .operation import Op, Reply
from .status import UnreachableError, error_from_status

JSON = "application/json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
HISTORY_PREFIX = "/apis/history.eventplane.io/v1"
WATCH_READ_TIMEOUT = 120.0  # the server sends a bookmark every 30 s; silence this long is a dead connection
_WARNING = re.compile(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"')


class RestTransport:
    def __init__(self, access: ClusterAccess, *, timeout: float = 30.0, user_agent: str = "eventplane-client",
                 max_connections: int = 100) -> None:
        self.access = access
        self.timeout = timeout
        self.user_agent = user_agent
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    # --- connection -----------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | bool:
        a = self.access
        if not a.server.startswith("https://"):
            return False
        ctx = ssl.create_default_context(cadata=a.ca_pem.decode() if a.ca_pem else None)
        if a.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if a.client_cert_pem and a.client_key_pem:
            # ssl takes certificates from files only: write them where only we can read, briefly.
            with tempfile.TemporaryDirectory(prefix="eventplane-client-") as d:
                cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
                for path, data in ((cert, a.client_cert_pem), (key, a.client_key_pem)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                ctx.load_cert_chain(cert, key)
        return ctx

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=self.max_connections, keepalive_timeout=30)
            headers = {"User-Agent": self.user_agent}
            if self.access.token:
                headers["Authorization"] = f"Bearer {self.access.token}"
            self._session = aiohttp.ClientSession(self.access.server, connector=connector, headers=headers)
        return self._session

    def _tls_name(self) -> dict[str, str]:
        return {"server_hostname": self.access.tls_server_name} if self.access.tls_server_name else {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- operations -----------------------------------------------------------------------------

    async def call(self, op: Op) -> Reply:
        method, path, params, headers, data = _request(op)
        return await self._send(method, path, params=params, headers=headers, data=data)

    async def discover(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for path in ("/api", "/apis"):
            doc = (await self._send("GET", path, headers={"Accept": AGGREGATED})).value
            if doc.get("kind") != "APIGroupDiscoveryList":
                return await self._discover_legacy()
            items.extend(doc.get("items") or [])
        return items

    async def _discover_legacy(self) -> list[dict[str, Any]]:
        """Servers without aggregated discovery: /api/v1, /apis and every group version."""
        gvs = [("", "v1")]
        groups = (await self._send("GET", "/apis")).value
        gvs += [(g["name"], v["version"]) for g in groups.get("groups") or [] for v in g.get("versions") or []]
        by_group: dict[str, dict[str, Any]] = {}
        for group, version in gvs:
            doc = (await self._send("GET", f"/apis/{group}/{version}" if group else "/api/v1")).value
            resources = []
            for r in doc.get("resources") or []:
                if "/" in r["name"]:
                    continue
                resources.append({"resource": r["name"], "responseKind": {"group": group, "version": version,
                                                                          "kind": r["kind"]},
                                  "scope": "Namespaced" if r.get("namespaced") else "Cluster",
                                  "singularResource": r.get("singularName") or r["kind"].lower(),
                                  "verbs": r.get("verbs") or [], "shortNames": r.get("shortNames") or [],
                                  "categories": r.get("categories") or []})
            by_group.setdefault(group, {"metadata": {"name": group}, "versions": []})["versions"].append(
                {"version": version, "resources": resources})
        return list(by_group.values())

    async def get_path(self, path: str, params: dict[str, str] | None = None) -> Reply:
        """GET one of the server's own paths (history.eventplane.io), answered in JSON."""
        return await self._send("GET", path, params=params, headers={"Accept": JSON})

    async def query(self, what: str, params: dict[str, str], target: Op | None = None) -> Reply:
        """A document of history.eventplane.io/v1: `what` (history, diff, why, positions, verify,
        replay) about `target`'s object when given, with `params` as the query."""
        return await self.get_path(f"{HISTORY_PREFIX}/{what}" + (_path(target) if target else ""), params)

    async def watch(self, op: Op) -> AsyncIterator[dict[str, Any]]:
        params = _read_params(op)
        params.update({"watch": "true", "allowWatchBookmarks": "true"})
        if op.send_initial_events:
            params["sendInitialEvents"] = "true"
        if op.timeout_seconds:
            params["timeoutSeconds"] = str(op.timeout_seconds)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=WATCH_READ_TIMEOUT)
        try:
            response = await self.session().get(_path(op), params=params, timeout=timeout, **self._tls_name())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _unreachable(self.access.server, exc) from exc
        async with response:
            if response.status >= 400:
                raise error_from_status(await _body(response), code=response.status)
            buffer = b""
            try:
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield orjson.loads(line)  # several times faster: informers decode every event
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
                return  # the stream broke midway; the caller resumes from the last resourceVersion

    async def _send(self, method: str, path: str, *, params: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None, data: bytes | None = None) -> Reply:
        try:
            async with self.session().request(method, path, params=params, headers=headers, data=data,
                                              timeout=aiohttp.ClientTimeout(total=self.timeout),
                                              **self._tls_name()) as response:
                value = await _body(response)
                warnings = tuple(w.replace('\\"', '"') for h in response.headers.getall("Warning", [])
                                 for w in _WARNING.findall(h))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _unreachable(self.access.server, exc) from exc
        if response.status >= 400:
            raise error_from_status(value, code=response.status)
        return Reply(value, warnings)


def _unreachable(server: str, exc: BaseException) -> UnreachableError:
    err = UnreachableError(f"Unable to connect to the server {server}: {exc or type(exc).__name__}")
    # A certificate the CA does not vouch for will not change on a retry.
    err.retriable = not isinstance(exc, (aiohttp.ClientConnectorCertificateError, ssl.SSLError))
    return err


async def _body(response: aiohttp.ClientResponse) -> Any:
    raw = await response.read()
    if response.content_type.endswith("json") or raw[:1] in (b"{", b"["):
        try:
            return orjson.loads(raw) if raw else {}
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            pass
    return raw


def _path(op: Op, *, with_name: bool = True) -> str:
    info = op.info
    path = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    if info.namespaced and op.namespace:
        path += f"/namespaces/{quote(op.namespace, safe='')}"
    path += f"/{info.resource}"
    if with_name and op.name:
        path += f"/{quote(op.name, safe='')}"
        if op.subresource:
            path += f"/{op.subresource}"
    return path


def _read_params(op: Op) -> dict[str, str]:
    params = {}
    for key, value in (("labelSelector", op.label_selector), ("fieldSelector", op.field_selector),
                       ("resourceVersion", op.resource_version), ("resourceVersionMatch", op.resource_version_match),
                       ("limit", str(op.limit) if op.limit else None), ("continue", op.continue_token),
                       ("asOf", op.as_of)):
        if value:
            params[key] = value
    return params


def _write_params(op: Op) -> dict[str, str]:
    w = op.write
    params = {}
    if w.dry_run:
        params["dryRun"] = "All"
    if w.field_manager:
        params["fieldManager"] = w.field_manager
    if w.force:
        params["force"] = "true"
    if w.field_validation:
        params["fieldValidation"] = w.field_validation
    return params


def _request(op: Op) -> tuple[str, str, dict[str, str], dict[str, str], bytes | None]:
    """method, path, query, headers, body."""
    headers = {"Accept": TABLE if op.table else JSON}
    if op.write.causation is not None:
        headers["X-Eventplane-Causation"] = str(op.write.causation)
    if op.write.idempotency_key:
        headers["Idempotency-Key"] = op.write.idempotency_key
    if op.verb == "get":
        return "GET", _path(op), _read_params(op), headers, None
    if op.verb == "list":
        return "GET", _path(op, with_name=False), _read_params(op), headers, None
    body = json.dumps(op.body, separators=(",", ":")).encode() if op.body is not None else None
    if op.verb == "create":
        # A subresource of one object (pods/binding, pods/eviction) is POSTed to the object's path.
        return ("POST", _path(op, with_name=bool(op.subresource)), _write_params(op),
                {**headers, "Content-Type": JSON}, body)
    if op.verb == "update":
        return "PUT", _path(op), _write_params(op), {**headers, "Content-Type": JSON}, body
    if op.verb in ("patch", "apply"):
        return "PATCH", _path(op), _write_params(op), {**headers, "Content-Type": op.patch_type}, body
    if op.verb == "delete":
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if op.propagation_policy:
            options["propagationPolicy"] = op.propagation_policy
        if op.grace_period_seconds is not None:
            options["gracePeriodSeconds"] = op.grace_period_seconds
        if op.preconditions:
            options["preconditions"] = op.preconditions
        params = {k: v for k, v in _write_params(op).items() if k == "dryRun"}
        if not op.name:
            params.update(_read_params(op))
        return "DELETE", _path(op), params, {**headers, "Content-Type": JSON}, json.dumps(options).encode()
    raise ValueError(f"the REST transport cannot {op.verb!r}")
