"""The statistics file: `RUN_DIR/stats.safetensors` + `RUN_DIR/manifest.json`.

Tensors (language order = ``manifest["languages"]``):
  count    int64   [K, L, F]  tokens where the neuron's activation is > 0
  sum      float64 [K, L, F]  sum of activations
  sum_sq   float64 [K, L, F]  sum of squared activations
  n_tokens int64   [K]        counted tokens per language
Mixture-of-experts runs add (manifest["moe"] says how the neuron axis is laid out):
  routed_tokens      int64   [K, L, E]  counted tokens routed to expert e of layer l
  router_probability float64 [K, L, E]  the router's probability of expert e, summed over counted tokens
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
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # per-language [K, ...] (MoE routing)

    @property
    def languages(self) -> list[str]:
        return list(self.manifest["languages"])

    @property
    def num_layers(self) -> int:
        return int(self.count.shape[1])

    @property
    def intermediate_size(self) -> int:
        return int(self.count.shape[2])

    def denominator(self, condition: str = "unconditional") -> torch.Tensor:
        """Tokens each neuron could fire on, float64 broadcastable to [K, L, F] (at least 1).

        ``unconditional``: n_tokens[k]. ``routed`` (MoE only): a routed expert's neurons divide by the
        tokens routed to that expert; shared experts and dense layers still by n_tokens.
        """
        n = self.n_tokens.clamp(min=1).to(torch.float64).view(-1, 1, 1)
        if condition == "unconditional":
            return n
        if condition != "routed":
            raise LangneuronsError(f"unknown condition {condition!r}; choose unconditional or routed")
        moe = self.manifest.get("moe")
        if not moe or "routed_tokens" not in self.extra:
            raise LangneuronsError("--condition routed needs statistics of a mixture-of-experts model")
        e, f = int(moe["num_experts"]), int(moe["expert_intermediate_size"])
        out = n.expand(*self.count.shape).clone()
        routed = self.extra["routed_tokens"].to(torch.float64).clamp(min=1)  # [K, L, E]
        layers = torch.tensor(moe["moe_layers"], dtype=torch.long)
        out[:, layers, : e * f] = routed[:, layers].repeat_interleave(f, dim=2)
        return out

    def probability(self, condition: str = "unconditional") -> torch.Tensor:
        """Activation probability p[k, l, j] = count / denominator (0 where a language has no tokens)."""
        return self.count.to(torch.float64) / self.denominator(condition)

    def mean(self) -> torch.Tensor:
        """Mean activation per language [K, L, F] (float64): over the tokens each neuron is computed on
        (all counted tokens; for a routed MoE expert, the tokens routed to it — where an edit acts)."""
        condition = "routed" if "routed_tokens" in self.extra and self.manifest.get("moe") else "unconditional"
        return self.sum / self.denominator(condition)

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
        for name, tensor in self.extra.items():
            if tensor.dim() < 1 or tensor.shape[0] != k:
                problems.append(f"{name} must have one row per language")
        if problems:
            raise LangneuronsError("invalid statistics: " + "; ".join(problems))


def save_stats(run_dir: str | Path, stats: Stats) -> None:
    """Write the tensors, then the manifest (the manifest's presence marks a finished file)."""
    stats.validate()
    run_dir = Path(run_dir)
    manifest = {"format": STATS_FORMAT, **stats.manifest}
    tensors = {"count": stats.count, "sum": stats.sum, "sum_sq": stats.sum_sq, "n_tokens": stats.n_tokens}
    tensors.update(stats.extra)
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
    extra = {k: v for k, v in tensors.items() if k not in ("count", "sum", "sum_sq", "n_tokens")}
    stats = Stats(tensors["count"], tensors["sum"], tensors["sum_sq"], tensors["n_tokens"], manifest, extra)
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
    names = set(runs[0].extra)
    if any(set(run.extra) != names for run in runs):
        raise LangneuronsError("cannot merge runs with different tensors (e.g. routing statistics in only some)")
    extra = {n: torch.zeros((k, *t.shape[1:]), dtype=t.dtype) for n, t in runs[0].extra.items()}
    for run in runs:
        for i, lang in enumerate(run.languages):
            j = languages.index(lang)
            count[j] += run.count[i]
            total[j] += run.sum[i]
            total_sq[j] += run.sum_sq[i]
            n_tokens[j] += run.n_tokens[i]
            for n in extra:
                extra[n][j] += run.extra[n][i]
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
    return Stats(count, total, total_sq, n_tokens, manifest, extra)
