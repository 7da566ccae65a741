"""Zhang et al. 2025 activation release → `Stats` of response tokens only.

The release holds, per language, ``activation.<lang>.<model>.pt`` (counts over prompt + response) and
``prefix.activation.<lang>.<model>.pt`` (over the prompt alone): dicts with ``total_tokens`` (int) and
``over_zero`` (int64 ``[L, F]``). Response-token statistics are the differences, clamped at 0; the
release has no activation sums, so ``sum``/``sum_sq`` are zeros and the manifest says so.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.stats import Stats
from langneurons.version import __version__

ZHANG_CORPUS = "zhang2025-mgsm-release"
ZHANG_LANGUAGES = ("en", "ru", "es", "fr", "de", "zh", "ja", "bn", "th", "sw")


def _find(directory: Path, prefix: str, lang: str) -> tuple[Path, str]:
    """The one file ``<prefix>activation.<lang>.<model>.pt`` in ``directory`` and its model tag."""
    pattern = f"{prefix}activation.{lang}.*.pt"
    found = sorted(directory.glob(pattern))
    if not found:
        raise LangneuronsError(f"no {pattern} in {directory}")
    if len(found) > 1:
        raise LangneuronsError(f"several {pattern} in {directory}: {', '.join(p.name for p in found)}")
    tag = found[0].name[len(f"{prefix}activation.{lang}.") : -len(".pt")]
    return found[0], tag


def _read(path: Path) -> tuple[int, torch.Tensor]:
    """``(total_tokens, over_zero)`` of one release file, loaded with weights_only=True."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise LangneuronsError(f"{path} is not a loadable torch file ({first})") from None
    if not isinstance(data, dict) or "total_tokens" not in data or "over_zero" not in data:
        raise LangneuronsError(f"{path} lacks total_tokens/over_zero (not a Zhang et al. activation file)")
    over_zero = data["over_zero"]
    if not isinstance(over_zero, torch.Tensor) or over_zero.dim() != 2 or over_zero.is_floating_point():
        raise LangneuronsError(f"{path}: over_zero is not an integer [layers, neurons] tensor")
    return int(data["total_tokens"]), over_zero.to(torch.int64)


def convert_zhang2025(directory: str | Path, languages: Sequence[str] = ZHANG_LANGUAGES) -> Stats:
    """Response-token statistics from a Zhang et al. 2025 release: count = max(full − prefix, 0)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LangneuronsError(f"no such directory: {directory}")
    languages = [lang.strip() for lang in languages if lang.strip()]
    if not languages:
        raise LangneuronsError("no languages given")
    if len(set(languages)) != len(languages):
        raise LangneuronsError(f"a language is repeated in {','.join(languages)}")
    counts, tokens, files, tags = [], [], [], set()
    digest = hashlib.sha256()
    clamped = 0
    shape: tuple[int, ...] | None = None
    for lang in languages:
        full_path, tag = _find(directory, "", lang)
        prefix_path, prefix_tag = _find(directory, "prefix.", lang)
        tags |= {tag, prefix_tag}
        full_tokens, full = _read(full_path)
        prefix_tokens, prefix = _read(prefix_path)
        if full.shape != prefix.shape or (shape is not None and tuple(full.shape) != shape):
            raise LangneuronsError(f"{full_path.name}: over_zero shapes disagree across files")
        shape = tuple(full.shape)
        diff = full - prefix
        clamped += int((diff < 0).sum())
        counts.append(diff.clamp_min_(0))
        tokens.append(max(full_tokens - prefix_tokens, 0))
        for path in (full_path, prefix_path):
            digest.update(path.read_bytes())
            files.append(path.name)
    if len(tags) != 1:
        raise LangneuronsError(f"the files name different models: {', '.join(sorted(tags))}")
    count = torch.stack(counts)
    num_layers, size = shape or (0, 0)
    manifest: dict[str, Any] = {
        "languages": languages,
        "model": tags.pop(),
        "revision": None,
        "site": "act",
        "num_layers": num_layers,
        "intermediate_size": size,
        "dtype": None,
        "corpus": ZHANG_CORPUS,
        "corpus_sha256": digest.hexdigest(),
        "langneurons_version": __version__,
        "sum_available": False,
        "counted": "response tokens only (full − prefix)",
        "negative_differences_clamped": clamped,
        "converted_from": {"format": "zhang2025", "files": files},
    }
    zeros = torch.zeros(count.shape, dtype=torch.float64)
    return Stats(count, zeros, zeros.clone(), torch.tensor(tokens, dtype=torch.int64), manifest)


__all__ = ["ZHANG_CORPUS", "ZHANG_LANGUAGES", "convert_zhang2025"]
