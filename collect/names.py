"""Names are labels, never paths: the one function that turns a sweep, experiment or run name into a file name.

A name chosen by whoever creates an experiment (on a shared tracking server: anyone) must not decide where a file
is written. ``safe_component`` maps any name to a single path component that cannot leave the folder it is joined
to: no separator, no ``.``/``..``, no leading dot, no control or URI-special character. The name itself stays
intact wherever it is a label (the MLflow experiment and run names, the report's title).

Standard library only: ``analyze`` imports it without loading torch.
"""

from __future__ import annotations

import hashlib
import re

SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")  # everything else (separators, %, spaces, control characters) -> "_"
MAX_LENGTH = 100  # characters kept from the name before the hash suffix (file systems allow 255 bytes)
HASH_DIGITS = 8


def safe_component(name: str) -> str:
    """A single path component for ``name``, equal to ``name`` when it already is a plain one.

    ``name`` is kept as is when it matches ``[A-Za-z0-9._-]+``, does not start with a dot and is at most
    ``MAX_LENGTH`` characters. Otherwise every run of other characters becomes ``_``, leading dots and underscores
    are dropped, the rest is cut to ``MAX_LENGTH`` characters, and ``-<first 8 hex digits of sha256(name)>`` is
    appended, so that two different names never share a component (``a/b`` -> ``a_b-<h1>``, ``a_b`` -> ``a_b``):

        safe_component(name) = name                                  if name is plain
                             = clean(name)[:100] + "-" + sha256(name)[:8]  otherwise

    The empty name and names with nothing left after cleaning (``..``, ``///``) become ``unnamed-<hash>``.
    """
    if not isinstance(name, str):
        raise TypeError(f"safe_component needs a str, got {type(name).__name__}")
    if _plain(name):
        return name
    cleaned = SAFE_CHARS.sub("_", name).lstrip("._")[:MAX_LENGTH].rstrip(".") or "unnamed"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]
    return f"{cleaned}-{digest}"


def _plain(name: str) -> bool:
    return 0 < len(name) <= MAX_LENGTH and not SAFE_CHARS.search(name) and not name.startswith(".")
