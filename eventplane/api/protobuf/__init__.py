"""Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).

kubectl 1.31+ sends built-in kinds in this encoding and has no JSON fallback;
codec.decode hands such bodies to `decode_protobuf`, which returns the object as
its JSON would decode. Responses stay JSON, which every client accepts.
The message table is derived from kubectl at development time (generate.py).
"""
from __future__ import annotations

from .decode import MAGIC, decode_protobuf

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

__all__ = ["MAGIC", "MEDIA_TYPE", "decode_protobuf"]
