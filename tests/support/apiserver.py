"""Running the API server in the test's event loop, and driving the real kubectl against it.

kubectl runs as an asyncio subprocess so that the server, in the same loop,
keeps answering while kubectl waits.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
from typing import Any

import aiohttp
from dataclasses import dataclass
from pathlib import Path

from eventplane.api.server import ApiConfig, ApiServer
from eventplane.auth.kubeconfig import write_kubeconfig
from eventplane.bus import BusConfig
from tests.support.relaying import running_relay

KUBECTL = shutil.which("kubectl") or "kubectl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubectl_path(version: str | None = None) -> str:
    if not version:
        return KUBECTL
    return str(Path(os.path.realpath(KUBECTL)).with_name(f"kubectl.{version}"))


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@dataclass
class Api:
    server: ApiServer
    kubeconfig: Path

    @property
    def url(self) -> str:
        return self.server.url

    async def http(self, method: str, path: str, *, body=None, raw: bytes | None = None,
                   content_type: str = "application/json", headers: dict | None = None,
                   token: str | None = None) -> tuple[int, Any, dict]:
        """One HTTPS request as the admin (or with `token`); returns (status, decoded body, headers)."""
        ssl_ctx = ssl.create_default_context(cadata=self.server.pki.ca_pem.decode())
        hdrs = {"Authorization": f"Bearer {token if token is not None else self.server.admin_token}",
                "Content-Type": content_type, **(headers or {})}
        if token == "":
            hdrs.pop("Authorization")
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.url + path, data=data, headers=hdrs, ssl=ssl_ctx) as resp:
                text = await resp.read()
                try:
                    decoded = json.loads(text) if text else None
                except ValueError:
                    decoded = text.decode()
                return resp.status, decoded, dict(resp.headers)

    async def kubectl(self, *args: str, input: str | None = None, version: str | None = None,
                      timeout: float = 60) -> Result:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.kubeconfig.parent)}
        proc = await asyncio.create_subprocess_exec(
            kubectl_path(version), *args, stdin=asyncio.subprocess.PIPE if input is not None else
            asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None),
                                              timeout)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            return Result(-9, out.decode(), err.decode() + f"\n(kubectl killed after {timeout}s)")
        return Result(proc.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, **kw) -> str:
        r = await self.kubectl(*args, **kw)
        assert r.code == 0, f"kubectl {' '.join(args)} failed ({r.code}):\n{r.err}\n{r.out}"
        return r.out


# The server's own NATS API gets a prefix no test-made NatsApi can have ("srv…"): two NatsApis on
# one prefix share a queue group, and a request could be answered by the one the test is not watching.
@contextlib.asynccontextmanager
async def running_api(database_url: str, nats_url: str, bus: BusConfig, data_dir: Path):
    data_dir.mkdir(parents=True, exist_ok=True)
    async with running_relay(database_url, nats_url, bus):
        server = ApiServer(ApiConfig(database_url=database_url, nats_url=nats_url, data_dir=data_dir, bus=bus,
                                     port=free_port(), nats_api_prefix="srv" + bus.subject_prefix.rsplit(".", 1)[0] + ".api"))
        await server.start()
        try:
            kubeconfig = data_dir / "kubeconfig"
            write_kubeconfig(kubeconfig, server_url=server.url, ca_pem=server.pki.ca_pem,
                             user_name="eventplane-admin", token=server.admin_token)
            yield Api(server, kubeconfig)
        finally:
            await server.stop()
