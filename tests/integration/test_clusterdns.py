"""Cluster DNS, UDP Services and nodePorts, answered by the node agent (nodeagent/dns.py, serviceproxy.py) against a
real API server, NATS, Docker engine and kubectl.

One agent with `proxy_services=True`: the API server's bootstrap made `kube-system/kube-dns` at
10.96.0.10, the agent serves DNS there (on lo, once `ip route get` says local), and its pods' resolv.conf
points at it (dnsPolicy None: its dnsConfig; ClusterFirstWithHostNet on hostNetwork: the cluster's).
From a pod (busybox `nslookup`, through `docker exec` and once through `kubectl exec`):
a Service's name and its short name through the search path, a headless Service's ready pods, a
StatefulSet-style hostname, NXDOMAIN for an unknown name, REFUSED for a name outside the cluster. From
the host: SRV, PTR, TCP, malformed packets. A UDP Service reaches a UDP echo in two pods (python from
the host, mounted read-only: busybox's nc has no UDP here), from the host and from a pod, and a pod that
turns not ready stops getting datagrams, an established flow included. The echo Service is a NodePort:
its allocated node port answers on 127.0.0.1 and on the node's address.

The addresses the proxy left on lo (labelled, and not there before) are removed in a finally."""
from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct
import subprocess
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from eventplane.client import Client
from nodeagent import run_nodeagent
from nodeagent.dns import DNS_SERVICE_IP
from nodeagent.runtime.docker import DockerRuntime
from tests.integration.test_serviceproxy import controllers, docker, is_local, lo_addresses, node, proxy_addresses  # noqa: F401
from tests.support.controllers import eventually as poll
from tests.support.docker import TEST_IMAGE, data_dir

pytestmark = pytest.mark.slow

eventually = functools.partial(poll, timeout=30.0, interval=0.2)

# The host's python, mounted read-only into the pods that need a UDP socket: its binary and its libraries,
# not the whole of /usr (whose bin/sh would shadow busybox's).
PYTHON_MOUNTS = [("python", "/usr/bin/python3", "File"), ("usrlib", "/usr/lib", "Directory"),
                 ("lib", "/lib", "Directory"), ("lib64", "/lib64", "Directory")]
ECHO = """
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7000))
name = os.environ["POD"].encode()
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(name + b" " + data, peer)
"""
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"from-pod", (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(2048)[0].decode())
"""


def pod(name: str, node: str, script: str, *, labels: dict[str, str], ready_file: bool | None = None,
        python: bool = False, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app", "image": TEST_IMAGE, "command": ["sh", "-c", script],
        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "ECHO", "value": ECHO}]}
    if ready_file is not None:
        container["readinessProbe"] = {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}
    body: dict[str, Any] = {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [container], **spec}
    if python:
        body["volumes"] = [{"name": n, "hostPath": {"path": os.path.realpath(p), "type": t}} for n, p, t in PYTHON_MOUNTS]
        container["volumeMounts"] = [{"name": n, "mountPath": p, "readOnly": True} for n, p, _ in PYTHON_MOUNTS]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": body}


def service(name: str, selector: dict[str, str], ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, "ports": ports, **spec}}


def _exchange(payload: bytes, ip: str, port: int, *, tcp: bool = False, timeout: float = 2.0) -> bytes | None:
    assert is_local(ip), f"{ip} is not local: nothing is sent to it"
    if tcp:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(payload)) + payload)
            size = struct.unpack("!H", _read(s, 2))[0]
            return _read(s, size)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (ip, port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def _read(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


async def query(name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    reply = await asyncio.to_thread(_exchange, q.pack(), DNS_SERVICE_IP, 53, tcp=tcp)
    assert reply is not None, f"no answer to {name} {qtype}"
    r = DNSRecord.parse(reply)
    assert r.header.id == q.header.id
    return r


def answered(nslookup: str) -> set[str]:
    """The addresses busybox nslookup printed under a "Name:" line."""
    out, named = set(), False
    for line in nslookup.splitlines():
        if line.startswith("Name:"):
            named = True
        elif line.startswith("Address:") and named:
            out.add(line.split(":", 1)[1].strip())
        elif not line.strip():
            named = False
    return out


def addresses(r: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in r.rr if rr.rtype == QTYPE.A)


async def test_cluster_dns_and_udp_services(api, servers, docker, node, tmp_path):  # noqa: F811
    before = lo_addresses()
    left: list[str] = []
    async with Client.from_kubeconfig(str(api.kubeconfig)) as client, \
            controllers(client, "endpoints", "endpointslice"):
        agent = asyncio.create_task(run_nodeagent(client, servers.nats_url, node_name=node,
                                                  runtime=DockerRuntime(node), data_dir=data_dir(tmp_path),
                                                  proxy_services=True))
        try:
            kube_dns = await client.get("services", "kube-dns", namespace="kube-system")
            assert kube_dns["spec"]["clusterIP"] == DNS_SERVICE_IP
            web = await client.create(service("web", {"app": "web"}, [{"name": "http", "port": 80}]),
                                      namespace="default")
            await client.create(service("db", {"app": "db"}, [{"name": "pg", "port": 5432}], clusterIP="None"),
                                namespace="default")
            echo = await client.create(service("echo", {"app": "echo"}, [{"name": "echo", "port": 5353,
                                                                          "protocol": "UDP", "targetPort": 7000}],
                                               type="NodePort"),
                                       namespace="default")
            node_port = echo["spec"]["ports"][0]["nodePort"]
            assert 30000 <= node_port <= 32767
            web_ip, echo_ip = web["spec"]["clusterIP"], echo["spec"]["clusterIP"]
            for p in (pod("client", node, "exec sleep 3600", labels={"app": "client"}, python=True),
                      pod("db-0", node, "exec sleep 3600", labels={"app": "db"}, hostname="db-0", subdomain="db"),
                      pod("db-1", node, "exec sleep 3600", labels={"app": "db"}, ready_file=False,
                          hostname="db-1", subdomain="db"),
                      *(pod(f"echo-{x}", node, 'touch /tmp/ready && exec /usr/bin/python3 -c "$ECHO"',
                            labels={"app": "echo"}, ready_file=True, python=True) for x in "ab"),
                      pod("custom", node, "exec sleep 3600", labels={"app": "custom"}, dnsPolicy="None",
                          dnsConfig={"nameservers": [DNS_SERVICE_IP], "searches": ["example.internal"],
                                     "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}),
                      pod("hostnet", node, "exec sleep 3600", labels={"app": "hostnet"}, hostNetwork=True,
                          dnsPolicy="ClusterFirstWithHostNet")):
                await client.create(p, namespace="default")

            async def pods_up():
                items = (await client.list("pods", namespace="default"))["items"]
                state = {p["metadata"]["name"]: p for p in items
                         if (p.get("status") or {}).get("podIP") and p["status"].get("containerStatuses")}
                return state if len(state) == 7 else None
            pods = await eventually(pods_up, what="seven pods running")
            ip_of = {n: p["status"]["podIP"] for n, p in pods.items()}
            cid = {n: p["status"]["containerStatuses"][0]["containerID"].removeprefix("docker://")
                   for n, p in pods.items()}

            async def sh(name: str, *cmd: str) -> tuple[int, str]:
                """busybox applets run through sh (the image has no links for them)."""
                argv = list(cmd) if cmd[0].startswith("/") else ["sh", "-c", " ".join(cmd)]
                code, out, err = await docker.exec(cid[name], argv, timeout=15)
                return code, (out + err).decode()

            # The pod's resolv.conf: the cluster's DNS alone (nothing else to send to), its search path.
            await eventually(lambda: asyncio.sleep(0, is_local(DNS_SERVICE_IP)), what=f"{DNS_SERVICE_IP} local")
            code, resolv = await sh("client", "cat", "/etc/resolv.conf")
            lines = [ln for ln in resolv.splitlines() if ln and not ln.startswith("#")]
            assert [ln for ln in lines if ln.startswith("nameserver")] == [f"nameserver {DNS_SERVICE_IP}"], resolv
            assert "search default.svc.cluster.local svc.cluster.local cluster.local" in lines, resolv
            assert "options ndots:5" in lines, resolv
            # dnsPolicy None: spec.dnsConfig alone; ClusterFirstWithHostNet: the cluster's on the host's network.
            _, custom = await sh("custom", "cat", "/etc/resolv.conf")
            assert {f"nameserver {DNS_SERVICE_IP}", "search example.internal", "options ndots:2 edns0"} <= \
                set(custom.splitlines()), custom
            _, hostnet = await sh("hostnet", "cat", "/etc/resolv.conf")
            assert f"nameserver {DNS_SERVICE_IP}" in hostnet.splitlines() and \
                "search default.svc.cluster.local svc.cluster.local cluster.local" in hostnet, hostnet

            # A Service's name, full and short (the search path), from the pod.
            async def resolves(name: str, *want: str, pod_name: str = "client"):
                """busybox nslookup tries the whole search path and fails when one name does not exist,
                so success is the answers it prints (not the server's own address)."""
                _, out = await sh(pod_name, "nslookup", name)
                seen[:] = [out]
                return set(want) <= answered(out)
            seen = [""]
            await eventually(lambda: resolves("web.default.svc.cluster.local", web_ip), what=lambda: seen[0])
            await eventually(lambda: resolves("web", web_ip), what=lambda: seen[0])
            await eventually(lambda: resolves("kube-dns.kube-system.svc.cluster.local", DNS_SERVICE_IP),
                             what=lambda: seen[0])

            # Headless: the ready pod, not the other; a hostname under the Service.
            await eventually(lambda: resolves("db", ip_of["db-0"]), what=lambda: seen[0])
            assert ip_of["db-1"] not in seen[0], seen[0]
            await eventually(lambda: resolves("db-0.db.default.svc.cluster.local", ip_of["db-0"]),
                             what=lambda: seen[0])
            code, out = await sh("client", "nslookup", "db-1.db.default.svc.cluster.local")
            assert code != 0 and "NXDOMAIN" in out, out
            await sh("db-1", "touch", "/tmp/ready")          # db-1 turns ready: it is answered too
            await eventually(lambda: resolves("db.default.svc.cluster.local", ip_of["db-0"], ip_of["db-1"]),
                             what=lambda: seen[0])

            # Unknown in the cluster: NXDOMAIN. Outside: REFUSED, never forwarded.
            code, out = await sh("client", "nslookup", "nothere.default.svc.cluster.local")
            assert code != 0 and "NXDOMAIN" in out, out
            code, out = await sh("client", "nslookup", "example.com.")
            assert code != 0 and "REFUSED" in out, out

            # Through kubectl exec too (busybox's nslookup searches only for names without a dot).
            r = await api.kubectl("exec", "client", "--", "sh", "-c", "nslookup kubernetes")
            assert "10.96.0.1" in answered(r.out), r

            # From the host: records, TCP, malformed packets.
            srv = await query("_pg._tcp.db.default.svc.cluster.local", "SRV")
            assert sorted(str(rr.rdata) for rr in srv.rr) == [
                "0 100 5432 db-0.db.default.svc.cluster.local.", "0 100 5432 db-1.db.default.svc.cluster.local."]
            ptr = await query(".".join(reversed(web_ip.split("."))) + ".in-addr.arpa", "PTR")
            assert [str(rr.rdata) for rr in ptr.rr] == ["web.default.svc.cluster.local."]
            assert addresses(await query("WEB.default.svc.cluster.local", tcp=True)) == [web_ip]
            aaaa = await query("web.default.svc.cluster.local", "AAAA")
            assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr and aaaa.auth[0].rtype == QTYPE.SOA
            refused = await query("example.com", tcp=True)
            assert refused.header.rcode == RCODE.REFUSED and not refused.rr
            garbage = await asyncio.to_thread(_exchange, b"\x00\x01", DNS_SERVICE_IP, 53, timeout=0.5)
            assert garbage is None                                             # not even a header: dropped
            formerr = await asyncio.to_thread(_exchange, b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03we",
                                              DNS_SERVICE_IP, 53)
            assert formerr is not None and formerr[:2] == b"\xab\xcd" and formerr[3] & 0xF == RCODE.FORMERR
            with socket.create_connection((DNS_SERVICE_IP, 53), timeout=2) as s:   # a TCP client that stops short
                s.sendall(b"\x00\x40\x12")
            assert addresses(await query("web.default.svc.cluster.local")) == [web_ip]   # still answering

            # UDP: the echo Service reaches both ready pods, from the host and from a pod.
            assert is_local(echo_ip)

            def udp(sock: socket.socket, payload: bytes, to: tuple[str, int] = (echo_ip, 5353)) -> str | None:
                sock.sendto(payload, to)
                try:
                    return sock.recv(2048).decode()
                except TimeoutError:
                    return None
            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
            try:
                for s in socks:
                    s.settimeout(1)
                replies: list[str | None] = []

                async def both_answer():
                    replies[:] = [await asyncio.to_thread(udp, s, b"hi") for s in socks]
                    return {r.split()[0] for r in replies if r} == {"echo-a", "echo-b"}
                await eventually(both_answer, what=lambda: f"echo-a and echo-b answering (last: {replies})")
                assert all(r is not None and r.endswith(" hi") for r in replies), replies
                # Each client keeps its flow: the same pod answers it again.
                again = [await asyncio.to_thread(udp, s, b"again") for s in socks]
                assert [a.split()[0] for a in again] == [r.split()[0] for r in replies], (replies, again)

                code, out = await sh("client", "/usr/bin/python3", "-c", SEND, echo_ip, "5353")
                assert code == 0 and out.split()[0] in {"echo-a", "echo-b"} and out.split()[1] == "from-pod", out

                # The nodePort, on loopback and on the node's address (both local: nothing leaves the host).
                node_obj = await client.get("nodes", node)
                node_ip = next(a["address"] for a in node_obj["status"]["addresses"] if a["type"] == "InternalIP")
                for address in dict.fromkeys(["127.0.0.1", node_ip]):
                    assert is_local(address), address
                    answer = await eventually(lambda a=address: asyncio.to_thread(udp, socks[0], b"np", (a, node_port)),
                                              what=f"an answer on {address}:{node_port}")
                    assert answer.split()[0] in {"echo-a", "echo-b"} and answer.endswith(" np"), answer

                # echo-a turns not ready: every client gets echo-b, those whose flow went to echo-a too.
                await sh("echo-a", "rm", "/tmp/ready")

                async def only_b():
                    replies[:] = [await asyncio.to_thread(udp, s, b"later") for s in socks]
                    return all(r is not None and r.startswith("echo-b ") for r in replies)
                await eventually(only_b, what=lambda: f"echo-b alone answering (last: {replies})")
            finally:
                for s in socks:
                    s.close()
        finally:
            agent.cancel()
            await asyncio.gather(agent, return_exceptions=True)
            left = sorted(proxy_addresses() - before)
            for a in left:
                subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], check=False)
    assert not left, f"the proxy left {left} on lo"
