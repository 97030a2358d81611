"""The API server as a component: PKI and tokens from the data directory, the event
store, the bus, the watch cache and the HTTPS listener, started and stopped
together. Used by `eventplane up` and `eventplane apiserver`.
"""
from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path

import nats
from aiohttp import web

from eventplane.auth.authenticate import Authenticator
from eventplane.auth.certs import Pki, ensure_pki
from eventplane.auth.tokens import TokenFile, ensure_admin_token
from eventplane.bus import BusConfig, ensure_stream
from eventplane.objects import errors
from eventplane.objects.schema import Catalog, custom_resource
from eventplane.store import EventStore
from eventplane.store.audit import AuditWriter

from . import podproxy
from .app import build_app
from .audit import Auditor, load_policy
from .natsapi import NatsApi
from .openapi import OpenAPI
from .registry import Caller, Registry, WriteOptions, stream_of
from .rest import ResourceHandler
from .watchcache import WatchCache
from .watching import Watches

log = logging.getLogger("eventplane.apiserver")

SHUTDOWN_GRACE = 3.0  # seconds requests in flight get to finish when the server stops

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CRD = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"  # kube-system/kube-dns: the node agents answer cluster DNS there (nodeagent/dns.py)
GC_THRESHOLD = 10_000  # allocations between two collections of the youngest generation (Python: 700)


@dataclass
class ApiConfig:
    database_url: str
    nats_url: str
    data_dir: Path
    bus: BusConfig = field(default_factory=BusConfig)
    bind: str = "127.0.0.1"
    port: int = 6443
    hosts: tuple[str, ...] = ()
    nats_api_prefix: str = "ep.api"
    audit_policy: Path | None = None  # --audit-policy-file; None: Metadata for all but health checks

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"https://{host}:{self.port}"


class ApiServer:
    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.catalog = Catalog.builtin()
        self._openapi: OpenAPI | None = None
        self.pki: Pki | None = None
        self.admin_token = ""
        self.store: EventStore | None = None
        self.nc: nats.NATS | None = None
        self.cache: WatchCache | None = None
        self.registry: Registry | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._ready = False
        self.authenticator: Authenticator | None = None
        self.natsapi: NatsApi | None = None
        self.auditor: Auditor | None = None

    @property
    def url(self) -> str:
        return self.config.url

    def openapi(self) -> OpenAPI:
        if self._openapi is None or self._openapi.catalog is not self.catalog:
            self._openapi = OpenAPI(self.catalog)
        return self._openapi

    async def start(self) -> None:
        c = self.config
        if c.nats_api_prefix == c.bus.subject_prefix or c.nats_api_prefix.startswith(c.bus.subject_prefix + "."):
            # the EVENTS stream would capture API requests, and sequence == position would break
            raise ValueError(f"the NATS API prefix {c.nats_api_prefix!r} lies inside the event subjects "
                             f"{c.bus.subject_prefix!r}.>")
        c.data_dir.mkdir(parents=True, exist_ok=True)
        hosts = sorted({c.bind, "127.0.0.1", "localhost", "::1", *c.hosts} - {"0.0.0.0", "::"})
        self.pki = ensure_pki(c.data_dir / "pki", hosts=hosts)
        token_path = c.data_dir / "tokens.csv"
        self.admin_token = ensure_admin_token(token_path)
        authenticator = Authenticator(TokenFile.load(token_path), self.pki.ca_cert)
        self.authenticator = authenticator

        policy = load_policy(c.audit_policy)  # a bad policy file fails here, before anything starts
        self.store = await EventStore.open(c.database_url, max_size=20)
        self.auditor = Auditor(AuditWriter(c.database_url), policy, self.store.pool)
        await self.auditor.start()
        self.nc = await nats.connect(c.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                     name="eventplane-apiserver")
        async with self.store.pool.acquire() as conn:
            await ensure_stream(self.nc.jetstream(), c.bus, conn)
        head = await self.store.head()
        await self._load_crds()
        self.cache = WatchCache(self.nc, c.bus, start_after=head)
        await self.cache.start()
        self.registry = Registry(self.store, lambda: self.catalog)
        self.registry.after_write.append(self._after_write)
        self.registry.seen = self.cache.object_at
        watches = Watches(self.registry, self.cache)
        handler = ResourceHandler(self.registry, lambda: self.catalog, watches)
        await self._bootstrap()
        self._tasks.append(asyncio.create_task(self._follow_crds(head), name="crd-catalog"))
        self._tasks.append(asyncio.create_task(self._follow_namespaces(head), name="namespace-cache"))
        self._tasks.append(asyncio.create_task(self.registry.admission.follow(self.cache), name="priorityclass-cache"))

        def authenticate(request: web.Request):
            ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
            peer = ssl_object.getpeercert() if ssl_object is not None else None
            return authenticator.authenticate(authorization_header=request.headers.get("Authorization"),
                                              peer_cert=peer or None)

        app = build_app(authenticate=authenticate, catalog=lambda: self.catalog, resources=handler,
                        openapi=self.openapi, ready=lambda: self._ready, server_address=f"{c.bind}:{c.port}",
                        auditor=self.auditor)
        app[podproxy.NATS] = self.nc  # pods/log reaches the node agents over NATS
        # handler_cancellation: a watch whose client went away ends at once, not at its next write.
        # shutdown_timeout: on stop, requests in flight get that long to finish; open watches (which
        # never finish) are then cut, and their clients resume elsewhere from their last version.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True,
                                     shutdown_timeout=SHUTDOWN_GRACE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, c.bind, c.port, ssl_context=self.pki.server_ssl_context(),
                           reuse_address=True)
        await site.start()
        self.natsapi = NatsApi(self, prefix=c.nats_api_prefix)
        await self.natsapi.start()
        # What start-up built (catalog, schemas, OpenAPI, caches) lives as long as the server: kept out
        # of the cyclic collector's generations, so that its full passes walk only what requests leave.
        # Requests allocate many short-lived containers and few cycles: a larger first generation
        # collects as much, less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        self._ready = True
        log.info("API server listening on %s", c.url)

    async def stop(self) -> None:
        self._ready = False
        if self.natsapi:
            await self.natsapi.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner:
            await self._runner.cleanup()
        if self.auditor:
            await self.auditor.close()  # after the listeners: their last requests are recorded too
        if self.cache:
            await self.cache.close()
        if self.nc:
            await self.nc.close()
        if self.store:
            await self.store.close()

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    # --- custom resources -----------------------------------------------------------------------

    async def _load_crds(self) -> None:
        crds = await self.store.list(group=CRD[0], resource=CRD[1])
        self._set_crds(crds)

    def _set_crds(self, crds: list[dict]) -> None:
        custom = [r for crd in crds if not (crd.get("metadata") or {}).get("deletionTimestamp")
                  for r in custom_resource(crd)]
        self.catalog = self.catalog.with_custom(custom)

    async def _after_write(self, info, obj) -> None:
        if (info.group, info.resource) == CRD:
            await self._load_crds()

    async def _follow_crds(self, after: int) -> None:
        """CRDs written through other API servers change this one's catalog too."""
        async for _ in self.cache.changes(after, lambda e: (e.stream.group, e.stream.resource) == CRD):
            await self._load_crds()

    async def _follow_namespaces(self, after: int) -> None:
        async for change in self.cache.changes(after, lambda e: (e.stream.group, e.stream.resource) == NAMESPACES):
            self.registry.note_namespace(change.object, deleted=change.event.type == "Deleted")

    async def _bootstrap(self) -> None:
        info = self.catalog.get("", "v1", "namespaces")
        system = Caller(user="system:apiserver", request_id="bootstrap")
        for name in BOOTSTRAP_NAMESPACES:
            if await self.store.get(stream_of(info, "", name)) is None:
                try:
                    await self.registry.create(info, "", {"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": name}}, system, WriteOptions())
                except errors.AlreadyExistsError:
                    pass  # another API server made it first
        # The `kubernetes` service, as kube-apiserver keeps it: the first address of the service
        # range, so that clients inside the cluster find the API at a fixed address.
        svc = self.catalog.get("", "v1", "services")
        if await self.store.get(stream_of(svc, "default", "kubernetes")) is None:
            try:
                await self.registry.create(svc, "default", {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "kubernetes", "labels": {"component": "apiserver",
                                                                  "provider": "kubernetes"}},
                    "spec": {"clusterIP": KUBERNETES_SERVICE_IP, "type": "ClusterIP",
                             "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                        "targetPort": self.config.port}]}}, system, WriteOptions())
            except errors.AlreadyExistsError:
                pass
        # `kube-dns`, as kubeadm installs it but with no selector: no DNS pod runs, the node agents that
        # proxy Services answer on its address themselves.
        if await self.store.get(stream_of(svc, "kube-system", "kube-dns")) is None:
            try:
                await self.registry.create(svc, "kube-system", {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS",
                                                                "kubernetes.io/cluster-service": "true"}},
                    "spec": {"clusterIP": DNS_SERVICE_IP, "type": "ClusterIP",
                             "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                       {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
                    system, WriteOptions())
            except errors.AlreadyExistsError:
                pass
            except errors.InvalidError as exc:     # its address taken by a Service made before this bootstrap
                log.warning("kube-dns not created: %s", exc)
        priority_classes = self.catalog.get("scheduling.k8s.io", "v1", "priorityclasses")
        await self.registry.admission.bootstrap(self.registry, priority_classes, system, WriteOptions())
