"""Compare two or more runs (model sizes, checkpoints, base vs aligned) on their neuron sets and similarity.

The first run is the baseline; every other run is compared with it. Neuron-by-neuron comparisons (overlap,
class transitions) need equal shapes; depth comparisons use relative depth, so models of different depth
compare too.
"""

from __future__ import annotations

from typing import Any

import torch

from langneurons.analysis.sets import class_distribution, class_transitions, method_overlap
from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.run import Run
from langneurons.version import __version__

COMPARE_FILE = "compare.json"
COMPARE_FORMAT = "langneurons-compare/1"


def depth_histogram(per_layer: list[int] | list[float], bins: int = 10) -> list[float]:
    """Share of neurons in each of ``bins`` equal relative-depth bins (a layer spreads over its bins)."""
    counts = torch.tensor(per_layer, dtype=torch.float64)
    n = counts.numel()
    lo, hi = torch.arange(n) / n, (torch.arange(n) + 1) / n
    blo, bhi = torch.arange(bins) / bins, (torch.arange(bins) + 1) / bins
    span = (torch.minimum(hi[:, None], bhi[None, :]) - torch.maximum(lo[:, None], blo[None, :])).clamp_min(0)
    spread = (span * n) * counts[:, None]  # fraction of each layer in each bin × its neurons
    total = counts.sum()
    return (spread.sum(0) / total).tolist() if total > 0 else [0.0] * bins


def mean_depth(per_layer: list[int] | list[float]) -> float | None:
    """Count-weighted mean relative depth ``(l + 0.5) / L`` of a per-layer profile (None if empty)."""
    counts = torch.tensor(per_layer, dtype=torch.float64)
    total = counts.sum()
    if total <= 0:
        return None
    depth = (torch.arange(counts.numel(), dtype=torch.float64) + 0.5) / counts.numel()
    return float((counts * depth).sum() / total)


def check_languages(runs: list[Run]) -> list[str]:
    """The shared language list (baseline order); one-line error if the runs' languages differ."""
    if len(runs) < 2:
        raise LangneuronsError("compare needs at least two run directories")
    base = runs[0].languages
    for run in runs:
        if not run.languages:
            raise LangneuronsError(f"{run.path} names no languages (no manifest, similarity or neuron set)")
        if set(run.languages) != set(base):
            raise LangneuronsError(
                f"runs have different languages: {runs[0].name} has {','.join(base)}, "
                f"{run.name} has {','.join(run.languages)}"
            )
    return list(base)


def common_sets(runs: list[Run], set_name: str | None = None) -> list[str]:
    """Neuron-set names present in every run (or just ``set_name``, which must be in all)."""
    if set_name is not None:
        missing = [run.name for run in runs if set_name not in run.neuron_sets]
        if missing:
            raise LangneuronsError(f"neuron set {set_name!r} is missing from {', '.join(missing)}")
        return [set_name]
    names = set(runs[0].neuron_sets)
    for run in runs[1:]:
        names &= set(run.neuron_sets)
    return sorted(names)


def set_profile(ns: NeuronSet, bins: int) -> dict[str, Any]:
    """One run's view of a set: counts, relative-depth histograms and mean depth, per language and class."""
    per_class = class_distribution(ns)
    return {
        "method": ns.method,
        "num_layers": ns.num_layers,
        "intermediate_size": ns.intermediate_size,
        "counts": {lang: ns.count(lang) for lang in ns.languages},
        "classes": ns.class_counts(),
        "per_layer": {lang: ns.counts_per_layer(lang) for lang in ns.languages},
        "per_class": per_class,
        "depth_histogram": {lang: depth_histogram(ns.counts_per_layer(lang), bins) for lang in ns.languages},
        "class_depth_histogram": {c: depth_histogram(v, bins) for c, v in per_class.items()},
        "mean_depth": {lang: mean_depth(ns.counts_per_layer(lang)) for lang in ns.languages},
    }


def compare_sets(base: NeuronSet, other: NeuronSet, bins: int) -> dict[str, Any]:
    """Depth shift per language (always) and overlap + class transitions (when shapes agree), on the
    languages both sets cover (the others are listed as left out, never silently dropped)."""
    a, b = set_profile(base, bins), set_profile(other, bins)
    shared = [lang for lang in base.languages if lang in other.languages]
    left_out = sorted(set(base.languages) ^ set(other.languages))
    shift = {}
    for lang in shared:
        da, db = a["mean_depth"][lang], b["mean_depth"][lang]
        ha, hb = torch.tensor(a["depth_histogram"][lang]), torch.tensor(b["depth_histogram"][lang])
        shift[lang] = {
            "mean_depth_shift": None if da is None or db is None else db - da,
            "histogram_l1": float((ha - hb).abs().sum()) / 2 if da is not None and db is not None else None,
            "count_change": b["counts"][lang] - a["counts"][lang],
        }
    out: dict[str, Any] = {
        "languages_compared": shared,
        "languages_left_out": left_out,
        "depth_shift": shift,
        "same_shape": False,
    }
    if (base.num_layers, base.intermediate_size) == (other.num_layers, other.intermediate_size):
        out["same_shape"] = True
        out["overlap"] = method_overlap(base, other)
        out["class_transitions"] = class_transitions(base, other)
    return out


def similarity_curves(run: Run) -> dict[str, Any] | None:
    """LRDS/SADS per layer on relative depth, whole-model values and peaks (None without similarity)."""
    sim = run.similarity
    if not sim or not isinstance(sim.get("per_layer"), dict):
        return None
    per_layer = sim["per_layer"]
    n = len(per_layer.get("lrds") or [])
    return {
        "relative_depth": [(i + 0.5) / n for i in range(n)],
        "lrds": per_layer.get("lrds"),
        "sads": per_layer.get("sads"),
        "whole_model": sim.get("whole_model"),
        "peaks": sim.get("peaks"),
    }


def run_labels(runs: list[Run]) -> list[str]:
    """Short unique names: the directory name, or the whole path where two names collide."""
    names = [run.name for run in runs]
    return [str(run.path) if names.count(run.name) > 1 else run.name for run in runs]


def compare_runs(runs: list[Run], *, set_name: str | None = None, bins: int = 10) -> dict[str, Any]:
    """Everything comparable between ``runs[0]`` (baseline) and each other run, as JSON-ready data."""
    languages = check_languages(runs)
    names = common_sets(runs, set_name)
    labels = run_labels(runs)
    result: dict[str, Any] = {
        "format": COMPARE_FORMAT,
        "languages": languages,
        "bins": bins,
        "runs": [
            {
                "path": str(run.path),
                "name": label,
                **{
                    k: run.info.get(k)
                    for k in (
                        "model",
                        "revision",
                        "site",
                        "num_layers",
                        "intermediate_size",
                        "corpus",
                        "corpus_sha256",
                    )
                },
                "neuron_sets": sorted(run.neuron_sets),
                "ppl": sorted(run.ppl),
                "steer": sorted(run.steer),
            }
            for run, label in zip(runs, labels, strict=True)
        ],
        "sets": {},
        "similarity": {label: similarity_curves(run) for run, label in zip(runs, labels, strict=True)},
        "compared_with": f"langneurons {__version__}",
    }
    for name in names:
        sets = [run.neuron_sets[name] for run in runs]
        result["sets"][name] = {
            "profiles": {label: set_profile(ns, bins) for label, ns in zip(labels, sets, strict=True)},
            "versus_baseline": {
                label: compare_sets(sets[0], ns, bins) for label, ns in zip(labels[1:], sets[1:], strict=True)
            },
        }
    return result


__all__ = ["compare_runs", "run_labels", "compare_sets", "depth_histogram", "mean_depth", "similarity_curves"]
