"""codec.decode_body: orjson first, the slow decoder whenever a key was named twice or orjson cannot
be trusted with a value; its answer always equals the slow decoder's (duplicates included)."""
import pytest

from eventplane.api import codec
from eventplane.objects.errors import BadRequestError

BODIES = [
    b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"1"}},"data":{"k":"v"}}',
    b'{"a":1,"a":2}',
    b'{"m":{"b":1,"b":{"c":1,"c":2}}, "l":[{"x":1,"x":1}]}',
    b'{"a":"\\":b", "k":"{\\"a\\":1,\\"a\\":2}"}',  # a key-like text inside strings is no key
    b'{"\\u0061":1,"a":2}',  # the same key, spelled two ways
    b'{"a\\\\":1,"b":"c\\\\"}',
    b'{"a" :1, "b"\n:\n2}',
    b'{"big":18446744073709551616,"neg":-9223372036854775809}',  # orjson would make floats of these
    b'{"f":1e400}', b'{"a":NaN}', b'\xef\xbb\xbf{"a":1}', b'[]', b'"s"', b'{"a":1.5e300}',
    b'{"list":[{"k":[{"x":1}]},{"k":[{"x":1,"x":2}]}]}',
]


def slow(body):
    value = codec.decode(body, codec.JSON)
    return codec.plain(value), codec.duplicate_fields(value)


@pytest.mark.parametrize("body", BODIES)
def test_decode_body_equals_the_slow_decoder(body):
    fast = codec.decode_body(body, codec.JSON)
    assert repr(fast) == repr(slow(body))
    assert type(fast[0]) in (dict, list, str)  # plain values, never the decoder's own dict type


@pytest.mark.parametrize("body,message", [
    (b'{"a":"x\x01"}', "error decoding json body: Invalid control character"),
    (b'{"a":', "error decoding json body: Expecting value"),
    (b"", "the request body is empty"),
])
def test_malformed_bodies_are_worded_by_the_slow_decoder(body, message):
    with pytest.raises(BadRequestError, match=message):
        codec.decode_body(body, codec.JSON)


def test_duplicates_are_reported_with_their_paths():
    _, dups = codec.decode_body(b'{"metadata":{"name":"a","name":"b"},"data":{"x":"1","x":"2"}}', codec.JSON)
    assert dups == ["metadata.name", "data.x"]


def test_keys_are_counted_exactly():
    assert codec._named_keys(b'{"a":"b:","c" : ["d", {"e\\"":1}]}') == 3
