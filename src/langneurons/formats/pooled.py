"""Pooled sentence vectors: one mean-pooled activation vector per sentence and layer (docs/formats.md).

File pair in a folder (the JSON is written last; its presence marks a finished file):
  pooled.safetensors  ``pooled`` float32/float16 [N, L, F]: mean over the sentence's counted tokens;
                      ``n_tokens`` int64 [N]: counted tokens per sentence (0 → a zero vector)
  pooled.json         row order (``ids``, ``row_languages``), languages, model, site, corpus, settings,
                      versions: row i of ``pooled`` is sentence ``ids[i]`` of language ``row_languages[i]``.

Written by ``recording.pooled.record_pooled``; read by the identification methods on sentences and by
the similarity analysis, which never load a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, read_safetensors, write_json, write_safetensors

POOLED_FILE = "pooled.safetensors"
POOLED_MANIFEST = "pooled.json"
POOLED_FORMAT = "langneurons-pooled/1"


@dataclass
class Pooled:
    """Per-sentence pooled activations ``[N, L, F]`` with the id and language of every row."""

    pooled: torch.Tensor
    ids: list[str]
    row_languages: list[str]
    n_tokens: torch.Tensor
    manifest: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Pooled({len(self.ids)} sentences, {len(self.languages)} languages {','.join(self.languages[:8])}"
            f"{',…' if len(self.languages) > 8 else ''}, {self.num_layers} layers × {self.intermediate_size}, "
            f"site {self.manifest.get('site')})"
        )

    @property
    def languages(self) -> list[str]:
        """Languages in corpus order."""
        return list(self.manifest.get("languages") or dict.fromkeys(self.row_languages))

    @property
    def num_layers(self) -> int:
        return int(self.pooled.shape[1])

    @property
    def intermediate_size(self) -> int:
        return int(self.pooled.shape[2])

    def rows(self, lang: str) -> torch.Tensor:
        """Row indices of ``lang``'s sentences (long tensor)."""
        if lang not in self.languages:
            raise LangneuronsError(
                f"language {lang!r} is not in the pooled file (have: {','.join(self.languages)})"
            )
        return torch.tensor([i for i, x in enumerate(self.row_languages) if x == lang], dtype=torch.long)

    def language_labels(self) -> torch.Tensor:
        """Int64 ``[N]``: index (in ``languages``) of every row's language."""
        index = {lang: k for k, lang in enumerate(self.languages)}
        return torch.tensor([index[x] for x in self.row_languages], dtype=torch.long)

    def validate(self) -> None:
        """Shapes, row bookkeeping and manifest agree."""
        n = self.pooled.shape[0]
        if self.pooled.dim() != 3:
            raise LangneuronsError(f"pooled must be [N, L, F], got shape {tuple(self.pooled.shape)}")
        if len(self.ids) != n or len(self.row_languages) != n or tuple(self.n_tokens.shape) != (n,):
            raise LangneuronsError(
                f"pooled file: {n} rows but {len(self.ids)} ids / {len(self.row_languages)} languages"
            )
        if set(self.row_languages) - set(self.languages):
            raise LangneuronsError("pooled file: a row's language is missing from the manifest's languages")
        pairs = list(zip(self.row_languages, self.ids, strict=True))
        if len(set(pairs)) != len(pairs):
            raise LangneuronsError("pooled file: a (language, sentence id) pair appears twice")


def save_pooled(run_dir: str | Path, pooled: Pooled) -> None:
    """Write the tensors, then the JSON (row order and provenance)."""
    pooled.validate()
    run_dir = Path(run_dir)
    write_safetensors(
        run_dir / POOLED_FILE,
        {"pooled": pooled.pooled, "n_tokens": pooled.n_tokens},
        metadata={"format": POOLED_FORMAT},
    )
    data = {
        "format": POOLED_FORMAT,
        **pooled.manifest,
        "ids": pooled.ids,
        "row_languages": pooled.row_languages,
    }
    write_json(run_dir / POOLED_MANIFEST, data)


def load_pooled(run_dir: str | Path) -> Pooled:
    """Read a run directory's (or a pooled.safetensors path's) pooled activations; one-line errors."""
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.name in (POOLED_FILE, POOLED_MANIFEST):
        run_dir = run_dir.parent
    tensor_path, json_path = run_dir / POOLED_FILE, run_dir / POOLED_MANIFEST
    if not tensor_path.exists() or not json_path.exists():
        raise LangneuronsError(
            f"{run_dir} holds no pooled activations ({POOLED_FILE} + {POOLED_MANIFEST}); "
            "run `langneurons similarity` first"
        )
    data = read_json(json_path)
    tensors = read_safetensors(tensor_path)
    if (
        "pooled" not in tensors
        or not isinstance(data, dict)
        or "ids" not in data
        or "row_languages" not in data
    ):
        raise LangneuronsError(f"{run_dir}: pooled file lacks the 'pooled' tensor or its row order")
    ids, langs = [str(x) for x in data.pop("ids")], [str(x) for x in data.pop("row_languages")]
    n_tokens = tensors.get("n_tokens", torch.ones(len(ids), dtype=torch.int64))
    pooled = Pooled(tensors["pooled"], ids, langs, n_tokens, data)
    pooled.validate()
    return pooled
