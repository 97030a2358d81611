"""A userspace service proxy, as kube-proxy's old userspace mode was: a Service's ClusterIP:port
reaches its ready endpoints, round-robin.

    await ServiceProxy(client).run()        # until cancelled; run_nodeagent(..., proxy_services=True)

Fed by two informers through the agent's client: Services (their ClusterIP and ports) and
EndpointSlices (indexed by their kubernetes.io/service-name label; written by the EndpointSlice
controller). For every TCP port of a Service that has a ClusterIP (types ClusterIP, NodePort and
LoadBalancer; headless and ExternalName Services have none) the proxy makes the ClusterIP local
(`ip addr add <IP>/32 dev lo label lo:eventplane`), listens on ClusterIP:port, and splices each
accepted connection, both ways, to the next endpoint whose `conditions.ready` is true (never a
not-ready one), round-robin; `sessionAffinity: ClientIP` keeps a client on its endpoint for
`timeoutSeconds`. The endpoints are read from the informer's cache at each connection, so a change
of endpoints applies to the next connection without any restart. A Service that goes (or loses a
port, or changes its ClusterIP) has its listeners closed and the addresses the proxy added removed;
stopping the proxy does the same for all of them.

Left out: UDP and SCTP ports (logged and skipped: a userspace UDP proxy needs per-client sessions),
nodePorts, externalIPs, load balancer IPs, topology hints and internalTrafficPolicy. The proxy
changes the host's addresses, so the agent runs it only when asked (`--proxy-services`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from eventplane.client import Client
from reconcilers.informer import Informer, key_of

log = logging.getLogger("eventplane.nodeagent.serviceproxy")

SERVICE_NAME = "kubernetes.io/service-name"
LABEL = "lo:eventplane"          # the label of the addresses this proxy adds to lo
CONNECT_TIMEOUT = 2.0            # per endpoint; the next one is tried when it does not answer
ATTEMPTS = 3                     # endpoints tried per connection, as kube-proxy's userspace mode did
BUFFER = 64 * 1024
RESYNC = 30.0                    # seconds between syncs without any change
AFFINITY_CAP = 4096              # clients remembered per listener before the expired ones are dropped
DEFAULT_AFFINITY = 10800         # seconds: sessionAffinityConfig.clientIP.timeoutSeconds's default

Obj = dict[str, Any]


def _by_service(obj: Obj) -> list[str]:
    m = obj.get("metadata") or {}
    name = (m.get("labels") or {}).get(SERVICE_NAME)
    return [f"{m.get('namespace')}/{name}"] if name else []


def cluster_ip(service: Obj) -> str | None:
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    ip = spec.get("clusterIP")
    if not ip or ip == "None" or ":" in ip:     # headless, not yet allocated, or IPv6 (not proxied)
        return None
    return ip


def ready_endpoints(slices: list[Obj], port_name: str) -> list[tuple[str, int]]:
    """(address, port) of the ready endpoints of one Service port (by its name, "" when unnamed) across
    a Service's slices, sorted: the round-robin order."""
    out: set[tuple[str, int]] = set()
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        number = next((p.get("port") for p in s.get("ports") or []
                       if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == "TCP"), None)
        if not number:
            continue
        for e in s.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready") is not True:
                continue
            for address in (e.get("addresses") or [])[:1]:
                out.add((address, int(number)))
    return sorted(out)


@dataclass
class Listener:
    service: str                    # namespace/name
    port_name: str
    ip: str
    port: int
    server: asyncio.base_events.Server | None = None
    next: int = 0                   # round-robin position
    affinity: dict[str, tuple[tuple[str, int], float]] = field(default_factory=dict)   # client IP -> (endpoint, last use)


class ServiceProxy:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.services = Informer(client, "services")
        self.slices = Informer(client, "endpointslices", indexers={"service": _by_service})
        self.listeners: dict[tuple[str, int], Listener] = {}     # (ClusterIP, port) -> listener
        self.added: set[str] = set()                              # addresses this proxy put on lo
        self.ready = asyncio.Event()                              # set after the first sync of listeners
        self._changed = asyncio.Event()
        self._connections: set[asyncio.Task[None]] = set()
        self._skipped: set[tuple[str, str, int]] = set()          # (service, protocol, port) logged once

    async def run(self) -> None:
        self.services.add_handler(on_add=self._wake, on_update=lambda _o, _n: self._changed.set(),
                                  on_delete=self._wake)
        self.services.start()
        self.slices.start()
        try:
            await self.services.wait_synced()
            await self.slices.wait_synced()
            while True:
                self._changed.clear()
                try:
                    await self.sync()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("service proxy: %s", exc)
                    await asyncio.sleep(1)
                    self._changed.set()
                self.ready.set()
                with contextlib.suppress(asyncio.TimeoutError):   # a listener that could not open is retried
                    await asyncio.wait_for(self._changed.wait(), RESYNC)
        finally:
            await asyncio.shield(self._close_all())
            await self.services.stop()
            await self.slices.stop()

    def _wake(self, _obj: Obj) -> None:
        self._changed.set()

    # --- listeners ---

    def desired(self) -> dict[tuple[str, int], tuple[str, str]]:
        """(ClusterIP, port) -> (service key, port name) for every TCP port of every Service with a ClusterIP."""
        out: dict[tuple[str, int], tuple[str, str]] = {}
        for svc in self.services.store.list():
            ip = cluster_ip(svc)
            if ip is None:
                continue
            key = key_of(svc)
            for p in (svc.get("spec") or {}).get("ports") or []:
                protocol = p.get("protocol") or "TCP"
                if protocol != "TCP":
                    if (key, protocol, p.get("port")) not in self._skipped:
                        self._skipped.add((key, protocol, p.get("port")))
                        log.info("service %s: %s port %s is not proxied (TCP only)", key, protocol, p.get("port"))
                    continue
                if isinstance(p.get("port"), int):
                    out[(ip, p["port"])] = (key, p.get("name") or "")
        return out

    async def sync(self) -> None:
        want = self.desired()
        for addr, lst in list(self.listeners.items()):
            if want.get(addr) != (lst.service, lst.port_name):
                await self._close(lst)
        for ip in list(self.added):
            if not any(a[0] == ip for a in want):
                await self._remove_address(ip)
        for (ip, port), (service, port_name) in want.items():
            if (ip, port) in self.listeners:
                continue
            lst = Listener(service, port_name, ip, port)
            try:
                await self._add_address(ip)
                lst.server = await asyncio.start_server(lambda r, w, lst=lst: self._accept(lst, r, w), ip, port,
                                                        reuse_address=True)
            except OSError as exc:
                log.warning("service %s: cannot listen on %s:%d: %s", service, ip, port, exc)
                continue
            self.listeners[(ip, port)] = lst
            log.info("service %s: proxying %s:%d (port %r)", service, ip, port, port_name)

    async def _close(self, lst: Listener) -> None:
        self.listeners.pop((lst.ip, lst.port), None)
        if lst.server is not None:
            lst.server.close()      # connections already accepted go on (not wait_closed: it waits for them)
        log.info("service %s: no longer proxying %s:%d", lst.service, lst.ip, lst.port)

    async def _close_all(self) -> None:
        for lst in list(self.listeners.values()):
            await self._close(lst)
        for t in list(self._connections):
            t.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for ip in list(self.added):
            await self._remove_address(ip)

    # --- addresses on lo ---

    async def _add_address(self, ip: str) -> None:
        if ip in self.added:
            return
        code, err = await _ip("addr", "add", f"{ip}/32", "dev", "lo", "label", LABEL)
        if code == 0:
            self.added.add(ip)
            return
        if "File exists" not in err:
            raise OSError(f"ip addr add {ip}/32 dev lo: {err.strip()}")
        # There already: ours (left by an agent that was killed) when it carries our label, else not ours
        # and never removed.
        _, out = await _ip("-o", "addr", "show", "dev", "lo", "to", f"{ip}/32")
        if LABEL in out:
            self.added.add(ip)

    async def _remove_address(self, ip: str) -> None:
        self.added.discard(ip)
        code, err = await _ip("addr", "del", f"{ip}/32", "dev", "lo")
        if code != 0 and "Cannot assign" not in err:
            log.warning("ip addr del %s/32 dev lo: %s", ip, err.strip())

    # --- connections ---

    def pick(self, lst: Listener, client_ip: str | None, tried: set[tuple[str, int]]) -> tuple[str, int] | None:
        """The next ready endpoint not tried yet for this connection: round-robin, or the client's
        endpoint under sessionAffinity ClientIP."""
        endpoints = [e for e in ready_endpoints(self.slices.store.by_index("service", lst.service), lst.port_name)
                     if e not in tried]
        if not endpoints:
            return None
        svc = self.services.store.get(lst.service) or {}
        spec = svc.get("spec") or {}
        timeout = None
        if spec.get("sessionAffinity") == "ClientIP" and client_ip:
            timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds") \
                or DEFAULT_AFFINITY
            held = lst.affinity.get(client_ip)
            if held is not None and held[0] in endpoints and time.monotonic() - held[1] < timeout:
                lst.affinity[client_ip] = (held[0], time.monotonic())
                return held[0]
        chosen = endpoints[lst.next % len(endpoints)]
        lst.next = (lst.next + 1) % len(endpoints)
        if timeout is not None and client_ip:
            now = time.monotonic()
            if len(lst.affinity) >= AFFINITY_CAP:       # forget the clients whose time ran out
                lst.affinity = {c: h for c, h in lst.affinity.items() if now - h[1] < timeout}
            lst.affinity[client_ip] = (chosen, now)
        return chosen

    def _accept(self, lst: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(lst, reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, lst: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if peer else None
        tried: set[tuple[str, int]] = set()
        upstream = None
        try:
            for _ in range(ATTEMPTS):
                endpoint = self.pick(lst, client_ip, tried)
                if endpoint is None:
                    break
                tried.add(endpoint)
                try:
                    upstream = await asyncio.wait_for(asyncio.open_connection(*endpoint), CONNECT_TIMEOUT)
                    break
                except (OSError, asyncio.TimeoutError) as exc:
                    log.info("service %s: endpoint %s:%d: %s", lst.service, *endpoint, exc or "timed out")
            if upstream is None:
                log.info("service %s: no ready endpoint answers for %s:%d", lst.service, lst.ip, lst.port)
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
            finally:
                up_writer.close()
                with contextlib.suppress(Exception):
                    await up_writer.wait_closed()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes from one side to the other until EOF, which is passed on as a half-close."""
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, (out + err).decode(errors="replace")
