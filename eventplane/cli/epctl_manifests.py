"""Manifests from `-f`: files, directories (`-R` to descend) and `-` for stdin, each
multi-document YAML or JSON, `kind: List` expanded into its items.

Feeds `epctl apply` and `epctl delete -f` with (source, object) pairs in the
order they appear, which is the order kubectl applies them in.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXTENSIONS = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """A manifest that cannot be read or parsed; the message names the file."""


@dataclass(frozen=True)
class Manifest:
    source: str
    object: dict[str, Any]


def read_manifests(names: list[str], *, recursive: bool = False) -> list[Manifest]:
    out: list[Manifest] = []
    for name in names:
        if name == "-":
            out.extend(_parse(sys.stdin.read(), "STDIN"))
            continue
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in (path.rglob("*") if recursive else path.iterdir())
                           if p.is_file() and p.suffix in EXTENSIONS)
            for f in files:
                out.extend(_parse(_read(f), str(f)))
        elif path.exists():
            out.extend(_parse(_read(path), str(path)))
        else:
            raise ManifestError(f'the path "{name}" does not exist')
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"error reading {path}: {exc.strerror}") from None


def _parse(text: str, source: str) -> list[Manifest]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"error parsing {source}: {exc}") from None
    out = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"error parsing {source}: a document is not an object")
        if doc.get("kind") == "List" or (doc.get("kind", "").endswith("List") and "items" in doc):
            out.extend(Manifest(source, item) for item in doc.get("items") or [] if isinstance(item, dict))
        else:
            out.append(Manifest(source, doc))
    return out
