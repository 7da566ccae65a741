"""Write-then-rename, so that an interrupted run never leaves a half-written file; reads with one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from langneurons.errors import LangneuronsError


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def user_mode(path: Path) -> None:
    """Give ``path`` the permissions a plain ``open()`` would (0666 minus the umask): a group can read a
    shared runs folder. safetensors writes 0600 files; temporary files may too."""
    os.chmod(path, 0o666 & ~_umask())


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    user_mode(tmp)
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes (e.g. a PNG) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    user_mode(tmp)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Parse a JSON file; a one-line LangneuronsError if it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LangneuronsError(f"{path} is not valid JSON ({str(exc).splitlines()[0]})") from None


def read_safetensors(path: Path) -> dict:
    """Load a safetensors file's tensors; a one-line LangneuronsError if it is truncated or corrupt."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise LangneuronsError(f"{path} is truncated or corrupt: {str(exc).splitlines()[0]}") from None
