"""Kubernetes name rules (apimachinery/pkg/util/validation), as pure functions.

Each check returns a list of messages, empty when the value is valid, worded as
Kubernetes words them so that clients comparing text see what they expect.
"""
from __future__ import annotations

import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253

_LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _LABEL_FMT + r"(\." + _LABEL_FMT + r")*"
_LABEL_RE = re.compile("^" + _LABEL_FMT + "$")
_SUBDOMAIN_RE = re.compile("^" + _SUBDOMAIN_FMT + "$")


def dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > DNS1123_LABEL_MAX:
        errors.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _LABEL_RE.match(value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
            f"regex used for validation is '{_LABEL_FMT}')")
    return errors


def dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errors.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _SUBDOMAIN_RE.match(value):
        errors.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', "
            f"regex used for validation is '{_SUBDOMAIN_FMT}')")
    return errors


def path_segment_name(value: str) -> list[str]:
    """The loosest rule: any name that can be one segment of a URL path (RBAC objects use it)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


_DNS1035_FMT = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_RE = re.compile("^" + _DNS1035_FMT + "$")


def dns1035_label(value: str) -> list[str]:
    """The rule for Service names: like a DNS-1123 label, but it must start with a letter."""
    errors = []
    if len(value) > DNS1123_LABEL_MAX:
        errors.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1035_RE.match(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
            f"regex used for validation is '{_DNS1035_FMT}')")
    return errors


def path_segment_prefix(value: str) -> list[str]:
    """path_segment_name for a generateName prefix: '.' and '..' are fine as the start of a name."""
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def mask_trailing_dash(value: str) -> str:
    """What apimachinery checks in place of a generateName prefix that ends in '-'.

    Kubernetes replaces the last *two* characters with 'a' (name[:len-2] + "a"); the
    quirk is kept so that the same prefixes pass and fail.
    """
    if len(value) > 1 and value.endswith("-"):
        return value[:-2] + "a"
    return value
