"""A userspace service proxy, as kube-proxy's old userspace mode was: a Service's ClusterIP:port
reaches its ready endpoints, round-robin; and the cluster's DNS (dns.py) on the `kube-dns` Service's
ClusterIP.

    await ServiceProxy(client, node_ips=["192.0.2.2"]).run()   # until cancelled
    # or run_nodeagent(..., proxy_services=True), which passes the agent's node IP

Fed by two informers through the agent's client: Services (their ClusterIP and ports) and
EndpointSlices (indexed by their kubernetes.io/service-name label; written by the EndpointSlice
controller). For every TCP and UDP port of a Service that has a ClusterIP (types ClusterIP, NodePort
and LoadBalancer; headless and ExternalName Services have none) the proxy makes the ClusterIP local
(`ip addr add <IP>/32 dev lo label lo:eventplane`), checks with the kernel's route lookup (`ip route
get <IP>` answering `local`) that it is, and refuses to serve the address otherwise; then it listens
on ClusterIP:port.

TCP: each accepted connection is spliced, both ways, to the next endpoint whose `conditions.ready` is
true (never a not-ready one), round-robin; `sessionAffinity: ClientIP` keeps a client on its
endpoint for `timeoutSeconds`. UDP: a datagram from a client address with no flow opens one — a
socket connected to the next ready endpoint — and the endpoint's replies go back to the client from
ClusterIP:port; a flow idle for UDP_IDLE seconds is closed, and one whose endpoint is no longer
ready is closed at its client's next datagram (one whose endpoint refused a datagram at once), and
the client's next datagram opens a flow to another endpoint. The endpoints are read from the informer's cache at each connection or datagram, so a
change of endpoints applies at once, without any restart. A Service that goes (or loses a port, or
changes its ClusterIP) has its listeners closed and the addresses the proxy added removed; stopping
the proxy does the same for all of them.

NodePorts: a port of a NodePort or LoadBalancer Service with a `nodePort` is also listened on at
that port of each of the node's addresses (127.0.0.1 and `node_ips`, the agent's node IP), each
only when `ip route get` says it is local; nothing is added for them.

DNS (`dns=True`, the default): port 53 of the Service `kube-system/kube-dns` is not proxied but
answered by a DnsServer of this process on that ClusterIP (UDP and TCP), from the same two caches.

Left out: SCTP ports (logged and skipped), externalIPs, load balancer IPs, topology hints and
internalTrafficPolicy. The proxy changes the host's addresses, so the agent runs it only when asked
(`--proxy-services`).
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

from .dns import DNS_PORT, DNS_SERVICE, DnsServer, Resolver

log = logging.getLogger("eventplane.nodeagent.serviceproxy")

SERVICE_NAME = "kubernetes.io/service-name"
LABEL = "lo:eventplane"          # the label of the addresses this proxy adds to lo
CONNECT_TIMEOUT = 2.0            # per endpoint; the next one is tried when it does not answer
ATTEMPTS = 3                     # endpoints tried per connection, as kube-proxy's userspace mode did
BUFFER = 64 * 1024
RESYNC = 30.0                    # seconds between syncs without any change
AFFINITY_CAP = 4096              # clients remembered per listener before the expired ones are dropped
DEFAULT_AFFINITY = 10800         # seconds: sessionAffinityConfig.clientIP.timeoutSeconds's default
UDP_IDLE = 30.0                  # seconds a UDP flow lives without a datagram either way (conntrack's unreplied timeout)
UDP_FLOWS = 4096                 # flows per listener; past that the least recently opened goes
UDP_QUEUE = 64                   # datagrams held per flow while its socket to the endpoint opens
PROTOCOLS = ("TCP", "UDP")
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")

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


def ready_endpoints(slices: list[Obj], port_name: str, protocol: str = "TCP") -> list[tuple[str, int]]:
    """(address, port) of the ready endpoints of one Service port (by its name, "" when unnamed, and
    its protocol) across a Service's slices, sorted: the round-robin order."""
    out: set[tuple[str, int]] = set()
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        number = next((p.get("port") for p in s.get("ports") or []
                       if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol), None)
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
    protocol: str = "TCP"
    server: asyncio.base_events.Server | None = None
    udp: asyncio.DatagramTransport | None = None
    flows: dict[tuple[str, int], Flow] = field(default_factory=dict)                   # UDP: client -> flow
    next: int = 0                   # round-robin position
    affinity: dict[str, tuple[tuple[str, int], float]] = field(default_factory=dict)   # client IP -> (endpoint, last use)


@dataclass
class Flow:
    """One UDP client of one listener, and the socket connected to its endpoint."""
    listener: Listener
    client: tuple[str, int]
    endpoint: tuple[str, int]
    last: float
    transport: asyncio.DatagramTransport | None = None
    queue: list[bytes] = field(default_factory=list)     # datagrams sent before the socket opened
    closed: bool = False
    timer: asyncio.TimerHandle | None = None


class ServiceProxy:
    def __init__(self, client: Client, *, dns: bool = True, dns_port: int = DNS_PORT,
                 node_ips: list[str] | None = None) -> None:
        self.client = client
        self.node_ips = list(dict.fromkeys(["127.0.0.1", *(node_ips or [])]))   # where nodePorts listen
        self.services = Informer(client, "services")
        self.slices = Informer(client, "endpointslices", indexers={"service": _by_service})
        self.listeners: dict[tuple[str, int, str], Listener] = {}  # (ClusterIP, port, protocol) -> listener
        self.added: set[str] = set()                              # addresses this proxy put on lo
        self.ready = asyncio.Event()                              # set after the first sync of listeners
        self.dns_enabled = dns
        self.dns_port = dns_port
        self.dns: DnsServer | None = None                         # on the kube-dns Service's ClusterIP
        self.resolver = Resolver(self.services.store.get, lambda key: self.slices.store.by_index("service", key),
                                 self.services.store.list)
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

    def dns_address(self) -> str | None:
        """The address DNS is served on: the kube-dns Service's ClusterIP, when serving DNS."""
        if not self.dns_enabled:
            return None
        svc = self.services.store.get(DNS_SERVICE)
        return cluster_ip(svc) if svc is not None else None

    def desired(self) -> dict[tuple[str, int, str], tuple[str, str]]:
        """(address, port, protocol) -> (service key, port name) for every TCP and UDP port of every
        Service with a ClusterIP (but the DNS port of kube-dns when this proxy answers DNS itself), and
        for every nodePort on each of the node's addresses."""
        out: dict[tuple[str, int, str], tuple[str, str]] = {}
        for svc in self.services.store.list():
            ip = cluster_ip(svc)
            if ip is None:
                continue
            key = key_of(svc)
            for p in (svc.get("spec") or {}).get("ports") or []:
                protocol = p.get("protocol") or "TCP"
                if protocol not in PROTOCOLS:
                    if (key, protocol, p.get("port")) not in self._skipped:
                        self._skipped.add((key, protocol, p.get("port")))
                        log.info("service %s: %s port %s is not proxied (TCP and UDP only)", key, protocol,
                                 p.get("port"))
                    continue
                if key == DNS_SERVICE and self.dns_enabled and p.get("port") == DNS_PORT:
                    continue                                  # answered by self.dns
                if isinstance(p.get("port"), int):
                    out[(ip, p["port"], protocol)] = (key, p.get("name") or "")
                if isinstance(p.get("nodePort"), int) and (svc.get("spec") or {}).get("type") in NODE_PORT_TYPES:
                    for node_ip in self.node_ips:
                        out[(node_ip, p["nodePort"], protocol)] = (key, p.get("name") or "")
        return out

    async def sync(self) -> None:
        want = self.desired()
        dns_ip = self.dns_address()
        for addr, lst in list(self.listeners.items()):
            if want.get(addr) != (lst.service, lst.port_name):
                await self._close(lst)
        if self.dns is not None and self.dns.ip != dns_ip:
            self.dns.close()
            log.info("cluster DNS: no longer served on %s", self.dns.ip)
            self.dns = None
        for ip in list(self.added):
            if ip != dns_ip and not any(a[0] == ip for a in want):
                await self._remove_address(ip)
        for (ip, port, protocol), (service, port_name) in want.items():
            if (ip, port, protocol) in self.listeners:
                continue
            lst = Listener(service, port_name, ip, port, protocol)
            try:
                if ip in self.node_ips:
                    await _check_local(ip)         # the node's own address: never added, never removed
                else:
                    await self._add_address(ip)
                if protocol == "UDP":
                    lst.udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                        lambda lst=lst: _UdpFront(self, lst), local_addr=(ip, port))
                else:
                    lst.server = await asyncio.start_server(lambda r, w, lst=lst: self._accept(lst, r, w), ip, port,
                                                            reuse_address=True)
            except OSError as exc:
                log.warning("service %s: cannot listen on %s:%d/%s: %s", service, ip, port, protocol, exc)
                continue
            self.listeners[(ip, port, protocol)] = lst
            log.info("service %s: proxying %s:%d/%s (port %r)", service, ip, port, protocol, port_name)
        if dns_ip is not None and self.dns is None:
            server = DnsServer(self.resolver, dns_ip, self.dns_port)
            try:
                await self._add_address(dns_ip)
                await server.start()
            except OSError as exc:
                log.warning("cluster DNS: cannot serve on %s:%d: %s", dns_ip, self.dns_port, exc)
            else:
                self.dns = server

    async def _close(self, lst: Listener) -> None:
        self.listeners.pop((lst.ip, lst.port, lst.protocol), None)
        if lst.server is not None:
            lst.server.close()      # connections already accepted go on (not wait_closed: it waits for them)
        if lst.udp is not None:
            for flow in list(lst.flows.values()):
                self._end_flow(flow)
            lst.udp.close()
        log.info("service %s: no longer proxying %s:%d/%s", lst.service, lst.ip, lst.port, lst.protocol)

    async def _close_all(self) -> None:
        for lst in list(self.listeners.values()):
            await self._close(lst)
        if self.dns is not None:
            self.dns.close()
            self.dns = None
        for t in list(self._connections):
            t.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for ip in list(self.added):
            await self._remove_address(ip)

    # --- addresses on lo ---

    async def _add_address(self, ip: str) -> None:
        """Make `ip` local, and make sure the kernel routes it here: raises OSError when it does not."""
        if ip not in self.added:
            code, err = await _ip("addr", "add", f"{ip}/32", "dev", "lo", "label", LABEL)
            if code == 0:
                self.added.add(ip)
            elif "File exists" not in err:
                raise OSError(f"ip addr add {ip}/32 dev lo: {err.strip()}")
            else:
                # There already: ours (left by an agent that was killed) when it carries our label, else
                # not ours and never removed.
                _, out = await _ip("-o", "addr", "show", "dev", "lo", "to", f"{ip}/32")
                if LABEL in out:
                    self.added.add(ip)
        await _check_local(ip)

    async def _remove_address(self, ip: str) -> None:
        self.added.discard(ip)
        code, err = await _ip("addr", "del", f"{ip}/32", "dev", "lo")
        if code != 0 and "Cannot assign" not in err:
            log.warning("ip addr del %s/32 dev lo: %s", ip, err.strip())

    # --- UDP ---

    def _datagram(self, lst: Listener, data: bytes, client: tuple[str, int]) -> None:
        """A datagram from a client: onto its flow, or a new flow to the next ready endpoint."""
        now = time.monotonic()
        flow = lst.flows.get(client)
        if flow is not None and not flow.closed:
            ready = ready_endpoints(self.slices.store.by_index("service", lst.service), lst.port_name, "UDP")
            if flow.endpoint not in ready:
                self._end_flow(flow)         # its endpoint stopped being ready: the next one takes over
                flow = None
        if flow is None or flow.closed:
            endpoint = self.pick(lst, client[0], set())
            if endpoint is None:
                log.debug("service %s: no ready endpoint for a datagram to %s:%d", lst.service, lst.ip, lst.port)
                return
            if len(lst.flows) >= UDP_FLOWS:
                self._end_flow(next(iter(lst.flows.values())))
            flow = Flow(lst, client, endpoint, now, queue=[data])
            lst.flows[client] = flow
            task = asyncio.ensure_future(self._open_flow(flow))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
            return
        flow.last = now
        if flow.transport is None:
            if len(flow.queue) < UDP_QUEUE:
                flow.queue.append(data)
        else:
            flow.transport.sendto(data)

    async def _open_flow(self, flow: Flow) -> None:
        try:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _UdpBack(self, flow), remote_addr=flow.endpoint)
        except OSError as exc:
            log.info("service %s: endpoint %s:%d: %s", flow.listener.service, *flow.endpoint, exc)
            self._end_flow(flow)
            return
        if flow.closed:
            transport.close()
            return
        flow.transport = transport
        for data in flow.queue:
            transport.sendto(data)
        flow.queue.clear()
        self._arm(flow)

    def _arm(self, flow: Flow) -> None:
        left = flow.last + UDP_IDLE - time.monotonic()
        if left <= 0:
            self._end_flow(flow)
        else:
            flow.timer = asyncio.get_running_loop().call_later(left, self._arm, flow)

    def _reply(self, flow: Flow, data: bytes) -> None:
        """A datagram from the endpoint: back to the client, from ClusterIP:port."""
        lst = flow.listener
        if flow.closed or lst.udp is None or lst.udp.is_closing():
            return
        flow.last = time.monotonic()
        lst.udp.sendto(data, flow.client)

    def _end_flow(self, flow: Flow) -> None:
        if flow.closed:
            return
        flow.closed = True
        if flow.listener.flows.get(flow.client) is flow:
            del flow.listener.flows[flow.client]
        if flow.timer is not None:
            flow.timer.cancel()
        if flow.transport is not None:
            flow.transport.close()

    # --- connections ---

    def pick(self, lst: Listener, client_ip: str | None, tried: set[tuple[str, int]]) -> tuple[str, int] | None:
        """The next ready endpoint not tried yet for this connection: round-robin, or the client's
        endpoint under sessionAffinity ClientIP."""
        endpoints = [e for e in ready_endpoints(self.slices.store.by_index("service", lst.service), lst.port_name,
                                                lst.protocol) if e not in tried]
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


class _UdpFront(asyncio.DatagramProtocol):
    """ClusterIP:port of a UDP Service port."""

    def __init__(self, proxy: ServiceProxy, lst: Listener) -> None:
        self.proxy, self.lst = proxy, lst

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.proxy._datagram(self.lst, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("service %s: %s", self.lst.service, exc)


class _UdpBack(asyncio.DatagramProtocol):
    """A flow's socket, connected to its endpoint."""

    def __init__(self, proxy: ServiceProxy, flow: Flow) -> None:
        self.proxy, self.flow = proxy, flow

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.proxy._reply(self.flow, data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: this endpoint does not take datagrams; the client's next
        # one opens a flow to the next endpoint.
        log.info("service %s: endpoint %s:%d: %s", self.flow.listener.service, *self.flow.endpoint, exc)
        self.proxy._end_flow(self.flow)


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


async def _check_local(ip: str) -> None:
    """OSError unless the kernel's route lookup says `ip` is this machine's: nothing is served otherwise."""
    _, route = await _ip("route", "get", ip)
    if not route.startswith("local "):
        raise OSError(f"the kernel does not route {ip} to this machine ({route.strip()}): not serving it")


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, (out + err).decode(errors="replace")
