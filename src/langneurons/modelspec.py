"""What a ``--model`` string names, decided without importing torch (so bad input fails at once)."""

from __future__ import annotations

import difflib
import functools
import os
import socket
from pathlib import Path

from langneurons.errors import LangneuronsError

EMBEDDED = "embedded"
EMBEDDED_NAME = "gemma-3-270m (Q4_K_M GGUF, embedded)"  # the name result files record for --model embedded
SITES = ("act", "down_in")  # the MLP neuron sites (models/base.py)
DTYPE_NAMES = ("float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")


def dtype_name(dtype: str) -> str:
    """``--dtype`` as one of auto / float32 / bfloat16 / float16 (fp16, bf16, fp32, half accepted), or an error."""
    name = DTYPE_ALIASES.get(dtype.strip().lower(), dtype.strip().lower())
    if name != "auto" and name not in DTYPE_NAMES:
        aliases = ", ".join(DTYPE_ALIASES)
        raise LangneuronsError(f"unknown dtype {dtype!r} (use auto, {', '.join(DTYPE_NAMES)}; or {aliases})")
    return name


def check_device_name(device: str) -> None:
    """``--device`` is auto, cpu, mps, cuda or cuda:N by its form (whether CUDA is there is asked when loading)."""
    kind, _, index = device.partition(":")
    if kind not in DEVICE_TYPES or (index and (kind == "auto" or not index.isdigit())):
        raise LangneuronsError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)")


def looks_local(spec: str) -> bool:
    """A path rather than a hub id (``./x``, ``../x``, ``/x``, ``~/x``, ``a/b/c``, ``C:\\x``)."""
    return (
        spec.startswith((".", "/", "~", "\\"))
        or spec.count("/") > 1
        or "\\" in spec
        or (len(spec) > 1 and spec[1] == ":")
    )


def model_flag(name: str | None) -> str:
    """The ``--model …`` that loads the model a result file names (empty for the embedded one, the default), for
    the pasteable 'next:' commands."""
    import shlex

    if name in (None, "", EMBEDDED, EMBEDDED_NAME):
        return ""
    return f" --model {shlex.quote(str(name))}"


def check_model_spec(spec: str) -> None:
    """Refuse a model path that does not exist (a ``.gguf`` or a path-looking folder), before any loading."""
    if spec == EMBEDDED or Path(spec).expanduser().exists():
        return
    if spec.endswith(".gguf"):
        raise LangneuronsError(f"GGUF file {spec} does not exist")
    if looks_local(spec):
        raise LangneuronsError(f"model folder {spec} does not exist (give a local model folder, a .gguf or a hub id)")


def check_hub_model(spec: str) -> None:
    """A hub id that is neither cached nor reachable (offline, or HF_HUB_OFFLINE) fails in a second or two with a
    suggestion, instead of after the hub client's retries."""
    if spec == EMBEDDED or Path(spec).expanduser().exists() or looks_local(spec) or spec.endswith(".gguf"):
        return
    if _cached(spec) or (not hub_offline() and hub_reachable()):  # the local cache first: no network probe
        return
    why = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub cannot be reached (no network)"
    local = [p.name for p in Path.cwd().iterdir() if p.is_dir() and (p / "config.json").is_file()]
    close = difflib.get_close_matches(spec.rsplit("/", 1)[-1], [EMBEDDED, *local], n=2, cutoff=0.4)
    hint = ", ".join(f"'{c}'" for c in dict.fromkeys([*close, EMBEDDED]))
    raise LangneuronsError(f"model {spec!r} is not in the local cache and {why}: did you mean {hint}?")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: never try the network."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))  # fmt: skip


@functools.cache
def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` s (asked once per process), so a
    mistyped hub id without network fails at once instead of after the hub client's retries."""
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached(spec: str) -> bool:
    """A hub id whose config is already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except Exception:  # noqa: BLE001 - a malformed id or an unreadable cache: not cached
        return False

