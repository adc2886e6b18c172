"""spikessm's JSON documents (a run's config.json, a shared model's config.json): read, checked to be of their
kind and not from a newer spikessm, each failure an error naming the file."""
from __future__ import annotations

import json
from pathlib import Path


def read_document(path: Path, *, kind_key: str, kind: str, version_key: str, version: int, what: str,
                  error: type[Exception] = ValueError) -> dict:
    """The JSON object in `path`, whose `kind_key` must be `kind` and whose integer `version_key` must be at most
    `version`; `error(message)` otherwise, the message naming the file (`what` says what it should be)."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"{path} cannot be read as JSON ({problem})") from None
    if not isinstance(document, dict) or document.get(kind_key) != kind:
        raise error(f"{path} is not {what} (no \"{kind_key}\": \"{kind}\")")
    found = document.get(version_key)
    if isinstance(found, bool) or not isinstance(found, int) or found > version:
        raise error(f"{path} was written by a newer spikessm ({version_key} {found!r})")
    return document
