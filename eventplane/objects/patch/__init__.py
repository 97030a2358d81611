"""Patching and field ownership, as kube-apiserver does them; pure functions over JSON values.

The API layer turns a PATCH request into a new object with one of
`apply_json_patch`, `apply_merge_patch`, `apply_strategic_merge_patch` or
`server_side_apply`, and records who changed what on every other write with
`update_managed_fields`. Nothing here mutates its inputs or does I/O.
"""
from .apply import LAST_APPLIED, last_applied_configuration, server_side_apply
from .fieldpaths import FieldSet, fieldset, from_fields_v1, path_string, to_fields_v1
from .jsonpatch import apply_json_patch
from .managed import Entry, decode_managed_fields, encode_managed_fields, update_managed_fields
from .mergepatch import apply_merge_patch
from .strategic import apply_strategic_merge_patch
from .strategicdiff import create_three_way_merge_patch, create_two_way_merge_patch

__all__ = [
    "LAST_APPLIED", "Entry", "FieldSet", "apply_json_patch", "apply_merge_patch",
    "apply_strategic_merge_patch", "create_three_way_merge_patch", "create_two_way_merge_patch",
    "decode_managed_fields", "encode_managed_fields", "fieldset", "from_fields_v1",
    "last_applied_configuration", "path_string", "server_side_apply", "to_fields_v1",
    "update_managed_fields",
]
