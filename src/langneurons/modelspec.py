"""What a ``--model`` string names, decided without importing torch (so bad input fails at once)."""

from __future__ import annotations

from pathlib import Path

from langneurons.errors import LangneuronsError

EMBEDDED = "embedded"


def looks_local(spec: str) -> bool:
    """A path rather than a hub id (``./x``, ``../x``, ``/x``, ``~/x``, ``a/b/c``, ``C:\\x``)."""
    return (
        spec.startswith((".", "/", "~", "\\"))
        or spec.count("/") > 1
        or "\\" in spec
        or (len(spec) > 1 and spec[1] == ":")
    )


def check_model_spec(spec: str) -> None:
    """Refuse a model path that does not exist (a ``.gguf`` or a path-looking folder), before any loading."""
    if spec == EMBEDDED or Path(spec).expanduser().exists():
        return
    if spec.endswith(".gguf"):
        raise LangneuronsError(f"GGUF file {spec} does not exist")
    if looks_local(spec):
        raise LangneuronsError(f"model folder {spec} does not exist (give a local model folder, a .gguf or a hub id)")
