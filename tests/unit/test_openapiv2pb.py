"""/openapi/v2 as gnostic's protobuf `openapi.v2.Document` (eventplane.api.openapiv2pb).

The encoding is decoded back by a reader of its own here, driven by the same
descriptor table, and mapped back to Swagger JSON the way gnostic's compiler
maps JSON to messages, in reverse: what comes back must be what went in. Then
the real thing: kubectl 1.27, which reads /openapi/v2 only as protobuf, applies,
explains and validates against a full API server.
"""
from __future__ import annotations

import json
import os
import re
import ssl
import struct
from typing import Any

import aiohttp
import pytest
import yaml
from multidict import CIMultiDict

from eventplane.api.openapi import OpenAPI
from eventplane.api.openapiv2pb import JSON, MEDIA_TYPE, EncodeError, encode_document, negotiate, variant
from eventplane.api.openapiv2pb.encode import MESSAGES, PACKAGE, to_yaml
from eventplane.api.openapiv2pb.generate import raw_descriptor
from eventplane.objects.schema.catalog import _builtin, custom_resource
from tests.support.apiserver import kubectl_path

_WIRE = {1: 1, 2: 5, 3: 0, 4: 0, 5: 0, 8: 0, 9: 2, 11: 2, 13: 0}


# --- a generic reader: bytes -> {field name: value} by the descriptor table ---------------------------------------

def read(buf: bytes, message: str) -> dict[str, Any]:
    fields = {f.number: f for f in MESSAGES[message].fields.values()}
    out: dict[str, Any] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        f = fields[key >> 3]  # the encoder writes no field the descriptor lacks
        assert key & 7 == _WIRE[f.type], f"{message}.{f.name}: wire type {key & 7}"
        if key & 7 == 2:
            n, i = _varint(buf, i)
            raw, i = buf[i:i + n], i + n
            value: Any = raw.decode() if f.type == 9 else read(raw, f.message)
        elif key & 7 == 1:
            value, i = struct.unpack_from("<d", buf, i)[0], i + 8
        elif key & 7 == 5:
            value, i = struct.unpack_from("<f", buf, i)[0], i + 4
        else:
            value, i = _varint(buf, i)
            value = bool(value) if f.type == 8 else value - (1 << 64) if value >= 1 << 63 else value
        if f.repeated:
            out.setdefault(f.name, []).append(value)
        else:
            assert f.name not in out, f"{message}.{f.name} written twice"
            out[f.name] = value
    oneof = [name for name in out if MESSAGES[message].fields[name].oneof]
    assert len(oneof) <= 1, f"{message}: more than one member of a oneof set: {oneof}"
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    val = shift = 0
    while True:
        b = buf[i]
        i += 1
        val |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return val, i


# --- and back to Swagger JSON, as gnostic's ToRawInfo would ---------------------------------------------------------

# Wrappers of a list; the JSON of TypeItem and ItemsItem is the single member when there is one.
_UNWRAP = {"TypeItem": "value", "StringArray": "value", "ItemsItem": "schema"}


def to_json(value: dict, message: str) -> Any:
    short = message[len(PACKAGE):]
    msg = MESSAGES[message]
    if short == "Any":
        return yaml.safe_load(value["yaml"])
    if short in _UNWRAP:
        items = [to_json(v, msg.fields[_UNWRAP[short]].message) if msg.fields[_UNWRAP[short]].message else v
                 for v in value.get(_UNWRAP[short], [])]
        return items[0] if len(items) == 1 and short != "StringArray" else items
    if all(f.oneof for f in msg.fields.values()):
        (name, v), = value.items()
        f = msg.fields[name]
        return to_json(v, f.message) if f.message else v
    out: dict[str, Any] = {}
    for name, v in value.items():
        f = msg.fields[name]
        if f is msg.vendor:
            out.update((e["name"], to_json(e["value"], "openapi.v2.Any")) for e in v)
        elif f is msg.named:
            entry = MESSAGES[f.message].fields["value"]
            out.update((e["name"], to_json(e["value"], entry.message) if entry.message else e["value"]) for e in v)
        else:
            key = "$ref" if name == "_ref" else re.sub(r"_([a-z])", lambda m: m[1].upper(), name)
            convert = (lambda x: to_json(x, f.message)) if f.message else (lambda x: x)
            out[key] = [convert(x) for x in v] if f.repeated else convert(v)
    return out


def round_trip(doc: dict) -> Any:
    return to_json(read(encode_document(doc), PACKAGE + "Document"), PACKAGE + "Document")


# --- the table ------------------------------------------------------------------------------------------------------

def test_table_is_the_gnostic_descriptor():
    assert MESSAGES[PACKAGE + "Document"].fields["definitions"].number == 9
    schema = MESSAGES[PACKAGE + "Schema"].fields
    assert (schema["_ref"].number, schema["type"].message, schema["vendor_extension"].number) == \
           (1, PACKAGE + "TypeItem", 31)
    assert MESSAGES[PACKAGE + "AdditionalPropertiesItem"].fields["boolean"].oneof
    assert MESSAGES[PACKAGE + "Paths"].named.name == "path"
    assert MESSAGES[PACKAGE + "Responses"].named.name == "response_code"
    assert MESSAGES[PACKAGE + "Schema"].named is None  # its additional_properties is a field, not the map


def test_descriptor_ends_where_its_fields_stop():
    name = b"\x0a\x19openapiv2/OpenAPIv2.proto"
    body = name + b"\x12\x0aopenapi.v2" + b"\x62\x06proto3"
    # what follows is another descriptor: its field 1 comes after field 12
    assert raw_descriptor(b"junk" + body + b"\x0a\x05x.pro" + b"\x12\x01x") == body


# --- exact bytes ----------------------------------------------------------------------------------------------------

def test_bytes_of_small_documents():
    assert encode_document({"swagger": "2.0"}) == b"\x0a\x032.0"
    # Definitions(9) { NamedSchema(1) { name(1) "A", value(2) Schema { additional_properties(21) { boolean(2) false }}}}
    schema = b"\xaa\x01\x02\x10\x00"
    named = b"\x0a\x01A" + b"\x12" + bytes([len(schema)]) + schema
    definitions = b"\x0a" + bytes([len(named)]) + named
    assert encode_document({"definitions": {"A": {"additionalProperties": False}}}) == \
           b"\x4a" + bytes([len(definitions)]) + definitions
    # fields in number order whatever the JSON order; proto3 zeros and empty lists left out
    assert encode_document({"host": "h", "swagger": "2.0", "basePath": "", "schemes": []}) == \
           b"\x0a\x032.0\x1a\x01h"
    assert encode_document({"definitions": {"A": {"minItems": 0, "uniqueItems": False}}}) == \
           encode_document({"definitions": {"A": {}}})


def test_vendor_extensions_are_yaml_in_any():
    doc = {"definitions": {"D": {"type": "object", "x-kubernetes-group-version-kind": [
        {"group": "", "kind": "Deployment", "version": "v1"}], "x-kubernetes-list-map-keys": ["y", "name"]}}}
    schema = read(encode_document(doc), PACKAGE + "Document")["definitions"]["additional_properties"][0]["value"]
    assert schema["type"] == {"value": ["object"]}
    gvk, keys = schema["vendor_extension"]
    assert gvk == {"name": "x-kubernetes-group-version-kind",
                   "value": {"yaml": '- group: ""\n  kind: Deployment\n  version: v1\n'}}
    assert keys["value"]["yaml"] == '- "y"\n- name\n'  # y alone is true to a YAML 1.1 reader


@pytest.mark.parametrize("value", [
    "merge", "retainKeys,merge", "", "y", "No", "1e3", "0x1F", "~", "- x", "a: b", "#", "tab\there", "line\nbreak",
    "quote\"back\\slash", "ünï 😀", "nel\x85ls\u2028", 0, -7, 1.5, 1e-05, 1e300, True, False, None, [], {},
    ["a", 1, None], {"k": {"n": [1, {"m": []}]}, "y": "n"}, [[1, 2], [], {}], [{"a": {"b": 1}, "c": [2]}]])
def test_yaml_reads_back_as_the_value(value):
    assert yaml.safe_load(to_yaml(value)) == value


def test_misuse_names_the_place():
    with pytest.raises(EncodeError, match=r"definitions\.D\.required\.1: expected a string, not int"):
        encode_document({"definitions": {"D": {"required": ["a", 1]}}})
    with pytest.raises(EncodeError, match=r"paths\./x\.get\.parameters\.0: no parameter location 'cookie'"):
        encode_document({"paths": {"/x": {"get": {"parameters": [{"name": "c", "in": "cookie"}]}}}})
    with pytest.raises(EncodeError, match=r"definitions\.D\.maxLength: expected an integer, not 1\.5"):
        encode_document({"definitions": {"D": {"maxLength": 1.5}}})


# --- round trips ----------------------------------------------------------------------------------------------------

EVERYTHING = {
    "swagger": "2.0",
    "info": {"title": "T", "version": "v1", "description": "d", "termsOfService": "tos",
             "contact": {"name": "c", "url": "u", "email": "e", "x-c": 1}, "license": {"name": "l", "url": "u"},
             "x-info": {"a": [1, 2]}},
    "host": "example.com", "basePath": "/base", "schemes": ["https"], "consumes": ["application/json"],
    "produces": ["application/json", "application/yaml"],
    "paths": {
        "x-paths": True,
        "/things/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True, "type": "string"},
                           {"$ref": "#/parameters/pretty"}],
            "get": {"tags": ["t"], "summary": "s", "description": "d", "operationId": "readThing",
                    "externalDocs": {"url": "https://docs"}, "produces": ["application/json"],
                    "schemes": ["https"], "deprecated": True, "security": [{"key": []}],
                    "parameters": [{"name": "limit", "in": "query", "type": "integer", "format": "int32",
                                    "minimum": 1, "maximum": 500.5, "exclusiveMaximum": True, "default": 10,
                                    "enum": [10, 100], "multipleOf": 2.5, "collectionFormat": "csv",
                                    "allowEmptyValue": True, "uniqueItems": True, "x-q": "q"},
                                   {"name": "X-Trace", "in": "header", "type": "array",
                                    "items": {"type": "string", "items": {"type": "string"}}, "maxItems": 3},
                                   {"name": "upload", "in": "formData", "type": "file", "description": "f"}],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/Thing"},
                                          "headers": {"X-Rate": {"type": "integer", "format": "int64"}},
                                          "examples": {"application/json": {"name": "a"}}},
                                  "404": {"$ref": "#/responses/NotFound"},
                                  "default": {"description": "file", "schema": {"type": "file"}},
                                  "x-responses": ["r"]},
                    "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": {"group": "things.example.com", "version": "v1",
                                                        "kind": "Thing"}},
            "put": {"parameters": [{"name": "body", "in": "body", "required": True,
                                    "schema": {"$ref": "#/definitions/Thing"}}],
                    "responses": {"201": {"description": "Created"}}},
            "x-path": "p"}},
    "definitions": {
        "Thing": {"type": "object", "title": "Thing", "description": "a thing", "required": ["name"],
                  "discriminator": "kind", "readOnly": True, "minProperties": 1, "maxProperties": 9,
                  "properties": {
                      "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 1, "maxLength": 63,
                               "default": "x", "example": "abc"},
                      "size": {"type": "number", "format": "double", "minimum": -1.5, "exclusiveMinimum": True,
                               "maximum": 1e10},
                      "tags": {"type": "array", "minItems": 1, "maxItems": 4, "uniqueItems": True,
                               "items": {"type": "string", "enum": ["a", "b", None]},
                               "x-kubernetes-list-type": "set"},
                      "pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
                      "labels": {"type": "object", "additionalProperties": {"type": "string"},
                                 "x-kubernetes-map-type": "granular"},
                      "open": {"type": "object", "additionalProperties": True},
                      "closed": {"type": "object", "additionalProperties": False, "properties": {}},
                      "either": {"type": ["string", "integer"]},
                      "mixed": {"allOf": [{"$ref": "#/definitions/Base"}, {"properties": {"k": {"type": "string"}}}]},
                      "spec": {"$ref": "#/definitions/Base", "x-kubernetes-patch-strategy": "retainKeys"},
                      "xml": {"type": "string", "xml": {"name": "n", "namespace": "ns", "prefix": "p",
                                                        "attribute": True, "wrapped": True}},
                      "docs": {"type": "string", "externalDocs": {"description": "d", "url": "u"}}},
                  "x-kubernetes-group-version-kind": [{"group": "things.example.com", "kind": "Thing",
                                                       "version": "v1"}]},
        "Base": {"type": "object"}},
    "parameters": {"pretty": {"name": "pretty", "in": "query", "type": "string"},
                   "body": {"name": "body", "in": "body", "schema": {"type": "object"}}},
    "responses": {"NotFound": {"description": "gone", "schema": {"type": "string"}}},
    "securityDefinitions": {"basic": {"type": "basic"},
                            "key": {"type": "apiKey", "name": "authorization", "in": "header"},
                            "implicit": {"type": "oauth2", "flow": "implicit", "authorizationUrl": "a",
                                         "scopes": {"read": "read things"}},
                            "password": {"type": "oauth2", "flow": "password", "tokenUrl": "t", "scopes": {}},
                            "application": {"type": "oauth2", "flow": "application", "tokenUrl": "t",
                                            "scopes": {}},
                            "code": {"type": "oauth2", "flow": "accessCode", "authorizationUrl": "a",
                                     "tokenUrl": "t", "scopes": {"w": "write"}}},
    "security": [{"key": []}, {"code": ["w"]}],
    "tags": [{"name": "t", "description": "things", "externalDocs": {"url": "u"}, "x-tag": 1}],
    "externalDocs": {"description": "more", "url": "https://more"},
    "x-document": {"nested": [{"deep": None}]},
}


def test_round_trip_of_every_swagger_construct():
    assert round_trip(EVERYTHING) == EVERYTHING


def test_round_trip_of_the_served_document():
    doc = json.loads(OpenAPI(_builtin()).v2())
    back = round_trip(doc)
    for item in doc["paths"].values():  # proto3 has no empty repeated field (nor has gnostic's document)
        for op in item.values():
            if op["parameters"] == []:
                del op["parameters"]
    assert back == doc


def test_round_trip_with_a_custom_resource_drops_v3_words_and_zeros():
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "minimum": 0, "nullable": True},
                            "port": {"x-kubernetes-int-or-string": True,
                                     "anyOf": [{"type": "integer"}, {"type": "string"}]},
                            "any": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}}}]}}
    catalog = _builtin().with_custom(custom_resource(crd))
    doc = json.loads(OpenAPI(catalog).v2())
    widget = doc["definitions"]["com.example.v1.Widget"]["properties"]["spec"]["properties"]
    assert widget["size"].pop("nullable") and widget["port"].pop("anyOf")
    assert widget["size"].pop("minimum") == 0  # a proto3 zero, lost in kube-apiserver's protobuf as well
    back = round_trip(json.loads(OpenAPI(catalog).v2()))
    for item in doc["paths"].values():
        for op in item.values():
            if op["parameters"] == []:
                del op["parameters"]
    assert back == doc


def test_a_custom_schema_swagger_cannot_hold_is_published_open(caplog):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"name": {"type": "string", "maxLength": "3"}}}}}]}}
    openapi = OpenAPI(_builtin().with_custom(custom_resource(crd)))
    body, _ = variant(openapi, MEDIA_TYPE)
    definitions = to_json(read(body, PACKAGE + "Document"), PACKAGE + "Document")["definitions"]
    assert definitions["com.example.v1.Gadget"] == {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Gadget"}]}
    assert "com.example.v1.Gadget.properties.name.maxLength: expected a number, not str" in caplog.text
    assert definitions["com.example.v1.GadgetList"]["properties"]["items"]["items"] == \
           {"$ref": "#/definitions/com.example.v1.Gadget"}


def test_null_is_kept_only_where_any_value_may_stand():
    assert round_trip({"definitions": {"D": {"default": None, "format": None}}}) == \
           {"definitions": {"D": {"default": None}}}


# --- content negotiation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("accept", "answer"), [
    (None, JSON), ("", JSON), ("*/*", JSON), ("application/*", JSON), ("application/json", JSON),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", MEDIA_TYPE),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", MEDIA_TYPE),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json", MEDIA_TYPE),
    ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", MEDIA_TYPE),
    ("*/*, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", MEDIA_TYPE),  # concrete before wildcard
    ("text/html, */*;q=0.1", JSON), ("text/html", None), ("application/yaml", None), ("bogus", None),
])
def test_negotiation_as_kube_openapi(accept, answer):
    assert negotiate(accept) == answer


def test_both_forms_are_computed_once_per_instance_under_one_etag():
    openapi = OpenAPI(_builtin())
    body, etag = variant(openapi, MEDIA_TYPE)
    assert variant(openapi, MEDIA_TYPE)[0] is body
    assert variant(openapi, JSON) == (openapi.v2(), etag)
    assert re.fullmatch(r'"[0-9A-F]{128}"', etag)


# --- the real thing: kubectl 1.27 reads /openapi/v2 only as protobuf ------------------------------------------------

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: pb
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: pb
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        env:
        - {name: A, value: "1"}
      - name: sidecar
        image: busybox
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: pb
data:
  color: blue
"""

needs_kubectl_127 = pytest.mark.skipif(not os.path.exists(kubectl_path("1.27")),
                                       reason="kubectl.1.27 is not installed beside kubectl")


@pytest.mark.slow
@needs_kubectl_127
async def test_kubectl_127_applies_with_the_protobuf_document(api):
    r = await api.kubectl("apply", "-f", "-", "-v=6", input=MANIFEST, version="1.27")
    assert r.code == 0, r.err
    assert "deployment.apps/web created" in r.out and "configmap/settings created" in r.out
    assert re.search(r"GET https://\S+/openapi/v2\?timeout=\w+ 200 OK", r.err), r.err

    changed = MANIFEST.replace("replicas: 2", "replicas: 3").replace('value: "1"', 'value: "2"')
    r = await api.kubectl("apply", "-f", "-", "-v=6", input=changed, version="1.27")
    assert r.code == 0, r.err
    assert "deployment.apps/web configured" in r.out and "configmap/settings unchanged" in r.out
    # fieldValidation found among the PATCH operation's query parameters: the server validates
    assert re.search(r"PATCH https://\S+/deployments/web\?fieldManager=kubectl-client-side-apply"
                     r"&fieldValidation=Strict 200 OK", r.err), r.err
    d = json.loads(await api.ok("get", "deploy", "web", "-n", "pb", "-o", "json", version="1.27"))
    containers = d["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx", "sidecar"] and d["spec"]["replicas"] == 3
    assert containers[0]["env"] == [{"name": "A", "value": "2"}]

    out = await api.ok("apply", "-f", "-", input=changed, version="1.27")
    assert "deployment.apps/web unchanged" in out and "configmap/settings unchanged" in out


@pytest.mark.slow
@needs_kubectl_127
async def test_kubectl_127_explains_from_either_document(api):
    for output in ("plaintext", "plaintext-openapiv2"):
        out = await api.ok("explain", "deployment.spec.strategy", f"--output={output}", version="1.27")
        assert "rollingUpdate" in out and "type" in out, (output, out)
    out = await api.ok("explain", "deployment.spec.strategy.rollingUpdate", "--output=plaintext-openapiv2",
                       version="1.27")
    assert "maxSurge" in out and "maxUnavailable" in out


@pytest.mark.slow
@needs_kubectl_127
async def test_kubectl_127_strict_validation_names_the_unknown_field(api):
    await api.ok("apply", "-f", "-", input=MANIFEST.split("---\n")[0], version="1.27")
    bad = MANIFEST.split("---\n")[2].replace("\ndata:", "\nbogus: 1\ndata:")
    r = await api.kubectl("apply", "--validate=strict", "-f", "-", input=bad, version="1.27")
    assert r.code != 0 and 'unknown field "bogus"' in r.err, r.err


async def _get(api, *, accept: str | None = None, if_none_match: str | None = None) -> tuple[int, bytes, CIMultiDict]:
    headers = {"Authorization": f"Bearer {api.server.admin_token}"}
    headers.update({k: v for k, v in (("Accept", accept), ("If-None-Match", if_none_match)) if v is not None})
    ssl_ctx = ssl.create_default_context(cadata=api.server.pki.ca_pem.decode())
    async with aiohttp.ClientSession(skip_auto_headers=("Accept",)) as session:
        async with session.get(api.url + "/openapi/v2", headers=headers, ssl=ssl_ctx) as resp:
            return resp.status, await resp.read(), resp.headers.copy()


@pytest.mark.slow
async def test_served_forms_and_etags(api):
    status, body, headers = await _get(api, accept="application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert status == 200 and headers["Content-Type"] == MEDIA_TYPE and headers["Vary"] == "Accept"
    status, data, json_headers = await _get(api)
    assert status == 200 and json_headers["Content-Type"] == JSON
    assert body == encode_document(json.loads(data))
    assert headers["ETag"] == json_headers["ETag"]
    status, body, _ = await _get(api, accept=MEDIA_TYPE, if_none_match=headers["ETag"])
    assert (status, body) == (304, b"")
    status, _, _ = await _get(api, accept="text/html")
    assert status == 406
