"""Label and annotation rules, and the field errors every validator reports with.

Mirrors apimachinery's util/validation (IsQualifiedName, IsValidLabelValue),
metav1 validation (ValidateLabels) and api/validation (ValidateAnnotations).
Validators in eventplane.objects (meta, selectors) and the API layer's kind
validation build their results with the field-error constructors below, so a
cause reads exactly like a Kubernetes field.Error: `type` is the cause reason
(FieldValueInvalid, ...), `message` is the error body without the field
(`Invalid value: "-bad": name part must ...`), `field` is the path.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import Cause
from .names import dns1123_subdomain

# Cause reasons (metav1.CauseType), one per field.ErrorType.
NOT_FOUND = "FieldValueNotFound"
REQUIRED = "FieldValueRequired"
DUPLICATE = "FieldValueDuplicate"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
INTERNAL = "InternalError"
TYPE_INVALID = "FieldValueTypeInvalid"

_TYPE_TEXT = {
    NOT_FOUND: "Not found", REQUIRED: "Required value", DUPLICATE: "Duplicate value",
    INVALID: "Invalid value", NOT_SUPPORTED: "Unsupported value", FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long", TOO_MANY: "Too many", INTERNAL: "Internal error", TYPE_INVALID: "Invalid value",
}
# field.Error.ErrorBody prints no value for these types.
_VALUELESS = {REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL}

QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile("^" + _QNAME_FMT + "$")
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
              "alphanumeric character")
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_RE = re.compile("^" + _LABEL_VALUE_FMT + "$")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character")


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery's RegexError, double spaces before 'or' included (clients compare the text)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    return msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) + f"regex used for validation is '{fmt}')"


# --- values as field.Error prints them ------------------------------------------------------------

_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v",
               '"': r"\"", "\\": r"\\"}


def go_quote(s: str) -> str:
    """Go's %q: printable characters kept, the rest escaped the way strconv.Quote does."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def format_value(value: Any) -> str:
    """A bad value as field.Error prints it: strings quoted, scalars bare, nil as null.

    Go prints structs with %#v; those carry pointers and cannot be reproduced, so
    maps and lists of non-strings are shown as compact JSON instead.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class _Raw(str):
    """A value already rendered (e.g. Go's `[]string(nil)`); printed as is."""


def raw(text: str) -> Any:
    return _Raw(text)


def error_body(type_: str, value: Any, detail: str) -> str:
    text = _TYPE_TEXT.get(type_, type_)
    if type_ not in _VALUELESS:
        text += ": " + (str(value) if isinstance(value, _Raw) else format_value(value))
    if detail:
        text += ": " + detail
    return text


def field_error(type_: str, field: str, value: Any = None, detail: str = "") -> Cause:
    return Cause(type=type_, message=error_body(type_, value, detail), field=field)


def invalid(field: str, value: Any, detail: str) -> Cause:
    return field_error(INVALID, field, value, detail)


def required(field: str, detail: str = "") -> Cause:
    return field_error(REQUIRED, field, None, detail)


def forbidden(field: str, detail: str) -> Cause:
    return field_error(FORBIDDEN, field, None, detail)


def duplicate(field: str, value: Any) -> Cause:
    return field_error(DUPLICATE, field, value)


def not_found(field: str, value: Any) -> Cause:
    return field_error(NOT_FOUND, field, value)


def not_supported(field: str, value: Any, valid: list[str] | tuple[str, ...] = ()) -> Cause:
    detail = "supported values: " + ", ".join(go_quote(v) for v in valid) if valid else ""
    return field_error(NOT_SUPPORTED, field, value, detail)


def too_long(field: str, max_bytes: int) -> Cause:
    return field_error(TOO_LONG, field, None, f"must have at most {max_bytes} bytes")


def too_many(field: str, actual: int, maximum: int) -> Cause:
    return field_error(TOO_MANY, field, actual, f"must have at most {maximum} items")


def internal(field: str, detail: str) -> Cause:
    return field_error(INTERNAL, field, None, detail)


def error_string(cause: Cause) -> str:
    """The whole field.Error text, `<field>: <body>`, as aggregated messages show it."""
    return f"{cause.field}: {cause.message}"


# --- the rules --------------------------------------------------------------------------------------

# Values known to pass a rule: label keys, annotation keys and label values repeat from object to
# object, and checking one costs a few regular expressions. Bounded: cleared when full.
_VALID_MEMO = 4096
_valid_qualified_names: set[str] = set()
_valid_label_values: set[str] = set()


def _remember(valid: set[str], value: str) -> None:
    if len(valid) >= _VALID_MEMO:
        valid.clear()
    valid.add(value)


def qualified_name(value: str) -> list[str]:
    """IsQualifiedName: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63."""
    if value in _valid_qualified_names:
        return []
    errs = _qualified_name(value)
    if not errs:
        _remember(_valid_qualified_names, value)
    return errs


def _qualified_name(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if not _QNAME_RE.match(name):
        errs.append("name part " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value(value: str) -> list[str]:
    """IsValidLabelValue: empty, or at most 63 characters of the qualified-name alphabet."""
    if value in _valid_label_values:
        return []
    errs = _label_value(value)
    if not errs:
        _remember(_valid_label_values, value)
    return errs


def _label_value(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def validate_label_name(key: str, field: str) -> list[Cause]:
    return [invalid(field, key, msg) for msg in qualified_name(key)]


def validate_labels(labels: Mapping[str, Any] | None, field: str = "metadata.labels") -> list[Cause]:
    """ValidateLabels: every key a qualified name, every value a label value; errors on the map's path."""
    causes: list[Cause] = []
    known_keys, known_values = _valid_qualified_names, _valid_label_values
    for key, value in (labels or {}).items():
        if type(key) is str and type(value) is str and key in known_keys and value in known_values:
            continue  # both already found valid: no cause
        causes += validate_label_name(str(key), field)
        if not isinstance(value, str):
            causes.append(invalid(field, value, "must be a string"))
            continue
        causes += [invalid(field, value, msg) for msg in label_value(value)]
    return causes


def annotations_size(annotations: Mapping[str, Any]) -> int:
    """Bytes counted against the limit: keys plus values, UTF-8 encoded as Go measures len()."""
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())


def validate_annotations(annotations: Mapping[str, Any] | None,
                         field: str = "metadata.annotations") -> list[Cause]:
    """ValidateAnnotations: keys are qualified names in any case; keys and values total at most 256 KiB."""
    causes: list[Cause] = []
    annotations = annotations or {}
    known = _valid_qualified_names
    for key in annotations:
        # Kubernetes lower-cases the key before checking: annotation keys may use upper case anywhere.
        lowered = str(key).lower()
        if lowered not in known:
            causes += [invalid(field, key, msg) for msg in qualified_name(lowered)]
    characters = 0
    for key, value in annotations.items():
        if not isinstance(value, str):
            causes.append(invalid(field, value, "must be a string"))
            characters = -1
        elif characters >= 0 and type(key) is str:
            characters += len(key) + len(value)
        else:
            characters = -1
    # A character is at most 4 bytes of UTF-8: below a quarter of the limit the bytes need no counting.
    if (characters < 0 or characters * 4 > TOTAL_ANNOTATION_SIZE_LIMIT) and \
            annotations_size(annotations) > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT))
    return causes


def format_labels(labels: Mapping[str, str] | None) -> str:
    """labels.FormatLabels: `k=v` sorted by key and joined by ',', or `<none>`."""
    text = ",".join(f"{k}={labels[k]}" for k in sorted(labels or {}))
    return text or "<none>"
