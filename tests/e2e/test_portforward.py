"""kubectl port-forward through the API server and NATS to the pod's node agent, and exec over
SPDY/3.1 for kubectl before 1.30: the real kubectl (current and 1.27), a real agent, Docker."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
import sys

import aiohttp
import pytest

from eventplane.api import portforward, spdy
from tests.e2e.test_nodeagent_kubectl import ECHO, until
from tests.integration.test_nodeagent import agent_running, docker, node  # noqa: F401 (fixtures)
from tests.support.apiserver import free_port, kubectl_path

pytestmark = pytest.mark.slow

WEB = """\
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: eventplane-test/busybox:1
    command: [sh, -c, "mkdir -p /www && echo hello-from-pod > /www/index.html && seq 1 200000 > /www/big &&
                       exec httpd -f -p 8080 -h /www"]
"""
BIG = "".join(f"{i}\n" for i in range(1, 200001)).encode()


async def test_old_kubectl_exec_over_spdy(api, servers, docker, node, tmp_path):  # noqa: F811
    async with agent_running(api, servers, node, tmp_path):
        await api.ok("apply", "-f", "-", input=WEB.format(node=node))
        await until(api, "get", "pod", "web", "--no-headers", check=lambda o: "Running" in o)
        out = await api.ok("exec", "web", "--", "cat", "/etc/hostname", version="1.27", timeout=30)
        assert out.strip() == "web"
        r = await api.kubectl("exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3", version="1.27")
        assert r.code == 3 and "command terminated with exit code 3" in r.err, r
        assert r.out == "out\n" and "err" in r.err
        out = await api.ok("exec", "-i", "web", "--", "sh", "-c", "cat; echo done", input="from stdin\n",
                           version="1.27", timeout=30)
        assert out == "from stdin\ndone\n"
        # a TTY's resize stream, from a client of our own (kubectl needs a terminal for -t)
        frames = await raw_spdy_exec(api, "/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&"
                                          "command=sleep+1;stty+size&stdin=true&stdout=true&tty=true",
                                     [spdy.SynStream(1, {"streamtype": ["error"]}),
                                      spdy.SynStream(3, {"streamtype": ["stdin"]}),
                                      spdy.SynStream(5, {"streamtype": ["stdout"]}),
                                      spdy.SynStream(7, {"streamtype": ["resize"]}),
                                      spdy.Data(7, b'{"Width":100,"Height":40}\n{"Width":120,'),
                                      spdy.Data(7, b'"Height":33}\n')])
        out = b"".join(f.data for f in frames if isinstance(f, spdy.Data) and f.stream_id == 5)
        assert out.strip() == b"33 120"
        status = b"".join(f.data for f in frames if isinstance(f, spdy.Data) and f.stream_id == 1)
        assert json.loads(status)["status"] == "Success"
        # attach over SPDY: the container's own stdin and stdout
        await api.ok("apply", "-f", "-", input=ECHO.format(node=node))
        await until(api, "get", "pod", "echo", "--no-headers", check=lambda o: "Running" in o)
        assert "got ping" in await api.ok("attach", "-i", "echo", input="ping\n", version="1.27", timeout=30)


@contextlib.asynccontextmanager
async def port_forward(api, *args: str, version: str | None = None):
    """`kubectl port-forward ARGS` running; yields (process, the local port it listens on)."""
    env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "HOME": str(api.kubeconfig.parent)}
    proc = await asyncio.create_subprocess_exec(kubectl_path(version), "port-forward", *args, "-v=4",
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        m = re.search(rb"Forwarding from 127\.0\.0\.1:(\d+)", line)
        if not m:
            proc.kill()
            err = await proc.stderr.read()
            raise AssertionError(f"kubectl port-forward did not start: {line!r} {err.decode()}")
        yield proc, int(m.group(1))
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def get(port: int, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}",
                                                   timeout=aiohttp.ClientTimeout(total=20)) as r:
        return r.status, await r.read()


async def test_port_forward_reaches_the_pods_http_server(api, servers, docker, node, tmp_path):  # noqa: F811
    async with agent_running(api, servers, node, tmp_path):
        await api.ok("apply", "-f", "-", input=WEB.format(node=node))
        await until(api, "get", "pod", "web", "--no-headers", check=lambda o: "Running" in o)
        for version in (None, "1.27"):
            async with port_forward(api, "pod/web", ":8080", version=version) as (proc, port):
                assert await get(port, "/index.html") == (200, b"hello-from-pod\n")
                # two connections at once, each 1.3 MB, whole and in order
                (s1, big1), (s2, big2) = await asyncio.gather(get(port, "/big"), get(port, "/big"))
                assert s1 == s2 == 200 and big1 == big2 == BIG


async def test_port_forward_errors(api, servers, docker, node, tmp_path, monkeypatch):  # noqa: F811
    async with agent_running(api, servers, node, tmp_path):
        await api.ok("apply", "-f", "-", input=WEB.format(node=node))
        await until(api, "get", "pod", "web", "--no-headers", check=lambda o: "Running" in o)
        for version in (None, "1.27"):
            async with port_forward(api, "pod/web", ":9999", version=version) as (proc, port):
                with contextlib.suppress(aiohttp.ClientError):
                    await get(port, "/")
                err = (await asyncio.wait_for(proc.stderr.read(), 20)).decode()
                await asyncio.wait_for(proc.wait(), 10)
                # the kubelet's wording on the error stream, kubectl's around it; kubectl then gives up
                assert f"an error occurred forwarding {port} -> 9999: error forwarding port 9999 to pod web" in err
                assert "connect: connection refused" in err and "error: lost connection to pod" in err
                assert proc.returncode == 1

        # Bad input: Status 400 before anything is upgraded.
        base = "/api/v1/namespaces/default/pods/web/portforward"
        for query, message in (("?ports=abc", 'unable to parse "abc" as a port'), ("?ports=0", 'port "0" must be > 0'),
                               ("?ports=80,70000", 'unable to parse "70000" as a port'),
                               ("?ports=8080", "missing upgrade headers"), ("", "missing upgrade headers")):
            code, body, _ = await api.http("GET", base + query)
            assert code == 400 and body["reason"] == "BadRequest" and message in body["message"], (query, body)
        code, body, _ = await api.http("POST", "/api/v1/namespaces/default/pods/nope/portforward")
        assert code == 404 and body["reason"] == "NotFound"
        spdy_upgrade = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
        code, body, _ = await api.http("POST", base, headers={**spdy_upgrade, "X-Stream-Protocol-Version": "v9"})
        assert code == 403 and "unable to negotiate protocol" in body["message"]
        code, body, _ = await api.http("POST", "/api/v1/namespaces/default/pods/web/exec?command=true",
                                       headers={**spdy_upgrade, "X-Stream-Protocol-Version": "v4.channel.k8s.io"})
        assert code == 400 and body["message"] == "you must specify at least 1 of stdin, stdout, stderr"

        # A data stream whose port header is not a port: the error stream says so, nothing is dialled.
        ssl_ctx = ssl.create_default_context(cadata=api.server.pki.ca_pem.decode())
        async with aiohttp.ClientSession() as s, s.ws_connect(
                api.url + base, protocols=("SPDY/3.1+portforward.k8s.io",), ssl=ssl_ctx,
                headers={"Authorization": f"Bearer {api.server.admin_token}"}) as ws:
            assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
            enc, dec = spdy.Encoder(), spdy.Decoder()
            await ws.send_bytes(enc.encode(spdy.SynStream(1, {"streamtype": ["error"], "port": ["0"],
                                                             "requestid": ["0"]})))
            await ws.send_bytes(enc.encode(spdy.SynStream(3, {"streamtype": ["data"], "port": ["0"],
                                                             "requestid": ["0"]})))
            frames: list = []

            async def said(stream_id: int) -> bytes:
                """What the server wrote on the stream, once it closed it."""
                while not any(isinstance(f, spdy.Data) and f.stream_id == stream_id and f.fin for f in frames):
                    frames.extend(dec.feed((await asyncio.wait_for(ws.receive(), 10)).data))
                return b"".join(f.data for f in frames if isinstance(f, spdy.Data) and f.stream_id == stream_id)

            assert await said(1) == b'port "0" must be > 0'
            assert [f.stream_id for f in frames if isinstance(f, spdy.SynReply)] == [1, 3]
            # an error stream whose data stream never comes
            monkeypatch.setattr(portforward, "PAIR_TIMEOUT", 0.3)
            await ws.send_bytes(enc.encode(spdy.SynStream(5, {"streamtype": ["error"], "port": ["8080"],
                                                             "requestid": ["1"]})))
            assert await said(5) == b"timed out waiting for the data stream"


async def test_port_forward_to_a_process_runtime_pod(api, servers, tmp_path):
    from tests.integration.test_nodeagent import pod, wait_for
    from tests.integration.test_nodeagent_process import proc, process_agent

    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("from a process\n")
    async with process_agent(api, servers, tmp_path, node="pf-proc-node") as agent:
        script = f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {tmp_path / 'www'}"
        await agent.client.create(pod("served", "pf-proc-node", proc("app", script)), namespace="default")
        await wait_for(agent.client, "served", lambda p: (p.get("status") or {}).get("phase") == "Running")
        async with port_forward(api, "pod/served", f":{port}") as (proc_, local):
            for _ in range(50):     # the server may still be starting
                with contextlib.suppress(aiohttp.ClientError):
                    assert await get(local, "/index.html") == (200, b"from a process\n")
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the pod's server never answered through port-forward")


async def raw_spdy_exec(api, path: str, send: list) -> list:
    """POST `path` upgraded to SPDY/3.1 (v4.channel.k8s.io), send `send`, and return every frame
    the server sent until it ended the error stream."""
    ssl_ctx = ssl.create_default_context(cadata=api.server.pki.ca_pem.decode())
    host, port = api.url.removeprefix("https://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ssl_ctx)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api.server.admin_token}\r\n"
                     "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101") and b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head, head
        enc, dec = spdy.Encoder(), spdy.Decoder()
        for frame in send:
            writer.write(enc.encode(frame))
        frames: list = []
        while not any(isinstance(f, spdy.Data) and f.stream_id == 1 and f.fin for f in frames):
            data = await asyncio.wait_for(reader.read(65536), 20)
            assert data, f"the server closed the connection; frames so far: {frames}"
            frames += dec.feed(data)
        return frames
    finally:
        writer.close()
