"""The cluster DNS resolver (nodeagent/dns.py) without any server: queries packed with dnslib, answers
read back, table by table; and a pod's resolver settings as the kubelet computes them."""
from __future__ import annotations

import struct

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from nodeagent.dns import Resolver, dns_host_config, pod_dns


def svc(ns, name, ip="10.96.3.4", ports=(("http", 80, "TCP"),), **spec):
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports], **spec}}


def eps(*endpoints, ports=(("http", 8080),)):
    """EndpointSlice of (address, ready, hostname) endpoints."""
    return {"addressType": "IPv4", "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
            "endpoints": [{"addresses": [a], "conditions": {"ready": r}, **({"hostname": h} if h else {})}
                          for a, r, h in endpoints]}


SERVICES = {s["metadata"]["namespace"] + "/" + s["metadata"]["name"]: s for s in [
    svc("default", "web", "10.96.3.4", (("http", 80, "TCP"), ("dns", 53, "UDP"), ("", 81, "TCP"))),
    svc("default", "db", "None", (("pg", 5432, "TCP"),)),
    svc("default", "empty", "None"),
    svc("shop", "cart", "10.100.0.7"),
    svc("default", "out", None, type="ExternalName", externalName="example.com"),
    svc("kube-system", "kube-dns", "10.96.0.10", (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))),
]}
SLICES = {
    "default/db": [eps(("172.17.0.5", True, "db-0"), ("172.17.0.6", True, "db-1"), ("172.17.0.7", False, "db-2"),
                       ports=(("pg", 5432),)),
                   eps(("172.17.0.8", True, None), ports=(("pg", 5432),))],
    "default/empty": [eps(("172.17.0.9", False, None))],
}


@pytest.fixture
def resolver():
    return Resolver(SERVICES.get, lambda key: SLICES.get(key, []), lambda: SERVICES.values())


def ask(resolver, name, qtype="A", **kw):
    query = DNSRecord.question(name, qtype)
    reply = DNSRecord.parse(resolver.answer(query.pack(), **kw))
    assert reply.header.id == query.header.id and reply.header.qr == 1
    return reply


def answers(reply, qtype=None):
    return sorted(str(r.rdata) for r in reply.rr if qtype is None or r.rtype == getattr(QTYPE, qtype))


@pytest.mark.parametrize("name, qtype, rcode, expected", [
    ("web.default.svc.cluster.local", "A", "NOERROR", ["10.96.3.4"]),
    ("WEB.Default.SVC.cluster.LOCAL.", "A", "NOERROR", ["10.96.3.4"]),             # case-insensitive
    ("cart.shop.svc.cluster.local", "A", "NOERROR", ["10.100.0.7"]),
    ("kube-dns.kube-system.svc.cluster.local", "A", "NOERROR", ["10.96.0.10"]),
    ("db.default.svc.cluster.local", "A", "NOERROR", ["172.17.0.5", "172.17.0.6", "172.17.0.8"]),  # headless: ready only
    ("db-0.db.default.svc.cluster.local", "A", "NOERROR", ["172.17.0.5"]),         # a StatefulSet pod's hostname
    ("172-17-0-8.db.default.svc.cluster.local", "A", "NOERROR", ["172.17.0.8"]),   # no hostname: the dashed address
    ("db-2.db.default.svc.cluster.local", "A", "NXDOMAIN", []),                    # not ready
    ("empty.default.svc.cluster.local", "A", "NXDOMAIN", []),                      # headless, nothing ready
    ("_http._tcp.web.default.svc.cluster.local", "SRV", "NOERROR", ["0 100 80 web.default.svc.cluster.local."]),
    ("_dns._udp.web.default.svc.cluster.local", "SRV", "NOERROR", ["0 100 53 web.default.svc.cluster.local."]),
    ("_dns._tcp.web.default.svc.cluster.local", "SRV", "NXDOMAIN", []),            # the protocol must match
    ("_pg._tcp.db.default.svc.cluster.local", "SRV", "NOERROR",
     ["0 100 5432 172-17-0-8.db.default.svc.cluster.local.", "0 100 5432 db-0.db.default.svc.cluster.local.",
      "0 100 5432 db-1.db.default.svc.cluster.local."]),
    ("web.default.svc.cluster.local", "AAAA", "NOERROR", []),                      # NODATA: no IPv6
    ("web.default.svc.cluster.local", "MX", "NOERROR", []),
    ("out.default.svc.cluster.local", "A", "NOERROR", ["example.com."]),           # ExternalName: a CNAME, not followed
    ("nothere.default.svc.cluster.local", "A", "NXDOMAIN", []),
    ("web.nons.svc.cluster.local", "A", "NXDOMAIN", []),
    ("default.svc.cluster.local", "A", "NOERROR", []),                             # a namespace: exists, no records
    ("nons.svc.cluster.local", "A", "NXDOMAIN", []),
    ("a.b.c.web.default.svc.cluster.local", "A", "NXDOMAIN", []),
    ("web.default.cluster.local", "A", "NXDOMAIN", []),
    ("172-17-0-3.default.pod.cluster.local", "A", "NOERROR", ["172.17.0.3"]),
    ("172-17-0.default.pod.cluster.local", "A", "NXDOMAIN", []),
    ("dns-version.cluster.local", "TXT", "NOERROR", ['"1.1.0"']),
    ("4.3.96.10.in-addr.arpa", "PTR", "NOERROR", ["web.default.svc.cluster.local."]),
    ("5.0.17.172.in-addr.arpa", "PTR", "NOERROR", ["db-0.db.default.svc.cluster.local."]),
    ("7.0.17.172.in-addr.arpa", "PTR", "REFUSED", []),                            # not ready: not the cluster's
    ("8.8.8.8.in-addr.arpa", "PTR", "REFUSED", []),
    ("example.com", "A", "REFUSED", []),                                           # never forwarded
    ("web.default.svc.cluster.local.example.com", "A", "REFUSED", []),
    ("local", "A", "REFUSED", []),
])
def test_answers(resolver, name, qtype, rcode, expected):
    reply = ask(resolver, name, qtype)
    assert RCODE.get(reply.header.rcode) == rcode
    assert answers(reply, "CNAME" if expected and expected[0] == "example.com." else qtype) == expected
    assert str(reply.q.qname).rstrip(".").lower() == name.rstrip(".").lower()
    in_zone = rcode != "REFUSED"
    assert bool(reply.header.aa) == in_zone
    # NXDOMAIN and NODATA carry the zone's SOA in the authority section; a refusal carries nothing.
    soa = [r for r in reply.auth if r.rtype == QTYPE.SOA]
    assert bool(soa) == (in_zone and not expected), reply
    if soa:
        assert str(soa[0].rname) == "cluster.local." and soa[0].ttl == 5


def test_records_carry_the_ttl_and_the_name_as_asked(resolver):
    reply = ask(resolver, "Web.Default.svc.cluster.local")
    assert [(str(r.rname), r.ttl) for r in reply.rr] == [("Web.Default.svc.cluster.local.", 5)]


def test_srv_targets_come_with_their_addresses(resolver):
    reply = ask(resolver, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted((str(r.rname), str(r.rdata)) for r in reply.ar) == [
        ("172-17-0-8.db.default.svc.cluster.local.", "172.17.0.8"),
        ("db-0.db.default.svc.cluster.local.", "172.17.0.5"),
        ("db-1.db.default.svc.cluster.local.", "172.17.0.6")]


def test_a_query_follows_the_caches():
    services = {"default/web": svc("default", "web", "None")}
    slices: dict[str, list] = {"default/web": [eps(("172.17.0.2", False, None))]}
    r = Resolver(services.get, lambda k: slices.get(k, []), lambda: services.values())
    assert RCODE.get(ask(r, "web.default.svc.cluster.local").header.rcode) == "NXDOMAIN"
    slices["default/web"] = [eps(("172.17.0.2", True, None))]
    assert answers(ask(r, "web.default.svc.cluster.local")) == ["172.17.0.2"]
    del services["default/web"]
    assert RCODE.get(ask(r, "web.default.svc.cluster.local").header.rcode) == "NXDOMAIN"


def header(ident=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


@pytest.mark.parametrize("packet, rcode", [
    (b"", None),                                                   # nothing: dropped
    (b"\x12\x34\x01", None),                                       # shorter than a header: dropped
    (header(flags=0x8180) + DNSRecord.question("web.default.svc.cluster.local").pack()[12:], None),  # a response
    (header(), "FORMERR"),                                         # one question announced, none there
    (header() + b"\x03web\x07def", "FORMERR"),                     # a name cut short
    (header() + b"\xc0\x0c\x00\x01\x00\x01", "FORMERR"),           # a compression pointer to itself
    (header() + b"\x40" + b"x" * 64 + b"\x00\x00\x01\x00\x01", "FORMERR"),   # label type 0x40
    (header(qd=0), "FORMERR"),                                     # no question
    (header(qd=2) + DNSRecord.question("a.cluster.local").pack()[12:] * 2, "FORMERR"),
    (header(flags=0x2900) + DNSRecord.question("web.default.svc.cluster.local").pack()[12:], "NOTIMP"),  # UPDATE
    (header() + b"\x03web\x00\x00\x01\x00\x03", "REFUSED"),        # class CH
    (header() + b"\x02\xff\xfe\x07cluster\x05local\x00\x00\x01\x00\x01", "FORMERR"),    # bytes that are no host name
])
def test_malformed_packets(resolver, packet, rcode):
    reply = resolver.answer(packet)
    if rcode is None:
        assert reply is None
        return
    assert reply[:2] == b"\x12\x34"
    flags = struct.unpack("!H", reply[2:4])[0]
    assert flags & 0x8000 and RCODE.get(flags & 0xF) == rcode


def test_large_answers_are_truncated_over_udp_only():
    services = {"default/big": svc("default", "big", "None")}
    many = [eps(*((f"172.18.{i // 250}.{i % 250 + 1}", True, None) for i in range(60)))]
    r = Resolver(services.get, lambda k: many if k == "default/big" else [], lambda: services.values())
    udp = DNSRecord.parse(r.answer(DNSRecord.question("big.default.svc.cluster.local").pack()))
    assert udp.header.tc == 1 and not udp.rr
    tcp = DNSRecord.parse(r.answer(DNSRecord.question("big.default.svc.cluster.local").pack(), limit=None))
    assert tcp.header.tc == 0 and len(tcp.rr) == 60
    q = DNSRecord.question("big.default.svc.cluster.local")
    q.add_ar(EDNS0(udp_len=4096))                                   # EDNS0: up to 1232 bytes
    edns = DNSRecord.parse(r.answer(q.pack()))
    assert edns.header.tc == 0 and len(edns.rr) == 60 and len(r.answer(q.pack())) <= 1232


# --- a pod's resolv.conf --------------------------------------------------------------------------------

HOST = "nameserver 10.255.255.53\nnameserver 10.255.255.54\nsearch corp.example\noptions timeout:2\n"


@pytest.fixture
def host_resolv(tmp_path):
    p = tmp_path / "resolv.conf"
    p.write_text(HOST)
    return str(p)


def pod(ns="shop", **spec):
    return {"metadata": {"namespace": ns, "name": "p"}, "spec": spec}


CLUSTER = (["10.96.0.10"], ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"],
           ["ndots:5"])


@pytest.mark.parametrize("spec, cluster_dns, expected", [
    ({}, ["10.96.0.10"], CLUSTER),
    ({"dnsPolicy": "ClusterFirst"}, ["10.96.0.10"], CLUSTER),
    ({"dnsPolicy": "ClusterFirst", "hostNetwork": True}, ["10.96.0.10"], None),            # the host's
    ({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True}, ["10.96.0.10"], CLUSTER),
    ({"dnsPolicy": "ClusterFirstWithHostNet"}, ["10.96.0.10"], CLUSTER),
    ({"dnsPolicy": "Default"}, ["10.96.0.10"], None),
    ({}, [], None),                                                                       # no cluster DNS served
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.1"], "searches": ["a.example"],
                                          "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}},
     ["10.96.0.10"], (["192.0.2.1"], ["a.example"], ["ndots:2", "edns0"])),
    ({"dnsConfig": {"nameservers": ["192.0.2.1", "10.96.0.10"], "searches": ["a.example", "svc.cluster.local"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}},
     ["10.96.0.10"], (["10.96.0.10", "192.0.2.1"], [*CLUSTER[1], "a.example"], ["ndots:2", "single-request"])),
    ({"dnsPolicy": "Default", "dnsConfig": {"nameservers": ["192.0.2.1", "192.0.2.2"],
                                             "options": [{"name": "timeout", "value": "5"}]}},
     ["10.96.0.10"], (["10.255.255.53", "10.255.255.54", "192.0.2.1"], ["corp.example"], ["timeout:5"])),
])
def test_pod_dns(host_resolv, spec, cluster_dns, expected):
    assert pod_dns(pod(**spec), cluster_dns, host_resolv=host_resolv) == expected


def test_docker_host_config(host_resolv):
    assert dns_host_config(pod(), ["10.96.0.10"], host_resolv=host_resolv) == {
        "Dns": CLUSTER[0], "DnsSearch": CLUSTER[1], "DnsOptions": CLUSTER[2]}
    assert dns_host_config(pod(dnsPolicy="Default"), ["10.96.0.10"], host_resolv=host_resolv) == {}
