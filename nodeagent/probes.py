"""Liveness, readiness and startup probes of one running container instance.

Started by the pod worker for each container instance it sees running, and
cancelled when that instance stops; each probe is a task that waits
initialDelaySeconds, then checks every periodSeconds (exec in the container,
HTTP GET or a TCP connect to the pod's address, each within timeoutSeconds)
and flips its result after successThreshold successes or failureThreshold
failures in a row. A change of result wakes the worker: a failed liveness or
startup probe makes it restart the container; readiness drives the Ready and
ContainersReady conditions.

HTTP and TCP probes go to the pod's IP, which on this node is on a local
bridge. Before the first probe to an address the prober asks the kernel
(`ip route get`) that the address is reached directly from this machine; an
address routed elsewhere is never probed (the probe fails with that reason),
so a probe cannot send traffic off the machine.
"""
from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger("eventplane.nodeagent.probes")

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"


@dataclass
class ProbeResult:
    ok: bool | None = None       # None until the thresholds decided
    message: str = ""


_local_checked: dict[str, str] = {}


def local_route_error(ip: str) -> str:
    """'' when the kernel reaches `ip` directly from this machine (loopback, a local address or a
    directly connected bridge, no gateway); otherwise why not."""
    if ip in _local_checked:
        return _local_checked[ip]
    try:
        out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        err = f"cannot check the route to {ip}: {exc}"
    else:
        first = out.strip().splitlines()[0] if out.strip() else ""
        if not first:
            err = f"no route to {ip}"
        elif first.startswith("local ") or (" via " not in first and " dev " in first):
            err = ""
        else:
            err = f"{ip} is not reached directly from this node ({first}); not probing it"
    _local_checked[ip] = err
    return err


async def first_checks(probers: list[Prober], timeout: float) -> None:
    """Wait until each prober's first check answered, at most `timeout` seconds."""
    waits = [asyncio.ensure_future(p.checked.wait()) for p in probers if not p.checked.is_set()]
    if not waits:
        return
    try:
        await asyncio.wait(waits, timeout=timeout)
    finally:
        for w in waits:
            w.cancel()


class Prober:
    """One probe of one container instance; `result` holds the current verdict."""

    def __init__(self, kind: str, spec: dict[str, Any], *, container: dict[str, Any], pod_ip: Callable[[], str],
                 exec_fn: Callable[[list[str], float], Any], on_change: Callable[[], None]) -> None:
        self.kind = kind
        self.spec = spec
        self.container = container
        self.pod_ip = pod_ip
        self.exec_fn = exec_fn
        self.on_change = on_change
        self.result = ProbeResult()
        self.checked = asyncio.Event()      # set once the first check answered (whatever it said)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"probe:{self.kind}:{self.container.get('name')}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        s = self.spec
        period = max(1, int(s.get("periodSeconds") or 10))
        timeout = max(1, int(s.get("timeoutSeconds") or 1))
        need_ok = max(1, int(s.get("successThreshold") or 1))
        need_fail = max(1, int(s.get("failureThreshold") or 3))
        await asyncio.sleep(int(s.get("initialDelaySeconds") or 0))
        oks = fails = 0
        while True:
            try:
                ok, message = await asyncio.wait_for(self.check(timeout), timeout + 1)
            except TimeoutError:
                ok, message = False, f"{self.kind} probe timed out after {timeout}s"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe that cannot run fails; it never stops the prober
                ok, message = False, f"{self.kind} probe errored: {exc}"
            if ok:
                oks, fails = oks + 1, 0
            else:
                fails, oks = fails + 1, 0
            verdict = self.result.ok
            if ok and oks >= need_ok:
                verdict = True
            elif not ok and fails >= need_fail:
                verdict = False
            if verdict != self.result.ok:
                self.result = ProbeResult(verdict, message)
                if not ok:
                    log.info("%s probe of %s failed: %s", self.kind, self.container.get("name"), message)
                self.on_change()
            self.checked.set()
            if self.kind == STARTUP and self.result.ok:
                return   # a startup probe stops once it succeeded
            await asyncio.sleep(period)

    async def check(self, timeout: float) -> tuple[bool, str]:
        s = self.spec
        if s.get("exec"):
            code, out = await self.exec_fn(list(s["exec"].get("command") or []), timeout)
            return code == 0, (out.decode(errors="replace").strip() if isinstance(out, bytes) else str(out)) or \
                f"command exited with {code}"
        if s.get("httpGet"):
            h = s["httpGet"]
            host = h.get("host") or self.pod_ip()
            err = await asyncio.to_thread(local_route_error, host)
            if err:
                return False, err
            port = self._port(h.get("port"))
            scheme = (h.get("scheme") or "HTTP").lower()
            path = h.get("path") or "/"
            url = f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}"
            headers = {x.get("name", ""): x.get("value", "") for x in h.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.31")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                async with session.get(url, headers=headers, ssl=False, allow_redirects=True) as r:
                    if 200 <= r.status < 400:
                        return True, ""
                    return False, f"HTTP probe failed with statuscode: {r.status}"
        if s.get("tcpSocket"):
            t = s["tcpSocket"]
            host = t.get("host") or self.pod_ip()
            err = await asyncio.to_thread(local_route_error, host)
            if err:
                return False, err
            port = self._port(t.get("port"))
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except OSError as exc:
                return False, f"dial tcp {host}:{port}: {exc}"
            writer.close()
            return True, ""
        return False, "the probe has no handler (exec, httpGet or tcpSocket)"

    def _port(self, port: Any) -> int:
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            return int(port)
        for p in self.container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"port {port!r} is not a port of the container")
