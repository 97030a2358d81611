"""The API's per-request shortcuts give exactly the answers of the long way: body decoding's key
count, the remembering router, parse_path's memo, the memo of valid label keys and values, the
schema walk's string leaves, managedFields' string comparison, and the audit row's JSON."""
import asyncio
import json
import warnings

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from eventplane.api import codec, requestinfo
from eventplane.api.app import _Router
from eventplane.objects import labels, meta
from eventplane.objects.errors import NotFoundError
from eventplane.objects.patch.fieldpaths import compare
from eventplane.objects.schema import Catalog
from eventplane.objects.schema.fields import check_fields
from eventplane.api.strategy import schema_node
from eventplane.store.audit import AuditRecord, _jsonb

BODIES = [
    b'{"a":"x:y","a":1}',  # a colon in a string, and a key named twice
    b'{"a":"x:y","b":1}',
    b'{"t":"2026-11-28T08:00:00Z","m":{"k":"v","k":"w"}}',
    b'{"a:b":1,"a:b":2}',  # colons in keys
    b'{"a":"\\u003a","a":2}',  # an escaped colon: the slow way decides
    b'{"a":"\\u003a","b":2}',
    b'{"a" :1,"a":2}',
    b'{"l":[":",{"x":"1","x":":"}]}',
]


@pytest.mark.parametrize("body", BODIES)
def test_decode_body_counts_keys_as_the_slow_decoder_does(body):
    value = codec.decode(body, codec.JSON)
    assert repr(codec.decode_body(body, codec.JSON)) == repr((codec.plain(value), codec.duplicate_fields(value)))


def test_router_answers_as_aiohttp_does_and_remembers_only_matches():
    async def handler(_request):
        return web.Response()

    def app_with(router):
        app = web.Application(router=router) if router is not None else web.Application()
        app.router.add_get("/api/v1", handler)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", handler)
        app.router.add_post("/api/v1/namespaces/{ns}/pods/{name}/exec", handler)
        app.router.add_route("*", "/api/{tail:.+}", handler)
        app.freeze()
        return app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # router= (build_app passes it so too)
        remembering = app_with(_Router())
    plain = app_with(None)
    cases = [("GET", "/api/v1"), ("GET", "/api/v1/namespaces/a/pods/b/log"), ("GET", "/api/v1/namespaces/a/pods/b/exec"),
             ("POST", "/api/v1/namespaces/a/pods/b/exec"), ("PUT", "/api/v1/namespaces/a/configmaps/c"),
             ("GET", "/nothing"), ("DELETE", "/api/v1")]

    async def resolve(app, method, path):
        info = await app.router.resolve(make_mocked_request(method, path, app=app))
        return (info.route.resource.canonical if info.route.resource else None, dict(info),
                getattr(info, "http_exception", None).__class__.__name__)

    async def check():
        for _ in range(2):  # the second time from memory
            for method, path in cases:
                assert await resolve(remembering, method, path) == await resolve(plain, method, path)
        assert ("GET", "/nothing") not in remembering.router._answered
        assert ("PUT", "/api/v1/namespaces/a/configmaps/c") in remembering.router._answered

    asyncio.run(check())


def test_parse_path_remembers_answers_but_not_refusals():
    path = "/api/v1/namespaces/ns/configmaps/name"
    first = requestinfo.parse_path(path)
    assert requestinfo.parse_path(path) is first
    assert first == requestinfo._parse_path(path)
    assert requestinfo.parse_path("/version") is None
    for _ in range(2):
        with pytest.raises(NotFoundError):
            requestinfo.parse_path("/api/v1/namespaces/ns/configmaps/name/status/extra")


def test_label_rules_remember_only_valid_values():
    for _ in range(2):
        assert labels.qualified_name("example.com/app") == []
        assert labels.label_value("v1.2") == []
        assert labels.qualified_name("-bad-") != []
        assert labels.label_value("-bad-") != []
    assert "-bad-" not in labels._valid_qualified_names and "example.com/app" in labels._valid_qualified_names
    labels.qualified_name("example.com/app").append("mutated")  # a caller's list is its own
    assert labels.qualified_name("example.com/app") == []


def test_the_schema_walk_still_refuses_a_wrong_type_where_a_string_belongs():
    info = Catalog.builtin().get("", "v1", "configmaps")
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": 1}},
           "data": {"k": "v", "n": 5}}
    problems = check_fields(obj, schema_node(info), prune=True)
    assert problems.type_errors == [
        "json: cannot unmarshal number into Go struct field metadata.labels.x of type string",
        "json: cannot unmarshal number into Go struct field data.n of type string"]


def test_equal_times_are_the_same_instant_without_parsing():
    assert meta._same_time("2026-11-28T08:00:00Z", "2026-11-28T08:00:00Z")
    assert meta._same_time("not a time", "not a time")
    assert meta._same_time("2026-11-28T08:00:00Z", "2026-11-28T09:00:00+01:00")
    assert not meta._same_time("2026-11-28T08:00:00Z", "2026-11-28T08:00:01Z")
    assert not meta._same_time("", "2026-11-28T08:00:00Z", nullable=True)


def test_string_leaves_compare_as_the_general_walk_does():
    node = schema_node(Catalog.builtin().get("", "v1", "configmaps"))
    old = {"data": {"a": "1", "b": "2", "c": "3"}, "metadata": {"labels": {"x": "1"}}}
    new = {"data": {"a": "1", "b": "changed", "d": "4"}, "metadata": {"labels": {"x": 1}}}
    c = compare(old, new, node)
    assert c.modified == {(("f", "data"), ("f", "b")), (("f", "metadata"), ("f", "labels"), ("f", "x"))}
    assert c.added == {(("f", "data"), ("f", "d"))}
    assert c.removed == {(("f", "data"), ("f", "c"))}


def test_audit_json_is_what_json_dumps_stores():
    for value in ({"a": "é", "b": [1, 2.5, None, True]}, {"x": 2**70}, {1: "non-string key"}, ["b", b"bytes"]):
        assert json.loads(_jsonb(value)) == json.loads(json.dumps(value, default=str))
    record = AuditRecord("id", "ResponseComplete", "Metadata", None, None, "alice", "get", "/api", "allowed",
                         "rest", annotations={"k": "v"})
    assert record.row()[21] == '{"k":"v"}' and record.row()[6] == []


def test_annotations_over_the_limit_are_refused_whatever_their_characters():
    limit = labels.TOTAL_ANNOTATION_SIZE_LIMIT
    assert labels.validate_annotations({"k": "x" * (limit - 1)}) == []
    assert [c.type for c in labels.validate_annotations({"k": "x" * limit})] == ["FieldValueTooLong"]
    # two bytes a character: over the limit in bytes though under it in characters
    assert [c.type for c in labels.validate_annotations({"k": "é" * (limit // 2)})] == ["FieldValueTooLong"]
    assert [c.type for c in labels.validate_annotations({"k": 5, "l": "x" * limit})] == \
        ["FieldValueInvalid", "FieldValueTooLong"]
