"""Kubernetes protobuf request bodies (eventplane.api.protobuf).

Real kubectl requests, recorded by a tiny HTTP server in this loop, decode to
what `kubectl ... --dry-run=client -o json` prints for the same command.
Hand-built bodies cover what kubectl's create commands never send: the special
types, pointer zeros, nested schemas and malformed input.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web

from eventplane.api.protobuf import MEDIA_TYPE, decode_protobuf
from eventplane.api.protobuf.decode import MESSAGES, go_duration
from eventplane.objects.errors import BadRequestError

CORE = "k8s.io.api.core.v1"
META = "k8s.io.apimachinery.pkg.apis.meta.v1"
APIEXT = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1"


# --- real kubectl -----------------------------------------------------------------------------------------------

def kubectl(version: str) -> Path | None:
    found = shutil.which("kubectl")
    if not found:
        return None
    binary = Path(found).resolve().parent / f"kubectl.{version}"
    return binary if binary.exists() else None


KUBECTL_133 = kubectl("1.33")
KUBECTL_127 = kubectl("1.27")

# Legacy discovery, just enough for `kubectl create role --resource=pods` to resolve pods.
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["create", "get"]}]},
}


@dataclass
class Recorded:
    content_type: str
    body: bytes
    decoded: dict


@dataclass
class Recorder:
    """Answers kubectl's writes with 201 and the object it decoded, and keeps every request body."""

    tmp: Path
    requests: list[Recorded] = field(default_factory=list)
    kubeconfig: Path | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            if request.path in DISCOVERY:
                return web.json_response(DISCOVERY[request.path])
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404}, status=404)
        body = await request.read()
        ctype = request.headers.get("Content-Type", "")
        try:
            obj = decode_protobuf(body) if ctype.startswith(MEDIA_TYPE) else json.loads(body)
        except BadRequestError as exc:
            return web.json_response(exc.to_status(), status=400)
        self.requests.append(Recorded(ctype, body, obj))
        return web.json_response({**obj, "metadata": obj.get("metadata") or {}}, status=201)

    async def kubectl(self, binary: Path, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(binary), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.tmp / 'cache'}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"HOME": str(self.tmp), "PATH": os.environ.get("PATH", "")})
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
        return out.decode()


@pytest.fixture
async def recorder(tmp_path):
    rec = Recorder(tmp_path)
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    # Plain http and no user: kubectl sends no credentials, which is all this needs.
    rec.kubeconfig = tmp_path / "kubeconfig"
    rec.kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    namespace: default\n"
        "current-context: c\n")
    (tmp_path / "blob").write_bytes(b"\xff\x00binary")
    try:
        yield rec
    finally:
        await runner.cleanup()


def without_empties(value):
    """What dry-run prints beyond the object sent: creationTimestamp: null, status: {} and the like."""
    if isinstance(value, dict):
        value = {k: without_empties(v) for k, v in value.items()}
        return {k: v for k, v in value.items() if v is not None and v != {}}
    if isinstance(value, list):
        return [without_empties(v) for v in value]
    return value


def with_flags(args: list[str], *flags: str) -> list[str]:
    """Flags go before a `--` that starts a container command."""
    at = args.index("--") if "--" in args else len(args)
    return args[:at] + list(flags) + args[at:]


CREATES = [
    pytest.param(["create", "namespace", "x"], id="namespace"),
    pytest.param(["create", "configmap", "c", "--from-literal=a=b", "--from-literal=empty="], id="configmap"),
    pytest.param(["create", "configmap", "bin", "--from-file=blob={tmp}/blob"], id="configmap-binary"),
    pytest.param(["create", "secret", "generic", "s", "--from-literal=p=q"], id="secret"),
    pytest.param(["create", "deployment", "d", "--image=nginx", "--replicas=2", "--port=80"], id="deployment"),
    pytest.param(["create", "deployment", "z", "--image=nginx", "--replicas=0"], id="deployment-zero-replicas"),
    pytest.param(["create", "job", "j", "--image=busybox", "--", "echo", "hi"], id="job"),
    pytest.param(["create", "cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *"], id="cronjob"),
    pytest.param(["create", "service", "clusterip", "s", "--tcp=80:8080"], id="service"),
    pytest.param(["create", "service", "clusterip", "h", "--clusterip=None"], id="service-headless"),
    pytest.param(["create", "service", "externalname", "e", "--external-name=example.com"], id="externalname"),
    pytest.param(["create", "priorityclass", "pc", "--value=10", "--preemption-policy=Never"], id="priorityclass"),
    pytest.param(["create", "priorityclass", "pz", "--value=0"], id="priorityclass-zero"),
    pytest.param(["create", "quota", "q", "--hard=cpu=1,pods=2,requests.memory=1Gi"], id="quota"),
    pytest.param(["create", "poddisruptionbudget", "p", "--selector=a=b", "--min-available=0"], id="pdb-zero"),
    pytest.param(["create", "poddisruptionbudget", "p", "--selector=a=b", "--max-unavailable=50%"], id="pdb-pct"),
    pytest.param(["create", "serviceaccount", "sa"], id="serviceaccount"),
    pytest.param(["create", "role", "r", "--verb=get,list", "--resource=pods"], id="role"),
    pytest.param(["create", "clusterrole", "cr", "--verb=get", "--non-resource-url=/healthz"], id="clusterrole"),
    pytest.param(["create", "rolebinding", "rb", "--role=r", "--serviceaccount=default:sa"], id="rolebinding"),
    pytest.param(["create", "clusterrolebinding", "crb", "--clusterrole=view", "--user=u", "--group=g"],
                 id="clusterrolebinding"),
]


@pytest.mark.skipif(KUBECTL_133 is None, reason="kubectl 1.33 is not installed beside kubectl")
@pytest.mark.parametrize("args", CREATES)
async def test_kubectl_133_bodies_decode_to_its_dry_run(recorder, args):
    args = [a.replace("{tmp}", str(recorder.tmp)) for a in args]
    flags = ("--validate=false",)
    printed = await recorder.kubectl(KUBECTL_133, *with_flags(args, *flags, "--dry-run=client", "-o", "json"))
    await recorder.kubectl(KUBECTL_133, *with_flags(args, *flags))
    [sent] = recorder.requests
    assert sent.content_type == MEDIA_TYPE
    assert sent.body.startswith(b"k8s\x00")
    assert sent.decoded == without_empties(json.loads(printed))


@pytest.mark.skipif(KUBECTL_133 is None, reason="kubectl 1.33 is not installed beside kubectl")
async def test_kubectl_zero_and_binary_values_survive(recorder):
    await recorder.kubectl(KUBECTL_133, "create", "deployment", "z", "--image=nginx", "--replicas=0")
    await recorder.kubectl(KUBECTL_133, "create", "configmap", "bin", f"--from-file=blob={recorder.tmp}/blob")
    deployment, configmap = (r.decoded for r in recorder.requests)
    assert deployment["spec"]["replicas"] == 0  # a pointer: present means set
    assert base64.b64decode(configmap["binaryData"]["blob"]) == b"\xff\x00binary"


@pytest.mark.skipif(KUBECTL_133 is None, reason="kubectl 1.33 is not installed beside kubectl")
async def test_decoding_a_deployment_takes_well_under_a_millisecond(recorder):
    await recorder.kubectl(KUBECTL_133, "create", "deployment", "d", "--image=nginx", "--replicas=2", "--port=80")
    body = recorder.requests[0].body
    runs = 300
    start = time.perf_counter()
    for _ in range(runs):
        decode_protobuf(body)
    assert (time.perf_counter() - start) / runs < 0.002


@pytest.mark.skipif(KUBECTL_127 is None, reason="kubectl 1.27 is not installed beside kubectl")
async def test_kubectl_127_still_sends_json(recorder):
    await recorder.kubectl(KUBECTL_127, "create", "namespace", "x")
    [sent] = recorder.requests
    assert sent.content_type.startswith("application/json")
    assert sent.decoded["metadata"]["name"] == "x"


# --- hand-built bodies ------------------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _value(num: int, ftype: int, message, value) -> bytes:
    if message is not None:
        return _delimited(num, encode(message.name, value))
    if ftype in (9, 12):
        return _delimited(num, value.encode() if isinstance(value, str) else value)
    if ftype == 1:
        return _varint(num << 3 | 1) + struct.pack("<d", value)
    return _varint(num << 3) + _varint(int(value))


def encode(message: str, obj: dict) -> bytes:
    """A message as gogo-protobuf writes it, from a dict keyed by the table's names ("" for an inlined field)."""
    by_name = {f.name: f for f in MESSAGES[message].fields.values()}
    out = b""
    for key, value in obj.items():
        f = by_name[key]
        if f.map:
            for k, v in value.items():
                entry = _value(1, f.key_type, None, k) + _value(2, f.value_type, f.value_message, v)
                out += _delimited(f.number, entry)
        elif f.repeated:
            out += b"".join(_value(f.number, f.type, f.message, v) for v in value)
        else:
            out += _value(f.number, f.type, f.message, value)
    return out


def body(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _delimited(1, api_version.encode()) + _delimited(2, kind.encode())
    return b"k8s\x00" + _delimited(1, type_meta) + _delimited(2, raw) + _delimited(3, b"") + _delimited(4, b"")


def time_of(text: str) -> dict:
    return {"seconds": int(datetime.fromisoformat(text).timestamp())}


def test_pointer_zeros_are_kept_and_plain_zeros_dropped():
    pod = encode(f"{CORE}.Pod", {
        "metadata": {"name": "p", "namespace": "", "generation": 0, "creationTimestamp": {}},
        "spec": {
            "automountServiceAccountToken": False, "enableServiceLinks": False, "hostNetwork": False,
            "terminationGracePeriodSeconds": 0, "restartPolicy": "", "priority": 0,
            "volumes": [
                {"name": "v", "": {"emptyDir": {"medium": ""}}},
                {"name": "w", "": {"configMap": {"": {"name": "cm"}, "defaultMode": 420, "optional": False}}},
            ],
            "containers": [{
                "name": "c", "image": "nginx", "stdin": False, "tty": False,
                "ports": [{"containerPort": 80, "name": "http", "hostPort": 0}],
                "readinessProbe": {"": {"httpGet": {"port": {"type": 1, "strVal": "http"}, "path": "/"}},
                                   "periodSeconds": 5, "timeoutSeconds": 0},
                "livenessProbe": {"": {"tcpSocket": {"port": {"type": 0, "intVal": 8080}}}},
                "resources": {"limits": {"cpu": {"string": "500m"}}, "requests": {"cpu": {"string": "0"}}},
                "securityContext": {"runAsNonRoot": False, "runAsUser": 0, "readOnlyRootFilesystem": True},
                "env": [{"name": "A", "value": ""},
                        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": ""}}}],
                "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": False}],
            }],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 0}],
        },
        "status": {},
    })
    assert decode_protobuf(body("v1", "Pod", pod)) == {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {
            "automountServiceAccountToken": False, "enableServiceLinks": False, "terminationGracePeriodSeconds": 0,
            "priority": 0,
            "volumes": [{"name": "v", "emptyDir": {}},
                        {"name": "w", "configMap": {"name": "cm", "defaultMode": 420, "optional": False}}],
            "containers": [{
                "name": "c", "image": "nginx",
                "ports": [{"containerPort": 80, "name": "http"}],
                "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": 8080}},
                "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "0"}},
                "securityContext": {"runAsNonRoot": False, "runAsUser": 0, "readOnlyRootFilesystem": True},
                "env": [{"name": "A"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "volumeMounts": [{"name": "v", "mountPath": "/v"}],
            }],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 0}],
        },
    }


def test_times_micro_times_and_zero_times():
    lease = encode("k8s.io.api.coordination.v1.Lease", {
        "metadata": {"name": "l", "creationTimestamp": time_of("2024-05-01T12:00:00+00:00"),
                     "deletionTimestamp": {"seconds": 0}},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 0,
                 "acquireTime": {**time_of("2024-05-01T12:00:01+00:00"), "nanos": 123456789},
                 "renewTime": {}},
    })
    assert decode_protobuf(body("coordination.k8s.io/v1", "Lease", lease)) == {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l", "creationTimestamp": "2024-05-01T12:00:00Z"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 0, "acquireTime": "2024-05-01T12:00:01.123456Z"},
    }


def test_raw_extensions_and_managed_fields_are_parsed_json():
    revision = encode("k8s.io.api.apps.v1.ControllerRevision", {
        "metadata": {"name": "r", "managedFields": [
            {"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
             "fieldsV1": {"Raw": b'{"f:data":{}}'}, "time": time_of("2024-05-01T12:00:00+00:00")}]},
        "data": {"raw": b'{"spec":{"replicas":3}}'},
        "revision": 2,
    })
    assert decode_protobuf(body("apps/v1", "ControllerRevision", revision)) == {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "r", "managedFields": [
            {"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {}}, "time": "2024-05-01T12:00:00Z"}]},
        "data": {"spec": {"replicas": 3}},
        "revision": 2,
    }


def test_options_kinds_come_from_meta_in_every_group():
    options = encode(f"{META}.DeleteOptions", {"gracePeriodSeconds": 0, "propagationPolicy": "Foreground"})
    assert decode_protobuf(body("apps/v1", "DeleteOptions", options)) == {
        "apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground"}
    eviction = encode("k8s.io.api.policy.v1.Eviction", {
        "metadata": {"name": "p", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 30, "dryRun": ["All"]}})
    assert decode_protobuf(body("policy/v1", "Eviction", eviction)) == {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 30, "dryRun": ["All"]}}


def test_custom_resource_definition_schemas():
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "additionalProperties": {"allows": True, "schema": {"type": "string"}}},
            "size": {"type": "integer", "maximum": 10.0, "minimum": 0.5, "default": {"raw": b"3"},
                     "enum": [{"raw": b"1"}, {"raw": b"3"}]},
            "tags": {"type": "array", "items": {"schema": {"type": "string"}}, "x-kubernetes-list-type": "set"},
            "closed": {"type": "object", "additionalProperties": {"allows": False}},
        },
        "required": ["spec"],
    }
    crd = encode(f"{APIEXT}.CustomResourceDefinition", {
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}]},
    })
    decoded = decode_protobuf(body("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd))
    [version] = decoded["spec"]["versions"]
    assert version == {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "additionalProperties": {"type": "string"}},
            "size": {"type": "integer", "maximum": 10, "minimum": 0.5, "default": 3, "enum": [1, 3]},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "closed": {"type": "object", "additionalProperties": False},
        },
        "required": ["spec"],
    }}}
    assert decoded["spec"]["names"] == {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]}


def test_unknown_fields_are_skipped():
    future = _delimited(99, b"a field of a later release") + _varint(100 << 3) + b"\x01"
    raw = encode(f"{CORE}.Namespace", {"metadata": {"name": "x"}}) + future
    assert decode_protobuf(body("v1", "Namespace", raw)) == {"apiVersion": "v1", "kind": "Namespace",
                                                              "metadata": {"name": "x"}}


@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (1, "1ns"), (1500, "1.5µs"), (1_500_000, "1.5ms"), (1_500_000_000, "1.5s"),
    (3_723_000_000_000, "1h2m3s"), (3_600_000_000_000, "1h0m0s"), (-90_000_000_000, "-1m30s"),
])
def test_go_duration(ns, text):
    assert go_duration(ns) == text


NAMESPACE = encode(f"{CORE}.Namespace", {"metadata": {"name": "x"}})


@pytest.mark.parametrize("data, message", [
    pytest.param(b'{"kind":"Namespace"}', "magic number", id="json"),
    pytest.param(b"k8s\x00\x0a\x80", "truncated", id="truncated-varint"),
    pytest.param(b"k8s\x00\x12\x05ab", "runs past the end", id="short-raw"),
    pytest.param(body("", "", NAMESPACE), "no apiVersion and kind", id="empty-type-meta"),
    pytest.param(body("example.com/v1", "Widget", b""), "'example.com/v1' are not supported", id="unknown-group"),
    pytest.param(body("v1", "Widget", b""), "unknown protobuf message type for v1 Widget", id="unknown-kind"),
    pytest.param(body("v1", "Namespace", b"\x0a\x05\x0a\x01"), "runs past the end", id="short-field"),
    pytest.param(body("v1", "Namespace", b"\x0a\x02\x38\x80\x01"), "runs past the end", id="varint-crosses-end"),
    pytest.param(body("v1", "Namespace", b"\x08\x01"), "wire type 0, expected 2", id="wrong-wire-type"),
    pytest.param(body("apps/v1", "ControllerRevision", b"\x12\x04\x0a\x02{x"), "raw JSON", id="bad-raw-json"),
])
def test_malformed_bodies_are_bad_requests(data, message):
    with pytest.raises(BadRequestError) as caught:
        decode_protobuf(data)
    assert message in caught.value.message
