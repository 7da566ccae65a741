"""The statistics file: `RUN_DIR/stats.safetensors` + `RUN_DIR/manifest.json`.

Tensors (language order = ``manifest["languages"]``):
  count    int64   [K, L, F]  tokens where the neuron's activation is > 0
  sum      float64 [K, L, F]  sum of activations
  sum_sq   float64 [K, L, F]  sum of squared activations
  n_tokens int64   [K]        counted tokens per language
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, read_safetensors, write_json, write_safetensors

STATS_FILE = "stats.safetensors"
MANIFEST_FILE = "manifest.json"
STATS_FORMAT = "langneurons-stats/1"
# Fields that must agree for two runs to be merged or compared neuron by neuron.
COMPATIBLE_FIELDS = ("model", "site", "num_layers", "intermediate_size")


@dataclass
class Stats:
    """Per-language, per-layer, per-neuron activation statistics and how they were made."""

    count: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    n_tokens: torch.Tensor
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return list(self.manifest["languages"])

    @property
    def num_layers(self) -> int:
        return int(self.count.shape[1])

    @property
    def intermediate_size(self) -> int:
        return int(self.count.shape[2])

    def probability(self) -> torch.Tensor:
        """Activation probability p[k, l, j] = count / n_tokens (0 where a language has no tokens)."""
        n = self.n_tokens.clamp(min=1).to(torch.float64).view(-1, 1, 1)
        return self.count.to(torch.float64) / n

    def mean(self) -> torch.Tensor:
        """Mean activation per language [K, L, F] (float64)."""
        n = self.n_tokens.clamp(min=1).to(torch.float64).view(-1, 1, 1)
        return self.sum / n

    def language_index(self, lang: str) -> int:
        try:
            return self.languages.index(lang)
        except ValueError:
            raise LangneuronsError(
                f"language {lang!r} is not in these statistics (have: {','.join(self.languages)})"
            ) from None

    def validate(self) -> None:
        """Check shapes and dtypes against each other and the manifest."""
        k = len(self.manifest.get("languages", []))
        shape = tuple(self.count.shape)
        problems = []
        if self.count.dtype != torch.int64 or self.n_tokens.dtype != torch.int64:
            problems.append("count/n_tokens must be int64")
        if self.sum.dtype != torch.float64 or self.sum_sq.dtype != torch.float64:
            problems.append("sum/sum_sq must be float64")
        if len(shape) != 3 or self.sum.shape != self.count.shape or self.sum_sq.shape != self.count.shape:
            problems.append(f"tensor shapes disagree: {shape}, {tuple(self.sum.shape)}")
        elif shape[0] != k or tuple(self.n_tokens.shape) != (k,):
            problems.append(f"{k} languages in the manifest but tensors hold {shape[0]}")
        elif (self.manifest.get("num_layers"), self.manifest.get("intermediate_size")) != shape[1:]:
            problems.append("manifest num_layers/intermediate_size disagree with the tensors")
        if problems:
            raise LangneuronsError("invalid statistics: " + "; ".join(problems))


def save_stats(run_dir: str | Path, stats: Stats) -> None:
    """Write the tensors, then the manifest (the manifest's presence marks a finished file)."""
    stats.validate()
    run_dir = Path(run_dir)
    manifest = {"format": STATS_FORMAT, **stats.manifest}
    tensors = {"count": stats.count, "sum": stats.sum, "sum_sq": stats.sum_sq, "n_tokens": stats.n_tokens}
    write_safetensors(run_dir / STATS_FILE, tensors, metadata={"format": STATS_FORMAT})
    write_json(run_dir / MANIFEST_FILE, manifest)


def load_stats(run_dir: str | Path) -> Stats:
    """Read and validate a run directory's statistics; one-line errors for anything wrong."""
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.name in (STATS_FILE, MANIFEST_FILE):
        run_dir = run_dir.parent
    stats_path, manifest_path = run_dir / STATS_FILE, run_dir / MANIFEST_FILE
    if not stats_path.exists() or not manifest_path.exists():
        raise LangneuronsError(f"{run_dir} is not a run directory (no {STATS_FILE} and {MANIFEST_FILE})")
    manifest = read_json(manifest_path)
    tensors = read_safetensors(stats_path)
    missing = {"count", "sum", "sum_sq", "n_tokens"} - tensors.keys()
    if missing:
        raise LangneuronsError(f"{stats_path} lacks tensors: {', '.join(sorted(missing))}")
    stats = Stats(tensors["count"], tensors["sum"], tensors["sum_sq"], tensors["n_tokens"], manifest)
    stats.validate()
    return stats


def merge_stats(runs: list[Stats]) -> Stats:
    """Add runs of one model and site: a language in several runs adds up, new languages append."""
    if not runs:
        raise LangneuronsError("nothing to merge")
    base = runs[0].manifest
    for other in runs[1:]:
        for key in COMPATIBLE_FIELDS:
            if other.manifest.get(key) != base.get(key):
                raise LangneuronsError(
                    f"cannot merge runs with different {key}: {base.get(key)!r} vs {other.manifest.get(key)!r}"
                )
    languages: list[str] = []
    for run in runs:
        languages += [lang for lang in run.languages if lang not in languages]
    k, (_, n_layers, n_neurons) = len(languages), tuple(runs[0].count.shape)
    count = torch.zeros(k, n_layers, n_neurons, dtype=torch.int64)
    total = torch.zeros(k, n_layers, n_neurons, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    n_tokens = torch.zeros(k, dtype=torch.int64)
    for run in runs:
        for i, lang in enumerate(run.languages):
            j = languages.index(lang)
            count[j] += run.count[i]
            total[j] += run.sum[i]
            total_sq[j] += run.sum_sq[i]
            n_tokens[j] += run.n_tokens[i]
    manifest = dict(base)
    manifest.pop("format", None)
    manifest["languages"] = languages
    manifest["corpus"] = [run.manifest.get("corpus") for run in runs]
    manifest["corpus_sha256"] = hashlib.sha256(
        "".join(str(run.manifest.get("corpus_sha256")) for run in runs).encode()
    ).hexdigest()
    manifest["merged_from"] = [
        {key: run.manifest.get(key) for key in ("languages", "corpus", "corpus_sha256", "revision")}
        for run in runs
    ]
    return Stats(count, total, total_sq, n_tokens, manifest)
