"""Cluster DNS, answered by the node agent itself: `NAME.NAMESPACE.svc.cluster.local` → the Service's
ClusterIP, as CoreDNS's kubernetes plugin answers it (the Kubernetes DNS-based service discovery
specification), with no DNS pod.

    resolver = Resolver(services.store.get, lambda key: slices.store.by_index("service", key),
                        services.store.list)
    server = DnsServer(resolver, "10.96.0.10"); await server.start(); ...; server.close()

Fed by the service proxy's two informers (serviceproxy.py: Services, and EndpointSlices indexed by
their kubernetes.io/service-name label), read at each query, so a Service or an endpoint that
changes is answered the next query, never cached here. The proxy serves it on the ClusterIP of the
Service `kube-system/kube-dns` (10.96.0.10, created by the API server at bootstrap), port 53, UDP
and TCP, once `ip route get` says that address is local; containers are pointed at it by
`dns_host_config` (the Docker runtime's infra container, which owns the pod's /etc/resolv.conf).

What is answered (class IN; names compared case-insensitively; TTL 5 s, as CoreDNS's default):

- `NAME.NS.svc.cluster.local` A → the ClusterIP; headless (clusterIP None) → the addresses of the
  ready endpoints (NXDOMAIN while there are none, as CoreDNS); ExternalName → a CNAME to
  `spec.externalName` (never followed: that name is not ours); SRV → one record per port.
- `HOSTNAME.NAME.NS.svc.cluster.local` A → the ready endpoint of a headless Service with that
  `hostname` (StatefulSet pods), or written as its dashed address (`10-1-2-3`).
- `_PORT._PROTO.NAME.NS.svc.cluster.local` SRV → for a named port: the ClusterIP's name and the
  Service port, or for a headless Service one record per ready endpoint (its name, its port), the
  targets' A records in the additional section.
- `A-B-C-D.NS.pod.cluster.local` A → A.B.C.D (CoreDNS's `pods insecure`, its default).
- `dns-version.cluster.local` TXT → "1.1.0", the version of the specification.
- PTR `D.C.B.A.in-addr.arpa` of a ClusterIP → `NAME.NS.svc.cluster.local`; of a ready headless
  endpoint → its name under the Service.
- A name that exists with no record of the asked type (AAAA: no IPv6 here) → NODATA; a name of the
  cluster domain that does not exist → NXDOMAIN; both with the zone's SOA in the authority section.

Everything else is REFUSED: names outside the cluster domain and reverse names of addresses that are
not the cluster's. This server never forwards — the machine it runs on must not send DNS (or any
traffic) off-host — so a pod resolves only cluster names. A packet too short to carry a header, or
one that is a response, is dropped; one whose header reads but whose body does not parse gets
FORMERR; another opcode NOTIMP; more than one question FORMERR. A UDP answer larger than the
client's limit (512 bytes, or its EDNS0 size up to 1232) comes back truncated (TC) for the client
to ask again over TCP.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from dnslib import CNAME, EDNS0, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSHeader, DNSLabel, DNSRecord

log = logging.getLogger("eventplane.nodeagent.dns")

CLUSTER_DOMAIN = "cluster.local"
DNS_SERVICE = "kube-system/kube-dns"       # the Service whose ClusterIP the agent answers on
DNS_SERVICE_IP = "10.96.0.10"              # its address, kept by the API server's bootstrap
DNS_PORT = 53
TTL = 5                                    # CoreDNS kubernetes plugin's default
SPEC_VERSION = "1.1.0"
UDP_LIMIT = 512
EDNS_LIMIT = 1232                          # the largest UDP answer, whatever the client's EDNS0 says
TCP_IDLE = 10.0                            # seconds a TCP client may keep a connection without a query
TCP_CLIENTS = 256                          # TCP connections at once; more are closed at once
NDOTS = 5
MAX_NAMESERVERS, MAX_SEARCHES, MAX_SEARCH_CHARS = 3, 32, 2048   # the kubelet's limits

Obj = dict[str, Any]

# --- the resolver: names → records, from the informers' caches --------------------------------------


class Resolver:
    """Answers one parsed query from three views of the caches: a Service by its key (namespace/name),
    a Service's EndpointSlices by its key, and every Service. Pure: no socket, no clock."""

    def __init__(self, service: Callable[[str], Obj | None], slices: Callable[[str], list[Obj]],
                 services: Callable[[], Iterable[Obj]], *, domain: str = CLUSTER_DOMAIN, ttl: int = TTL,
                 serial: int = 1) -> None:
        self.service, self.slices, self.services = service, slices, services
        self.domain = tuple(domain.lower().strip(".").split("."))
        self.ttl = ttl
        self.soa = RR(".".join(self.domain) + ".", QTYPE.SOA, ttl=ttl,
                      rdata=SOA(f"ns.dns.{'.'.join(self.domain)}.", f"hostmaster.{'.'.join(self.domain)}.",
                                (serial, 7200, 1800, 86400, ttl)))

    # The entry points.

    def answer(self, packet: bytes, *, limit: int | None = UDP_LIMIT) -> bytes | None:
        """The reply to one DNS message, or None to drop it. `limit`: the UDP size limit (None over TCP)."""
        if len(packet) < 12:
            return None                                   # not even a header: nobody to answer
        ident, flags = struct.unpack("!HH", packet[:4])
        if flags & 0x8000:
            return None                                   # a response: never answered (no loops)
        opcode = (flags >> 11) & 0xF
        try:
            query = DNSRecord.parse(packet)
        except Exception:                                 # dnslib raises DNSError, and at worst others
            return _bare(ident, flags, RCODE.FORMERR)
        if opcode != 0:
            return _bare(ident, flags, RCODE.NOTIMP)
        if len(query.questions) != 1 or not _well_formed(query.q.qname):
            return _bare(ident, flags, RCODE.FORMERR)
        reply = self.resolve(query)
        size = limit
        if limit is not None:
            opt = next((r for r in query.ar if r.rtype == QTYPE.OPT), None)
            if opt is not None:
                size = min(max(opt.rclass, UDP_LIMIT), EDNS_LIMIT)
                reply.add_ar(EDNS0(udp_len=EDNS_LIMIT))
        data = reply.pack()
        if size is not None and len(data) > size:
            reply.rr, reply.auth = [], []
            reply.ar = [r for r in reply.ar if r.rtype == QTYPE.OPT]
            reply.header.tc = 1
            data = reply.pack()
        return data

    def resolve(self, query: DNSRecord) -> DNSRecord:
        q = query.q
        reply = DNSRecord(DNSHeader(id=query.header.id, qr=1, rd=query.header.rd, ra=0), q=q)
        labels = _labels(q.qname)
        if q.qclass not in (1, 255) or labels is None:   # class IN (or ANY) and a name of ASCII labels
            reply.header.rcode = RCODE.REFUSED
            return reply
        if labels[-2:] == ("in-addr", "arpa"):
            return self._reverse(reply, labels, q.qtype)
        n = len(self.domain)
        if tuple(labels[-n:]) != self.domain or len(labels) < n:
            reply.header.rcode = RCODE.REFUSED            # not ours, and never forwarded
            return reply
        reply.header.aa = 1
        records = self.lookup(labels[:-n])
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.soa)
            return reply
        qname = q.qname
        wanted = [(t, data) for t, data in records if q.qtype in (t, QTYPE.ANY)]
        if not wanted and q.qtype == QTYPE.SOA and not labels[:-n]:
            reply.add_answer(self.soa)
            return reply
        if not wanted and q.qtype != QTYPE.CNAME:
            wanted = [(t, data) for t, data in records if t == QTYPE.CNAME]
        for t, data in wanted:
            reply.add_answer(RR(qname, t, ttl=self.ttl, rdata=_rdata(t, data)))
            if t == QTYPE.SRV:                            # the targets' addresses, to save a query
                target = tuple(data[1].rstrip(".").split("."))
                for t2, d2 in self.lookup(target[:-n]) or []:
                    if t2 == QTYPE.A:
                        reply.add_ar(RR(data[1], QTYPE.A, ttl=self.ttl, rdata=A(d2)))
        if not wanted:
            reply.add_auth(self.soa)                      # NODATA
        return reply

    # Names under the cluster domain.

    def lookup(self, rel: tuple[str, ...]) -> list[tuple[int, Any]] | None:
        """The records of a name relative to the cluster domain (labels, lower case): None when the
        name does not exist, [] when it exists without records (an empty non-terminal). A record is
        (type, value): A an address, SRV (port, target), CNAME a name, TXT a string — made into
        dnslib's records only for those answered."""
        if not rel or rel in (("svc",), ("pod",)):
            return []
        if rel == ("dns-version",):
            return [(QTYPE.TXT, SPEC_VERSION)]
        if rel[-1] == "pod":
            if len(rel) == 2:
                return [] if self._namespace_exists(rel[0]) else None
            if len(rel) == 3:
                ip = _undash(rel[0])
                return [(QTYPE.A, ip)] if ip else None
            return None
        if rel[-1] != "svc":
            return None
        if len(rel) == 2:
            return [] if self._namespace_exists(rel[0]) else None
        if len(rel) == 3:
            return self._service_records(rel[1], rel[0])
        if len(rel) == 4:
            return self._endpoint_records(rel[2], rel[1], rel[0])
        if len(rel) == 5 and rel[0].startswith("_") and rel[1].startswith("_"):
            return self._port_records(rel[3], rel[2], rel[0][1:], rel[1][1:])
        return None

    def _namespace_exists(self, ns: str) -> bool:
        return any((s.get("metadata") or {}).get("namespace") == ns for s in self.services())

    def _fqdn(self, *labels: str) -> str:
        return ".".join((*labels, *self.domain)) + "."

    def _service_records(self, ns: str, name: str) -> list[tuple[int, Any]] | None:
        svc = self.service(f"{ns}/{name}")
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            target = (spec.get("externalName") or "").strip(".")
            return [(QTYPE.CNAME, target + ".")] if target else []
        ip = spec.get("clusterIP")
        me = self._fqdn(name, ns, "svc")
        if ip and ip != "None":
            records: list[tuple[int, Any]] = [(QTYPE.A, ip)] if _ipv4(ip) else []
            records += [(QTYPE.SRV, (p["port"], me)) for p in spec.get("ports") or []
                        if isinstance(p.get("port"), int)]
            return records
        endpoints = self._ready(ns, name)
        if not endpoints:
            return None                                   # headless without a ready endpoint: CoreDNS's NXDOMAIN
        records = [(QTYPE.A, address) for address in sorted({e[0] for e in endpoints})]
        records += [(QTYPE.SRV, (port, self._fqdn(label, name, ns, "svc")))
                    for _, label, ports in endpoints for port in sorted(set(ports.values()))]
        return records

    def _endpoint_records(self, ns: str, name: str, label: str) -> list[tuple[int, Any]] | None:
        if self.service(f"{ns}/{name}") is None:
            return None
        found = sorted({address for address, host, _ in self._ready(ns, name) if host == label})
        return [(QTYPE.A, a) for a in found] or None

    def _port_records(self, ns: str, name: str, port: str, proto: str) -> list[tuple[int, Any]] | None:
        svc = self.service(f"{ns}/{name}")
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        match = [p for p in spec.get("ports") or [] if (p.get("name") or "").lower() == port
                 and (p.get("protocol") or "TCP").lower() == proto]
        if not match or spec.get("type") == "ExternalName":
            return None
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            records: list[tuple[int, Any]] = [(QTYPE.SRV, (p["port"], self._fqdn(name, ns, "svc")))
                                              for p in match if isinstance(p.get("port"), int)]
            return records + ([(QTYPE.A, ip)] if _ipv4(ip) else [])
        endpoints = self._ready(ns, name)
        records = [(QTYPE.SRV, (ports[p.get("name") or ""], self._fqdn(label, name, ns, "svc")))
                   for _, label, ports in endpoints for p in match if (p.get("name") or "") in ports]
        return (records + [(QTYPE.A, a) for a in sorted({e[0] for e in endpoints})]) or None

    def _ready(self, ns: str, name: str) -> list[tuple[str, str, dict[str, int]]]:
        """(address, its label under the Service, port name → number) of each ready IPv4 endpoint: the
        label is the endpoint's hostname, else its address with dashes."""
        out: dict[str, tuple[str, str, dict[str, int]]] = {}
        for s in self.slices(f"{ns}/{name}"):
            if s.get("addressType", "IPv4") != "IPv4":
                continue
            ports = {(p.get("name") or ""): int(p["port"]) for p in s.get("ports") or [] if p.get("port")}
            for e in s.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready") is not True or not _ipv4((e.get("addresses") or [""])[0]):
                    continue
                address = e["addresses"][0]
                label = (e.get("hostname") or address.replace(".", "-")).lower()
                held = out.setdefault(address, (address, label, {}))
                held[2].update(ports)
        return sorted(out.values())

    # Reverse names.

    def _reverse(self, reply: DNSRecord, labels: tuple[str, ...], qtype: int) -> DNSRecord:
        octets = labels[:-2]
        ip = ".".join(reversed(octets)) if len(octets) == 4 else ""
        names = self._names_of(ip) if _ipv4(ip) else []
        if not names:
            reply.header.rcode = RCODE.REFUSED            # not an address of the cluster's: not ours
            return reply
        reply.header.aa = 1
        if qtype in (QTYPE.PTR, QTYPE.ANY):
            for n in names:
                reply.add_answer(RR(reply.q.qname, QTYPE.PTR, ttl=self.ttl, rdata=PTR(n)))
        else:
            reply.add_auth(self.soa)
        return reply

    def _names_of(self, ip: str) -> list[str]:
        out = []
        for svc in self.services():
            m, spec = svc.get("metadata") or {}, svc.get("spec") or {}
            ns, name = m.get("namespace") or "", m.get("name") or ""
            if spec.get("clusterIP") == ip:
                out.append(self._fqdn(name, ns, "svc"))
            elif spec.get("clusterIP") == "None":
                out += [self._fqdn(label, name, ns, "svc") for address, label, _ in self._ready(ns, name)
                        if address == ip]
        return sorted(out)


def _labels(name: DNSLabel) -> tuple[str, ...] | None:
    try:
        return tuple(label.decode("ascii").lower() for label in name.label)
    except (UnicodeDecodeError, AttributeError):
        return None


def _rdata(qtype: int, value: Any) -> Any:
    if qtype == QTYPE.A:
        return A(value)
    if qtype == QTYPE.SRV:
        return SRV(0, 100, *value)
    if qtype == QTYPE.CNAME:
        return CNAME(value)
    return TXT(value)


def _well_formed(name: DNSLabel) -> bool:
    """Labels of 1 to 63 bytes, 255 bytes in all (RFC 1035 2.3.4): dnslib reads longer ones."""
    labels = getattr(name, "label", None) or ()
    return all(0 < len(label) <= 63 for label in labels) and sum(len(label) + 1 for label in labels) < 255


@functools.lru_cache(maxsize=4096)
def _ipv4(value: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
    except ValueError:
        return False


def _undash(label: str) -> str | None:
    ip = label.replace("-", ".")
    return ip if label.count("-") == 3 and _ipv4(ip) else None


def _bare(ident: int, flags: int, rcode: int) -> bytes:
    """A reply of a header alone: same id, opcode and RD as the query, QR set, the rcode given."""
    out = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | rcode
    return struct.pack("!HHHHHH", ident, out, 0, 0, 0, 0)


# --- the servers: UDP and TCP on one address --------------------------------------------------------


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.handle(data, UDP_LIMIT)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns: %s", exc)


class DnsServer:
    """The resolver on IP:53, UDP and TCP (length-prefixed messages, several per connection)."""

    def __init__(self, resolver: Resolver, ip: str, port: int = DNS_PORT) -> None:
        self.resolver, self.ip, self.port = resolver, ip, port
        self.stats: Counter[str] = Counter()        # answered, dropped, and one count per rcode name
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(self._accept, self.ip, self.port, reuse_address=True)
        try:
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.ip, self.port))
        except OSError:
            self._tcp.close()
            raise
        log.info("cluster DNS on %s:%d (UDP and TCP)", self.ip, self.port)

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for t in list(self._clients):
            t.cancel()

    def handle(self, data: bytes, limit: int | None) -> bytes | None:
        try:
            reply = self.resolver.answer(data, limit=limit)
        except Exception as exc:                    # a bug must not end the server: SERVFAIL when possible
            log.warning("dns: answering failed: %s", exc)
            reply = _bare(*struct.unpack("!HH", data[:4]), RCODE.SERVFAIL) if len(data) >= 12 else None
        if reply is None:
            self.stats["dropped"] += 1
        else:
            self.stats[RCODE.get(reply[3] & 0xF)] += 1
        return reply

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= TCP_CLIENTS:
            writer.close()
            return
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), TCP_IDLE)
                reply = self.handle(data, None)
                if reply is None:
                    break                           # nothing to say to a client that sends that
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


# --- a pod's resolver settings ---------------------------------------------------------------------


def pod_dns(pod: Obj, cluster_dns: list[str], *, domain: str = CLUSTER_DOMAIN,
            host_resolv: str = "/etc/resolv.conf") -> tuple[list[str], list[str], list[str]] | None:
    """(nameservers, searches, options) of a pod's resolv.conf as the kubelet computes them, or None
    for the host's own (Docker's default, nothing to set).

    dnsPolicy ClusterFirst (the default): the cluster's DNS, searching NS.svc.DOMAIN, svc.DOMAIN,
    DOMAIN then the host's search domains, ndots:5 — except on hostNetwork, where it means Default;
    ClusterFirstWithHostNet: the cluster's DNS on hostNetwork too; Default: the host's; None: only
    spec.dnsConfig. spec.dnsConfig's nameservers, searches and options are then appended (duplicates
    dropped, an option of dnsConfig replacing the same-named one), as the kubelet's appendDNSConfig.
    Without `cluster_dns` (the agent serves no DNS) the cluster policies fall back to the host's, as
    the kubelet's does without --cluster-dns."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    config = spec.get("dnsConfig") or {}
    if policy == "None":
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
    elif cluster_dns and (policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network)):
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        _, host_searches, _ = _read_resolv(host_resolv)
        servers = list(cluster_dns)
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain, *host_searches]
        options = [f"ndots:{NDOTS}"]
    else:
        if not config:
            return None
        servers, searches, options = _read_resolv(host_resolv)
    servers = _unique(servers + list(config.get("nameservers") or []))[:MAX_NAMESERVERS]
    searches = _unique(searches + [s.strip(".") for s in config.get("searches") or []])
    kept, chars = [], 0
    for s in searches[:MAX_SEARCHES]:
        chars += len(s) + 1
        if chars > MAX_SEARCH_CHARS:
            break
        kept.append(s)
    merged: dict[str, str | None] = {}
    for o in options:
        name, sep, value = o.partition(":")
        merged[name] = value if sep else None
    for o in config.get("options") or []:
        if o.get("name"):
            merged[o["name"]] = o.get("value") if o.get("value") not in (None, "") else None
    return servers, kept, [n if v is None else f"{n}:{v}" for n, v in merged.items()]


def dns_host_config(pod: Obj, cluster_dns: list[str], **kw: Any) -> dict[str, Any]:
    """The Docker HostConfig keys (Dns, DnsSearch, DnsOptions) of a pod's infra container: {} for the
    engine's default (the host's resolv.conf, less loopback nameservers)."""
    settings = pod_dns(pod, cluster_dns, **kw)
    if settings is None:
        return {}
    servers, searches, options = settings
    return {"Dns": servers, "DnsSearch": searches, "DnsOptions": options}


def _read_resolv(path: str) -> tuple[list[str], list[str], list[str]]:
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return servers, searches, options
    for line in lines:
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = [w.strip(".") for w in words[1:]]       # the last one wins, as in glibc
        elif words[0] == "options":
            options += words[1:]
    return servers, searches, options


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


__all__ = ["CLUSTER_DOMAIN", "DNS_SERVICE", "DNS_SERVICE_IP", "DnsServer", "Resolver", "dns_host_config",
           "pod_dns"]
