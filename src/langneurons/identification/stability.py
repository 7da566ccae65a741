"""How much to trust a neuron set (docs/methods.md §15): bootstrap over shards, data-size curve, threshold grid.

Pure math on recorded counts (never loads a model). A count-based method (``lape``, ``entropy-lambda``)
is rerun on statistics rebuilt from the per-shard counts of ``record --shards S``:

- *bootstrap*: per language, S shards drawn with replacement (seeded); the resampled counts are the
  multiplicity-weighted sum of the shard counts (one batched product per resample). Per neuron and
  language: the share of resamples whose set holds it (selection frequency); per language: the
  Jaccard index of each resample's set with the full-data set; the *stable core* = the neurons whose
  frequency is at least ``threshold`` (0.9), as a neuron set every other command reads.
- *data-size curve*: the method on nested fractions of the shards (the first ⌈f·S⌉ of a seeded random
  order, the same order for every language), Jaccard with the full-data set and set size against the
  counted tokens; at fraction 1 the counts are the totals, so the set is the full-data set.
- *threshold sensitivity*: the method over a grid of its thresholds, overlap with the default set.

entropy−λ: with ``lam="auto"`` (the default) AutoSweep re-chooses λ in every resample (the whole
procedure is bootstrapped, and the chosen λ values are reported); a number fixes λ for all resamples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.shards import Shards
from langneurons.formats.stats import Stats
from langneurons.identification import identify
from langneurons.identification.common import split_layers

COUNT_METHODS = ("lape", "entropy-lambda")
FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
LAPE_TOP_RATES = (0.0025, 0.005, 0.01, 0.02, 0.04)
LAPE_QUANTILES = (0.9, 0.925, 0.95, 0.975, 0.99)  # filter_rate = bar_ratio
LAMBDAS = (0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2)
Progress = Callable[[int], None]


def check_method(method: str) -> str:
    """Only methods that read counts and token totals alone can be rerun on shard counts."""
    key = method.strip().lower().replace("_", "-")
    if key not in COUNT_METHODS:
        raise LangneuronsError(
            f"stability works with the count-based methods {', '.join(COUNT_METHODS)}, not {method!r}"
        )
    return key


# ---- statistics from shards --------------------------------------------------------------------------


class ShardCounts:
    """Per-shard counts as ``[K, S, M]`` in a float type that holds every weighted sum exactly."""

    def __init__(self, shards: Shards) -> None:
        s, k = shards.n_tokens.shape
        self.num_shards, self.num_languages = s, k
        self.shape = tuple(shards.count.shape[1:])
        bound = s * max(int(shards.n_tokens.max()), 1)  # a resampled count is at most S × the largest shard
        self.dtype = torch.float32 if bound < 2**24 else torch.float64
        self.count = shards.count.reshape(s, k, -1).transpose(0, 1).to(self.dtype)  # [K, S, M]
        self.n_tokens = shards.n_tokens.transpose(0, 1).to(torch.int64)  # [K, S]

    def weighted(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Counts [K, L, F] and tokens [K] for integer shard weights [K, S] (multiplicities or 0/1)."""
        w = weights.to(self.dtype).unsqueeze(1)  # [K, 1, S]
        count = torch.bmm(w, self.count).squeeze(1).round_().to(torch.int64).view(self.shape)
        return count, (weights.to(torch.int64) * self.n_tokens).sum(1)


def stats_from_counts(stats: Stats, count: torch.Tensor, n_tokens: torch.Tensor) -> Stats:
    """Count-only statistics with ``stats``' manifest (sums are absent: means raise an error)."""
    empty = torch.zeros(1, dtype=torch.float64).expand(count.shape)
    return Stats(count, empty, empty, n_tokens, {**stats.manifest, "sum_available": False})


def bootstrap_weights(num_languages: int, num_shards: int, resamples: int, seed: int) -> torch.Tensor:
    """Int64 [B, K, S]: how often each shard is drawn in each resample (S draws with replacement per language)."""
    gen = torch.Generator().manual_seed(int(seed))
    draws = torch.randint(num_shards, (resamples, num_languages, num_shards), generator=gen)
    weights = torch.zeros(resamples, num_languages, num_shards, dtype=torch.int64)
    return weights.scatter_add_(2, draws, torch.ones_like(draws))


# ---- sets as masks ---------------------------------------------------------------------------------


def language_masks(ns: NeuronSet) -> torch.Tensor:
    """Bool [K, L·F] (flat, layer-major): each language's neurons."""
    return torch.stack([ns.mask(lang).reshape(-1) for lang in ns.languages])


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a ∩ b| / |a ∪ b| along the last dimension of bool masks (1 where both are empty)."""
    inter = (a & b).sum(-1).to(torch.float64)
    union = (a | b).sum(-1).to(torch.float64)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def _quantiles(values: torch.Tensor) -> dict[str, float | None]:
    if values.numel() == 0:
        return {"mean": None, "p05": None, "p95": None}
    v = values.to(torch.float64)
    q = torch.quantile(v, torch.tensor([0.05, 0.95], dtype=torch.float64))
    return {"mean": float(v.mean()), "p05": float(q[0]), "p95": float(q[1])}


# ---- bootstrap ---------------------------------------------------------------------------------------


@dataclass
class BootstrapResult:
    """Selection frequencies, per-resample Jaccard and sizes, and the summary of a bootstrap."""

    frequency: torch.Tensor  # float32 [K, L, F]: share of successful resamples with the neuron in the language's set
    selected_frequency: torch.Tensor  # float32 [L, F]: share with the neuron selected at all
    jaccard: torch.Tensor  # float64 [B', K] with the full-data set (B' = successful resamples)
    sizes: torch.Tensor  # int64 [B', K]
    summary: dict[str, Any]


def bootstrap(
    stats: Stats,
    shards: Shards,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    resamples: int = 200,
    seed: int = 0,
    threshold: float = 0.9,
    full: NeuronSet | None = None,
    progress: Progress | None = None,
) -> BootstrapResult:
    """Rerun ``method`` on ``resamples`` bootstrap resamples of the shards (per language, with replacement)."""
    method, params = check_method(method), dict(params or {})
    if resamples <= 0:
        raise LangneuronsError(f"--bootstrap must be positive, got {resamples}")
    if not 0.0 < threshold <= 1.0:
        raise LangneuronsError(f"the stable-core threshold must be in (0, 1], got {threshold}")
    full = full or identify(stats, method, **params)
    full_masks, full_selected = language_masks(full), full.selected_mask().reshape(-1)
    counts = ShardCounts(shards)
    weights = bootstrap_weights(counts.num_languages, counts.num_shards, resamples, seed)
    hits = torch.zeros(full_masks.shape, dtype=torch.int32)
    selected_hits = torch.zeros(full_selected.shape, dtype=torch.int32)
    jac, sizes, sel_jac, lambdas, failures = [], [], [], [], []
    for b in range(resamples):
        try:
            ns = identify(stats_from_counts(stats, *counts.weighted(weights[b])), method, **params)
        except LangneuronsError as exc:  # e.g. AutoSweep finds no λ in this resample: counted, reported
            failures.append(str(exc))
        else:
            masks, selected = language_masks(ns), ns.selected_mask().reshape(-1)
            hits += masks
            selected_hits += selected
            jac.append(jaccard(masks, full_masks))
            sel_jac.append(jaccard(selected, full_selected))
            sizes.append(masks.sum(1))
            if "lambda" in ns.params:
                lambdas.append(ns.params["lambda"])
        if progress is not None:
            progress(1)
    done = resamples - len(failures)
    if done == 0:
        raise LangneuronsError(f"the method failed in every resample ({failures[0]})")
    frequency = (hits.to(torch.float64) / done).to(torch.float32).view(-1, stats.num_layers, stats.intermediate_size)
    sel_frequency = (selected_hits.to(torch.float64) / done).to(torch.float32).view(stats.num_layers, -1)
    jac_t, sizes_t = torch.stack(jac), torch.stack(sizes)
    core_hits = math.ceil(threshold * done - 1e-9)
    summary: dict[str, Any] = {
        "resamples": resamples,
        "successful": done,
        "failed": len(failures),
        "failures": sorted(set(failures))[:5],
        "seed": seed,
        "shards": counts.num_shards,
        "threshold": threshold,
        "core_rule": f"selected in at least {core_hits} of {done} resamples (frequency >= {threshold:g})",
        "per_language": {},
        "selected": {
            "full_size": int(full_selected.sum()),
            "jaccard": _quantiles(torch.stack(sel_jac)),
            "core_size": int((selected_hits >= core_hits).sum()),
        },
    }
    for k, lang in enumerate(stats.languages):
        freq_k = hits[k][hits[k] > 0].to(torch.float64) / done
        summary["per_language"][lang] = {
            "full_size": int(full_masks[k].sum()),
            "jaccard": _quantiles(jac_t[:, k]),
            "size": _quantiles(sizes_t[:, k]),
            "core_size": int((hits[k] >= core_hits).sum()),
            "core_in_full": int(((hits[k] >= core_hits) & full_masks[k]).sum()),
            # neurons ever selected for the language, by frequency decile (0-0.1, ..., 0.9-1.0)
            "frequency_histogram": torch.histc(freq_k, bins=10, min=0.0, max=1.0).to(torch.int64).tolist(),
        }
    if lambdas:
        lam = torch.tensor(lambdas, dtype=torch.float64)
        summary["lambda"] = {**_quantiles(lam), "values": lambdas, "full": full.params.get("lambda")}
    summary["jaccard_mean"] = float(jac_t.mean())
    return BootstrapResult(frequency, sel_frequency, jac_t, sizes_t, summary)


def stable_core(result: BootstrapResult, full: NeuronSet, *, source: dict[str, Any] | None = None) -> NeuronSet:
    """The neurons whose bootstrap frequency reaches the threshold, in the neuron-set format.

    ``selected`` = neurons selected (with or without a language) in at least as many resamples, a
    superset of every language's core (a language's neuron is always a selected one).
    """
    s = result.summary
    need = math.ceil(s["threshold"] * s["successful"] - 1e-9)
    hits = (result.frequency.to(torch.float64) * s["successful"]).round().to(torch.int64)
    sel_hits = (result.selected_frequency.to(torch.float64) * s["successful"]).round().to(torch.int64)
    num_layers, size = full.num_layers, full.intermediate_size
    selected = (sel_hits.reshape(-1) >= need).nonzero().squeeze(1)
    neurons = {
        lang: split_layers((hits[k].reshape(-1) >= need).nonzero().squeeze(1), num_layers, size)
        for k, lang in enumerate(full.languages)
    }
    params = {
        "stable_core": {key: s[key] for key in ("threshold", "resamples", "successful", "seed", "shards", "core_rule")},
        "method_params": full.params,
    }
    return NeuronSet(
        languages=list(full.languages),
        num_layers=num_layers,
        intermediate_size=size,
        neurons=neurons,
        selected=split_layers(selected, num_layers, size),
        method=f"{full.method}-stable-core",
        params=params,
        site=full.site,
        model=full.model,
        source={**full.source, **(source or {})},
    )


# ---- data-size curve ---------------------------------------------------------------------------------


def data_size_curve(
    stats: Stats,
    shards: Shards,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    fractions: Sequence[float] = FRACTIONS,
    repeats: int = 5,
    seed: int = 0,
    full: NeuronSet | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Per fraction f: the method on the first ⌈f·S⌉ shards of ``repeats`` seeded random shard orders.

    Orders are nested (a fraction's shards include every smaller fraction's) and shared by all
    languages. Reports per language the Jaccard with the full-data set, the set size and the tokens.
    """
    method, params = check_method(method), dict(params or {})
    fractions = sorted({float(f) for f in fractions})
    if not fractions or fractions[0] <= 0 or fractions[-1] > 1:
        raise LangneuronsError(f"fractions must lie in (0, 1], got {fractions}")
    if repeats <= 0:
        raise LangneuronsError(f"repeats must be positive, got {repeats}")
    full = full or identify(stats, method, **params)
    full_masks = language_masks(full)
    counts = ShardCounts(shards)
    s, k = counts.num_shards, counts.num_languages
    gen = torch.Generator().manual_seed(int(seed))
    orders = [torch.randperm(s, generator=gen) for _ in range(repeats)]
    points = []
    for f in fractions:
        n = min(s, max(1, math.ceil(f * s - 1e-9)))
        jac, sizes, tokens, failed = [], [], [], 0
        for order in orders:
            w = torch.zeros(k, s, dtype=torch.int64)
            w[:, order[:n]] = 1
            count, n_tokens = counts.weighted(w)
            tokens.append(n_tokens)
            try:
                masks = language_masks(identify(stats_from_counts(stats, count, n_tokens), method, **params))
            except LangneuronsError:
                failed += 1
            else:
                jac.append(jaccard(masks, full_masks))
                sizes.append(masks.sum(1))
            if progress is not None:
                progress(1)
            if n == s:  # every order gives the same (full) counts
                break
        point: dict[str, Any] = {"fraction": f, "shards": n, "share": n / s, "failed": failed, "per_language": {}}
        tok = torch.stack(tokens).to(torch.float64)
        for i, lang in enumerate(stats.languages):
            j = torch.stack(jac)[:, i] if jac else torch.zeros(0)
            z = torch.stack(sizes)[:, i] if sizes else torch.zeros(0)
            point["per_language"][lang] = {
                "tokens": float(tok[:, i].mean()),
                "jaccard": {**_range(j)},
                "size": {**_range(z)},
            }
        point["jaccard_mean"] = float(torch.stack(jac).mean()) if jac else None
        points.append(point)
    return {
        "fractions": fractions,
        "repeats": repeats,
        "seed": seed,
        "shards": s,
        "rule": "fraction f = the first ceil(f*S) shards of a seeded random shard order (nested, same order "
        "for every language); Jaccard with the full-data set",
        "full_size": {lang: int(full_masks[i].sum()) for i, lang in enumerate(stats.languages)},
        "points": points,
    }


def _range(values: torch.Tensor) -> dict[str, float | None]:
    if values.numel() == 0:
        return {"mean": None, "min": None, "max": None}
    v = values.to(torch.float64)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


# ---- threshold sensitivity -------------------------------------------------------------------------


def default_grid(method: str) -> list[dict[str, Any]]:
    """LAPE: top_rate × (filter_rate = bar_ratio); entropy−λ: λ (and AutoSweep's own choice)."""
    if check_method(method) == "lape":
        return [{"top_rate": t, "filter_rate": q, "bar_ratio": q} for t in LAPE_TOP_RATES for q in LAPE_QUANTILES]
    return [{"lam": "auto"}] + [{"lam": lam} for lam in LAMBDAS]


def sensitivity(
    stats: Stats,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    grid: Sequence[dict[str, Any]] | None = None,
    full: NeuronSet | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The method at every grid point (``params`` overridden by the point): overlap with the default set.

    Per point: Jaccard per language and its mean, pairs, and the share of the default set's
    (language, neuron) pairs that the point's set keeps (containment).
    """
    method, params = check_method(method), dict(params or {})
    grid = list(grid if grid is not None else default_grid(method))
    full = full or identify(stats, method, **params)
    base = language_masks(full)
    base_pairs = int(base.sum())
    points = []
    for point in grid:
        entry: dict[str, Any] = {"params": {("lambda" if k == "lam" else k): v for k, v in point.items()}}
        try:
            ns = identify(stats, method, **{**params, **point})
        except LangneuronsError as exc:
            entry["error"] = str(exc)
        else:
            masks = language_masks(ns)
            jac = jaccard(masks, base)
            entry.update(
                jaccard={lang: float(jac[i]) for i, lang in enumerate(stats.languages)},
                jaccard_mean=float(jac.mean()),
                pairs=int(masks.sum()),
                distinct=int(masks.any(0).sum()),
                kept=float((masks & base).sum()) / base_pairs if base_pairs else None,
            )
            if "lambda" in ns.params:
                entry["lambda"] = ns.params["lambda"]
        points.append(entry)
        if progress is not None:
            progress(1)
    shown = {k: v for k, v in full.params.items() if not isinstance(v, (dict, list))}
    return {"default": {"params": shown, "pairs": base_pairs}, "points": points}


__all__ = [
    "COUNT_METHODS",
    "BootstrapResult",
    "ShardCounts",
    "bootstrap",
    "bootstrap_weights",
    "data_size_curve",
    "default_grid",
    "jaccard",
    "language_masks",
    "sensitivity",
    "stable_core",
    "stats_from_counts",
]
