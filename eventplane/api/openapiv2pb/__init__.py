"""/openapi/v2 as protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).

kubectl asks for the Swagger document only in this form, gnostic's
`openapi.v2.Document` (1.33 too, during apply); 1.27-1.30 cannot apply without
it: they read from it whether the server validates fields and the schema
models they validate and merge with. The /openapi/v2 handler in app.py asks
`negotiate` which form a request accepts and serves `variant`: the JSON of
openapi.OpenAPI.v2() or its protobuf encoding (encode.py), both computed once
per OpenAPI instance, that is once per catalog. The message table is derived
from kubectl at development time (generate.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from .encode import EncodeError, encode_document

if TYPE_CHECKING:
    from ..openapi import OpenAPI

log = logging.getLogger("eventplane.api.openapiv2pb")

JSON = "application/json"
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# What kube-openapi's handler offers, in its order (*/* is JSON), and the Content-Type each is answered with.
_OFFERS = (("application", "json", JSON),
           ("application", "com.github.proto-openapi.spec.v2@v1.0+protobuf", MEDIA_TYPE),
           ("application", "com.github.proto-openapi.spec.v2.v1.0+protobuf", MEDIA_TYPE))


def negotiate(accept: str | None) -> str | None:
    """The Content-Type to answer an Accept header with; None when no offer is acceptable (406).

    As kube-openapi (goautoneg): clauses by q, highest first, a wildcard type or
    subtype after a concrete one of the same q; the first clause that matches an
    offer wins, in the offers' order. Like kube, a clause with q=0 still matches.
    """
    clauses = []
    for position, part in enumerate((accept or "*/*").split(",")):
        media_range, *params = part.strip().split(";")
        kind, slash, subtype = media_range.strip().lower().partition("/")
        if not slash:
            if kind != "*":
                continue
            subtype = "*"
        q = 1.0
        for p in params:
            name, eq, value = p.partition("=")
            if eq and name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        clauses.append((-q, kind == "*", subtype.strip() == "*", position, kind, subtype.strip()))
    for *_, kind, subtype in sorted(clauses):
        for offer_kind, offer_subtype, content_type in _OFFERS:
            if kind in (offer_kind, "*") and subtype in (offer_subtype, "*"):
                return content_type
    return None


_served: WeakKeyDictionary[OpenAPI, dict[str, tuple[bytes, str]]] = WeakKeyDictionary()


def variant(openapi: OpenAPI, content_type: str) -> tuple[bytes, str]:
    """(body, quoted ETag) of one OpenAPI instance's v2 document in `content_type` (JSON or MEDIA_TYPE).

    As kube-apiserver, both forms carry the ETag of the JSON (its SHA-512): the
    response varies by Accept, so one tag names both.
    """
    forms = _served.setdefault(openapi, {})
    if content_type not in forms:
        data = openapi.v2()
        etag = forms[JSON][1] if JSON in forms else f'"{hashlib.sha512(data).hexdigest().upper()}"'
        forms[JSON] = (data, etag)
        if content_type == MEDIA_TYPE:
            forms[MEDIA_TYPE] = (_encode(json.loads(data)), etag)
    return forms[content_type]


def _encode(doc: dict[str, Any]) -> bytes:
    """encode_document, with a definition it cannot encode published as an object of unknown fields.

    Only a custom resource's schema, which arrives as the user wrote it, can hold
    what Swagger's types do not ("maxLength": "3"); kube-apiserver publishes a
    schema that is not structural alike, and kubectl leaves its fields to the server.
    """
    definitions = doc.get("definitions") or {}
    while True:  # ends: a replacement always encodes, and each pass replaces another definition
        try:
            return encode_document(doc)
        except EncodeError as exc:
            where = exc.location
            if len(where) < 2 or where[0] != "definitions" or where[1] not in definitions:
                raise
            name = where[1]
            log.warning("OpenAPI v2 protobuf: definition %s published without its schema: %s", name, exc)
            gvk = {k: v for k, v in definitions[name].items() if k == "x-kubernetes-group-version-kind"}
            definitions[name] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True, **gvk}


__all__ = ["EncodeError", "JSON", "MEDIA_TYPE", "encode_document", "negotiate", "variant"]
