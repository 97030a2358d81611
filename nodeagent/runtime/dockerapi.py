"""A small async client of the Docker Engine API, over the engine's unix socket.

Used by runtime/docker.py (and the tests' Docker fixture, and bench/podstart.py)
for the few calls a node agent makes: ping, images, containers (create, start,
kill, remove, inspect, list by label), exec, logs and the event stream. The
Engine API is plain JSON over HTTP; aiohttp speaks it natively in the agent's
event loop, where the docker SDK would need a thread per call.

Errors: every answer of 400 or more raises DockerError with the engine's
message and status; NotFound (404) is its own class because the agent asks
"does this exist" often; an engine that does not answer at all raises
DockerUnavailable.
"""
from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

DEFAULT_SOCKET = "/var/run/docker.sock"
API_VERSION = "v1.41"   # Docker 20.10; every call used here exists since 1.25

__all__ = ["DEFAULT_SOCKET", "DockerApi", "DockerError", "DockerNotFound", "DockerUnavailable", "demux"]


class DockerError(Exception):
    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class DockerNotFound(DockerError):
    pass


class DockerUnavailable(DockerError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


def socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://"):] if host.startswith("unix://") else DEFAULT_SOCKET


class DockerApi:
    """One pooled connection set to the engine; `async with DockerApi() as d:` or close()."""

    def __init__(self, socket: str | None = None, *, timeout: float = 60.0) -> None:
        self.socket = socket or socket_path()
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                "http://docker", connector=aiohttp.UnixConnector(path=self.socket, limit=64))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DockerApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.close())

    # --- plumbing --------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                      data: bytes | None = None, headers: dict[str, str] | None = None,
                      timeout: float | None = None) -> Any:
        """One call; the decoded JSON answer (or the raw bytes when it is not JSON, None when empty)."""
        kw: dict[str, Any] = {"params": _params(params), "headers": headers or {}}
        if body is not None:
            kw["data"] = json.dumps(body).encode()
            kw["headers"] = {"Content-Type": "application/json", **kw["headers"]}
        elif data is not None:
            kw["data"] = data
        try:
            async with self.session().request(
                    method, f"/{API_VERSION}{path}",
                    timeout=aiohttp.ClientTimeout(total=timeout or self.timeout), **kw) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise _error(response.status, raw)
                if not raw:
                    return None
                if response.content_type == "application/json":
                    return json.loads(raw)
                return raw
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise DockerUnavailable(f"the Docker engine at {self.socket} does not answer: {exc}") from exc

    async def stream(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                     body: Any = None) -> AsyncIterator[bytes]:
        """A response body as it arrives, chunk by chunk, for as long as the engine keeps it open."""
        kw: dict[str, Any] = {"params": _params(params)}
        if body is not None:
            kw["data"] = json.dumps(body).encode()
            kw["headers"] = {"Content-Type": "application/json"}
        try:
            async with self.session().request(method, f"/{API_VERSION}{path}",
                                              timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                              **kw) as response:
                if response.status >= 400:
                    raise _error(response.status, await response.read())
                async for chunk in response.content.iter_any():
                    yield chunk
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise DockerUnavailable(f"the Docker engine at {self.socket} does not answer: {exc}") from exc

    # --- the engine ------------------------------------------------------------------------------

    async def ping(self, timeout: float = 2.0) -> bool:
        try:
            await self.request("GET", "/_ping", timeout=timeout)
            return True
        except (DockerError, TimeoutError):
            return False

    async def version(self) -> dict[str, Any]:
        return await self.request("GET", "/version")

    # --- images ----------------------------------------------------------------------------------

    async def image(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", f"/images/{quote(name, safe='')}/json")
        except DockerNotFound:
            return None

    async def pull(self, image: str, timeout: float = 300.0) -> None:
        """Pull `image`; the engine reports a failure inside its progress stream, raised here."""
        repo, tag = split_image(image)
        out = await self.request("POST", "/images/create", params={"fromImage": repo, "tag": tag},
                                 timeout=timeout)
        text = out.decode(errors="replace") if isinstance(out, bytes) else json.dumps(out or {})
        for line in text.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("error"):
                raise DockerError(str(doc["error"]), 500)

    async def import_image(self, tarball: bytes, repo: str, tag: str) -> None:
        """`docker import`: a filesystem tarball becomes an image."""
        await self.request("POST", "/images/create", params={"fromSrc": "-", "repo": repo, "tag": tag},
                           data=tarball, headers={"Content-Type": "application/x-tar"}, timeout=120)

    # --- containers ------------------------------------------------------------------------------

    async def create(self, name: str, config: dict[str, Any]) -> str:
        out = await self.request("POST", "/containers/create", params={"name": name}, body=config)
        return out["Id"]

    async def start(self, cid: str) -> None:
        await self.request("POST", f"/containers/{cid}/start")

    async def kill(self, cid: str, signal: str = "SIGKILL") -> None:
        try:
            await self.request("POST", f"/containers/{cid}/kill", params={"signal": signal})
        except DockerError as exc:
            if exc.status not in (404, 409):   # gone, or not running: nothing to kill
                raise

    async def wait(self, cid: str, timeout: float | None = None) -> int:
        out = await self.request("POST", f"/containers/{cid}/wait", timeout=timeout or 86400.0)
        return int((out or {}).get("StatusCode", -1))

    async def remove(self, cid: str, *, force: bool = True) -> None:
        try:
            await self.request("DELETE", f"/containers/{cid}", params={"force": force, "v": True})
        except DockerNotFound:
            pass
        except DockerError as exc:
            if exc.status != 409 or "already in progress" not in str(exc):
                raise

    async def inspect(self, cid: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", f"/containers/{cid}/json")
        except DockerNotFound:
            return None

    async def containers(self, labels: dict[str, str] | list[str] | None = None, *,
                         all: bool = True) -> list[dict[str, Any]]:
        """Containers (summaries) carrying every label given (`k=v`, or `k` for any value)."""
        wanted = [f"{k}={v}" for k, v in labels.items()] if isinstance(labels, dict) else list(labels or ())
        filters = {"label": wanted} if wanted else {}
        return await self.request("GET", "/containers/json",
                                  params={"all": all, "filters": json.dumps(filters)}) or []

    # --- exec and logs ---------------------------------------------------------------------------

    async def exec(self, cid: str, cmd: list[str], *, timeout: float | None = None,
                   user: str = "") -> tuple[int, bytes, bytes]:
        """Run `cmd` in a running container; (exit code, stdout, stderr). A timeout raises TimeoutError
        (the process keeps running in the container, as with the kubelet's exec probes)."""
        created = await self.request("POST", f"/containers/{cid}/exec",
                                     body={"Cmd": cmd, "AttachStdout": True, "AttachStderr": True,
                                           "User": user})
        eid = created["Id"]

        async def run() -> tuple[int, bytes, bytes]:
            raw = await self.request("POST", f"/exec/{eid}/start", body={"Detach": False, "Tty": False},
                                     timeout=86400.0)
            out, err = demux(raw if isinstance(raw, bytes) else b"")
            info = await self.request("GET", f"/exec/{eid}/json")
            return int(info.get("ExitCode") if info.get("ExitCode") is not None else -1), out, err

        return await asyncio.wait_for(run(), timeout)

    async def exec_attached(self, cid: str, cmd: list[str], *, tty: bool = False, stdin: bool = False
                            ) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
        """Start `cmd` in a running container with its streams attached: (exec id, reader, writer) on a
        hijacked connection. Without a TTY the reader's bytes are frames (8-byte headers: 1 stdout,
        2 stderr); with one they are raw. Writing feeds stdin; `writer.write_eof()` closes it."""
        created = await self.request("POST", f"/containers/{cid}/exec",
                                     body={"Cmd": cmd, "AttachStdin": stdin, "AttachStdout": True,
                                           "AttachStderr": True, "Tty": tty})
        eid = created["Id"]
        reader, writer = await self.hijack(f"/exec/{eid}/start", None,
                                           json.dumps({"Detach": False, "Tty": tty}).encode())
        return eid, reader, writer

    async def hijack(self, path: str, params: dict[str, Any] | None, body: bytes = b""
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """POST `path` asking the engine to upgrade the connection: then it carries the raw streams."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket)
        except OSError as exc:
            raise DockerUnavailable(f"the Docker engine at {self.socket} does not answer: {exc}") from exc
        query = "&".join(f"{k}={v}" for k, v in _params(params).items())
        writer.write((f"POST /{API_VERSION}{path}{'?' + query if query else ''} HTTP/1.1\r\nHost: docker\r\n"
                      "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        await writer.drain()
        status = await reader.readline()
        parts = status.split()
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 500
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        if code >= 400:
            text = await reader.read(4096)
            writer.close()
            raise _error(code, text)
        return reader, writer

    async def exec_resize(self, eid: str, height: int, width: int) -> None:
        await self.request("POST", f"/exec/{eid}/resize", params={"h": height, "w": width})

    async def exec_exit_code(self, eid: str) -> int | None:
        info = await self.request("GET", f"/exec/{eid}/json")
        return info.get("ExitCode")

    async def logs(self, cid: str, *, tail: int | None = None, timestamps: bool = False,
                   since: float | None = None) -> tuple[bytes, bytes]:
        params: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": timestamps}
        if tail is not None:
            params["tail"] = str(tail)
        if since is not None:
            params["since"] = f"{since:.3f}"
        raw = await self.request("GET", f"/containers/{cid}/logs", params=params)
        return demux(raw if isinstance(raw, bytes) else b"")

    async def follow_logs(self, cid: str, *, tail: int | None = None, timestamps: bool = False,
                          since: float | None = None) -> AsyncIterator[bytes]:
        """stdout and stderr as they are written, until the container stops (frames demultiplexed)."""
        params: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": timestamps, "follow": True}
        if tail is not None:
            params["tail"] = str(tail)
        if since is not None:
            params["since"] = f"{since:.3f}"
        buf = b""
        async for chunk in self.stream("GET", f"/containers/{cid}/logs", params=params):
            buf += chunk
            out = bytearray()
            while len(buf) >= 8:
                size = struct.unpack(">I", buf[4:8])[0]
                if len(buf) < 8 + size:
                    break
                out += buf[8:8 + size]
                buf = buf[8 + size:]
            if out:
                yield bytes(out)

    async def events(self, filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        """Engine events matching `filters`, from now on, one dict per event."""
        buf = b""
        async for chunk in self.stream("GET", "/events", params={"filters": json.dumps(filters)}):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)


def demux(raw: bytes) -> tuple[bytes, bytes]:
    """Split a non-TTY attach/logs stream (8-byte frame headers: stream, 0, 0, 0, big-endian size)."""
    out, err = bytearray(), bytearray()
    i = 0
    while i + 8 <= len(raw):
        kind, size = raw[i], struct.unpack(">I", raw[i + 4:i + 8])[0]
        frame = raw[i + 8:i + 8 + size]
        (err if kind == 2 else out).extend(frame)
        i += 8 + size
    return bytes(out), bytes(err)


def split_image(image: str) -> tuple[str, str]:
    """`repo[:tag][@digest]` → (repo, tag); `latest` when no tag is given, as docker does."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"


def _params(params: dict[str, Any] | None) -> dict[str, str]:
    out = {}
    for k, v in (params or {}).items():
        if v is None:
            continue
        out[k] = ("1" if v else "0") if isinstance(v, bool) else str(v)
    return out


def _error(status: int, raw: bytes) -> DockerError:
    try:
        message = json.loads(raw).get("message") or raw.decode(errors="replace")
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")
    cls = DockerNotFound if status == 404 else DockerError
    return cls(message.strip() or f"the Docker engine answered {status}", status)
