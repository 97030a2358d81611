"""The PKI, tokens and authenticator behind a real aiohttp HTTPS server, checked with aiohttp and kubectl.

The server is the smallest one that uses the pieces as the API server does:
`Pki.server_ssl_context()` for TLS, the peer certificate from the connection's
SSL object and the Authorization header into `Authenticator.authenticate`,
the user (or a 401 Status) back as JSON.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import stat

import aiohttp
import pytest
from aiohttp import web

from eventplane.auth import (
    AUTHENTICATED_GROUP,
    MASTERS_GROUP,
    Authenticator,
    PkiError,
    TokenFile,
    UnauthorizedError,
    ensure_admin_token,
    ensure_pki,
    issue_client_cert,
    write_kubeconfig,
)
from eventplane.auth import certs

HOSTS = ["127.0.0.1", "localhost"]


class Server:
    def __init__(self, url: str, seen: list[dict]) -> None:
        self.url = url
        self.seen = seen  # what each request that reached the handler carried


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return ensure_pki(tmp_path_factory.mktemp("pki"), hosts=HOSTS)


@pytest.fixture(scope="module")
def admin_token(pki):
    return ensure_admin_token(pki.dir.parent / "tokens.csv")


@pytest.fixture(scope="module")
async def server(pki, admin_token):
    authenticator = Authenticator(TokenFile.load(pki.dir.parent / "tokens.csv"), pki.ca_cert)
    seen: list[dict] = []

    async def whoami(request: web.Request) -> web.Response:
        peer_cert = request.transport.get_extra_info("ssl_object").getpeercert()
        header = request.headers.get("Authorization")
        seen.append({"path": request.path, "authorization": header, "peer_cert": bool(peer_cert)})
        try:
            user = authenticator.authenticate(authorization_header=header, peer_cert=peer_cert)
        except UnauthorizedError as e:
            return web.json_response(e.to_status(), status=e.code)
        return web.json_response({"user": user.user_info() if user else None})

    app = web.Application()
    app.router.add_get("/{tail:.*}", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_ssl_context())
    await site.start()
    host, port = runner.addresses[0][:2]
    yield Server(f"https://{host}:{port}", seen)
    await runner.cleanup()


async def get(server: Server, ssl_context: ssl.SSLContext, *, token: str | None = None,
              path: str = "/whoami") -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as session:
        async with session.get(server.url + path, headers=headers) as response:
            return response.status, await response.json()


# --- aiohttp as the client -----------------------------------------------------------------------

async def test_a_valid_bearer_token_is_the_admin_in_system_masters(server, pki, admin_token):
    status, body = await get(server, pki.client_ssl_context(), token=admin_token)
    assert status == 200
    assert body["user"] == {"username": "admin", "uid": "admin", "groups": [MASTERS_GROUP, AUTHENTICATED_GROUP]}


async def test_a_wrong_bearer_token_is_401_unauthorized(server, pki, admin_token):
    status, body = await get(server, pki.client_ssl_context(), token=admin_token + "x")
    assert status == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


async def test_a_client_certificate_is_its_cn_in_its_o_groups(server, pki):
    cert, key = issue_client_cert(pki, "alice", ["dev", "ops"])
    status, body = await get(server, pki.client_ssl_context(cert, key))
    assert status == 200
    assert body["user"] == {"username": "alice", "groups": ["dev", "ops", AUTHENTICATED_GROUP]}


async def test_a_client_certificate_wins_over_a_wrong_token_as_in_kubernetes(server, pki):
    cert, key = issue_client_cert(pki, "alice", [])
    status, body = await get(server, pki.client_ssl_context(cert, key), token="wrong")
    assert (status, body["user"]["username"]) == (200, "alice")


async def test_a_certificate_from_another_ca_is_refused_in_the_handshake(server, pki, tmp_path):
    stranger = ensure_pki(tmp_path / "other-pki", hosts=HOSTS)
    cert, key = issue_client_cert(stranger, "admin", [MASTERS_GROUP])
    before = len(server.seen)
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        await get(server, pki.client_ssl_context(cert, key))
    assert len(server.seen) == before, "the request must never reach the handler"


async def test_no_credentials_is_anonymous(server, pki):
    status, body = await get(server, pki.client_ssl_context())
    assert (status, body) == (200, {"user": None})


async def test_the_server_certificate_is_refused_by_a_client_that_does_not_trust_our_ca(server, tmp_path):
    stranger = ensure_pki(tmp_path / "other-pki", hosts=HOSTS)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(server, stranger.client_ssl_context())


async def test_alpn_answers_http_1_1_to_a_client_offering_h2(server, pki):
    ctx = pki.client_ssl_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # what kubectl offers
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.selected_alpn_protocol() == "http/1.1"
        assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        writer.close()
        await writer.wait_closed()


# --- kubectl as the client -----------------------------------------------------------------------

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")


async def kubectl(kubeconfig, *args: str, home) -> tuple[int, str, str]:
    # Asynchronously: the server answering kubectl runs on this same event loop.
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)  # kubectl's cache goes there, not into the real home
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(kubeconfig), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode(), err.decode()


@needs_kubectl
async def test_kubectl_sends_the_token_of_our_kubeconfig_over_our_tls(server, pki, admin_token, tmp_path):
    config = tmp_path / "kubeconfig"
    write_kubeconfig(config, server_url=server.url, ca_pem=pki.ca_pem, user_name="eventplane",
                     token=admin_token)
    code, out, err = await kubectl(config, "get", "--raw", "/whoami", home=tmp_path)
    assert code == 0, err
    assert json.loads(out)["user"]["username"] == "admin"
    assert server.seen[-1] == {"path": "/whoami", "authorization": f"Bearer {admin_token}", "peer_cert": False}


@needs_kubectl
async def test_kubectl_presents_the_client_certificate_of_our_kubeconfig(server, pki, tmp_path):
    cert, key = issue_client_cert(pki, "bob", ["devs"])
    config = tmp_path / "kubeconfig"
    write_kubeconfig(config, server_url=server.url, ca_pem=pki.ca_pem, user_name="bob",
                     client_cert_pem=cert, client_key_pem=key)
    code, out, err = await kubectl(config, "get", "--raw", "/whoami", home=tmp_path)
    assert code == 0, err
    assert json.loads(out)["user"] == {"username": "bob", "groups": ["devs", AUTHENTICATED_GROUP]}
    assert server.seen[-1] == {"path": "/whoami", "authorization": None, "peer_cert": True}


@needs_kubectl
async def test_kubectl_reports_a_wrong_token_as_unauthorized(server, pki, tmp_path):
    config = tmp_path / "kubeconfig"
    write_kubeconfig(config, server_url=server.url, ca_pem=pki.ca_pem, user_name="eventplane",
                     token="not-a-token")
    code, _, err = await kubectl(config, "get", "--raw", "/whoami", home=tmp_path)
    assert code != 0
    assert "Unauthorized" in err


# --- the PKI directory ---------------------------------------------------------------------------

def files(pki) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (pki.ca_cert, pki.ca_key, pki.server_cert, pki.server_key)}


def test_keys_are_private_and_certificates_readable(pki):
    assert stat.S_IMODE(pki.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.server_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.ca_cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(pki.server_cert.stat().st_mode) == 0o644


def test_a_second_start_reuses_everything(tmp_path):
    first = files(ensure_pki(tmp_path, hosts=HOSTS))
    assert files(ensure_pki(tmp_path, hosts=["::1", "LOCALHOST"])) == first  # covered already


def test_a_new_host_reissues_only_the_serving_certificate(tmp_path):
    first = files(ensure_pki(tmp_path, hosts=HOSTS))
    second = files(ensure_pki(tmp_path, hosts=[*HOSTS, "10.1.2.3", "api.example.com"]))
    assert second["ca.crt"] == first["ca.crt"] and second["ca.key"] == first["ca.key"]
    assert second["apiserver.crt"] != first["apiserver.crt"]
    assert second["apiserver.key"] != first["apiserver.key"]
    assert files(ensure_pki(tmp_path, hosts=["10.1.2.3", "api.example.com"])) == second


def test_a_serving_certificate_expiring_within_30_days_is_reissued(tmp_path, monkeypatch):
    monkeypatch.setattr(certs, "SERVER_DAYS", 20)
    first = files(ensure_pki(tmp_path, hosts=HOSTS))
    monkeypatch.setattr(certs, "SERVER_DAYS", 365)
    second = files(ensure_pki(tmp_path, hosts=HOSTS))
    assert second["apiserver.crt"] != first["apiserver.crt"]
    assert files(ensure_pki(tmp_path, hosts=HOSTS)) == second


def test_a_serving_certificate_of_another_ca_is_reissued(tmp_path):
    mine = ensure_pki(tmp_path / "mine", hosts=HOSTS)
    other = ensure_pki(tmp_path / "other", hosts=HOSTS)
    shutil.copy(other.server_cert, mine.server_cert)
    shutil.copy(other.server_key, mine.server_key)
    ensure_pki(mine.dir, hosts=HOSTS)
    assert mine.server_cert.read_bytes() != other.server_cert.read_bytes()


def test_a_ca_certificate_without_its_key_is_an_error_not_a_new_ca(tmp_path):
    pki = ensure_pki(tmp_path, hosts=HOSTS)
    ca = pki.ca_cert.read_bytes()
    pki.ca_key.unlink()
    with pytest.raises(PkiError, match="only one of ca.crt and ca.key"):
        ensure_pki(tmp_path, hosts=HOSTS)
    assert pki.ca_cert.read_bytes() == ca
