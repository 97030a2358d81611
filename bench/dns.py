"""bench/dns.py: the node agent's cluster DNS server (nodeagent/dns.py) answering over UDP, beside a
bare UDP echo server measured in the same run.

No servers, no API: the resolver reads `--services` Services (a fifth of them headless with five
ready endpoints each) from plain dicts, as it reads the informers' caches in the agent. Both servers
listen on 127.0.0.1 (a free port) in this process's event loop; closed-loop clients in the same loop
each send a query and wait for its answer, for `--seconds`: `--clients` of them for throughput, then
one alone for the latency of an unloaded server.

1. Baseline: an asyncio UDP echo server — the floor of one datagram's round trip through the loop.
2. The DNS server, the same clients asking in turn: A of a ClusterIP Service (60 %), A of a headless
   Service (20 %), an unknown name (NXDOMAIN, 10 %), SRV of a named port (10 %), names in mixed case.
3. Targets: >= 2000 answers/s (a node of 110 pods each resolving a few names a second, with 5 s
   TTLs), and p99 <= 2 ms for a lone client; the ratio to the echo shows what parsing, lookup and
   packing cost. Clients and server share one core's loop, so the figures are pessimistic.

    .venv/bin/python bench/dns.py [--seconds 5] [--clients 8] [--services 1000] [--json]
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c  # noqa: E402
from dnslib import DNSRecord  # noqa: E402

from nodeagent.dns import DnsServer, Resolver  # noqa: E402

PERF = time.perf_counter
TARGET_QPS = 2000
TARGET_P99_MS = 2.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cluster(n: int) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    services: dict[str, Any] = {}
    slices: dict[str, list[Any]] = {}
    for i in range(n):
        ns, name = f"ns-{i % 20}", f"svc-{i}"
        headless = i % 5 == 0
        services[f"{ns}/{name}"] = {"metadata": {"namespace": ns, "name": name}, "spec": {
            "clusterIP": "None" if headless else f"10.96.{i // 250}.{i % 250 + 2}",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
        if headless:
            slices[f"{ns}/{name}"] = [{"addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                                       "endpoints": [{"addresses": [f"172.18.{i % 250}.{k + 1}"],
                                                      "conditions": {"ready": True}} for k in range(5)]}]
    return services, slices


def queries(n: int) -> list[bytes]:
    out = []
    for i in range(100):
        j = (i * 37) % n
        ns, name = f"ns-{j % 20}", f"svc-{j}"
        if i % 10 == 0:
            q = DNSRecord.question(f"missing-{i}.{ns}.svc.cluster.local")
        elif i % 10 == 1:
            q = DNSRecord.question(f"_http._tcp.{name}.{ns}.svc.cluster.local", "SRV")
        elif i % 10 in (2, 3):
            k = (j // 5) * 5
            q = DNSRecord.question(f"svc-{k}.ns-{k % 20}.svc.cluster.local")
        else:
            q = DNSRecord.question(f"{name.upper()}.{ns}.svc.Cluster.Local")
        out.append(q.pack())
    return out


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def drive(port: int, packets: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0

    async def one(k: int) -> None:
        nonlocal errors
        transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=("127.0.0.1", port))
        try:
            i, end = k, PERF() + seconds
            while PERF() < end:
                proto.waiter = loop.create_future()
                t0 = PERF()
                transport.sendto(packets[i % len(packets)])
                try:
                    await asyncio.wait_for(proto.waiter, 1.0)
                    latencies.append(PERF() - t0)
                except asyncio.TimeoutError:
                    errors += 1
                i += clients
        finally:
            transport.close()

    started = PERF()
    await asyncio.gather(*(one(k) for k in range(clients)))
    elapsed = PERF() - started
    return {"answers": len(latencies), "per_second": len(latencies) / elapsed, "lost": errors,
            **c.summarize_ms(latencies)}


async def run(args: Any, loop_name: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    services, slices = cluster(args.services)
    packets = queries(args.services)
    resolver = Resolver(services.get, lambda key: slices.get(key, []), lambda: services.values())

    port = c.free_port()
    echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", port))
    try:
        await drive(port, packets, args.clients, 0.5)                       # warm-up, unmeasured
        log(f"echo: {args.seconds} s, {args.clients} clients")
        baseline = await drive(port, packets, args.clients, args.seconds)
        baseline_one = await drive(port, packets, 1, args.seconds)
    finally:
        echo.close()

    port = c.free_port()
    server = DnsServer(resolver, "127.0.0.1", port)
    await server.start()
    try:
        await drive(port, packets, args.clients, 0.5)
        log(f"dns: {args.seconds} s, {args.clients} clients, {args.services} services")
        dns = await drive(port, packets, args.clients, args.seconds)
        log(f"dns: {args.seconds} s, one client")
        dns_one = await drive(port, packets, 1, args.seconds)
    finally:
        server.close()
    return {"loop": loop_name, "cores": os.cpu_count(), "python": sys.version.split()[0],
            "services": args.services, "clients": args.clients, "echo": baseline, "dns": dns,
            "echo_one": baseline_one, "dns_one": dns_one,
            "rcodes": dict(server.stats)}


def render(out: dict[str, Any]) -> str:
    rows = [("UDP echo (baseline)", out["echo"], out["clients"]), ("cluster DNS", out["dns"], out["clients"]),
            ("UDP echo (baseline)", out["echo_one"], 1), ("cluster DNS", out["dns_one"], 1)]
    lines = [f"cluster DNS over UDP — {out['cores']} cores, Python {out['python']}, {out['loop']}, "
             f"{out['services']} Services",
             "",
             f"  {'':<22}{'clients':>8}{'answers/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'lost':>7}"]
    for name, r, n in rows:
        lines.append(f"  {name:<22}{n:>8}{r['per_second']:>12.0f}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
                     f"{r['max_ms']:>10.2f}{r['lost']:>7}")
    d, one = out["dns"], out["dns_one"]
    lines += ["",
              f"  DNS / echo throughput ({out['clients']} clients): {d['per_second'] / out['echo']['per_second']:.2f}"
              f"    answers by rcode: {out['rcodes']}",
              "",
              "targets (a MISS never changes the exit status)"]
    for text, ok in ((f"answers/s >= {TARGET_QPS}: {d['per_second']:.0f}", d["per_second"] >= TARGET_QPS),
                     (f"p99 of a lone client <= {TARGET_P99_MS:g} ms: {one['p99_ms']:.2f}",
                      one["p99_ms"] <= TARGET_P99_MS)):
        lines.append(f"  {text}  {'PASS' if ok else 'MISS'}")
    return "\n".join(lines)


def main() -> int:
    p = c.parser(__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per scenario")
    p.add_argument("--clients", type=int, default=8, help="closed-loop clients")
    p.add_argument("--services", type=int, default=1000, help="Services in the resolver's view")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of the table")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's default loop even if uvloop is there")
    args = p.parse_args()
    runner, loop_name = c.choose_loop(not args.no_uvloop)
    out = runner(run(args, loop_name))
    print(json.dumps(c.no_nan(out), indent=2) if args.json else render(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
