"""How much to trust a neuron set (docs/methods.md §15): bootstrap over shards, data-size curve, threshold grid.

Pure math on recorded counts (never loads a model). A count-based method (``lape``, ``entropy-lambda``)
is rerun on statistics rebuilt from the per-shard counts of ``record --shards S``:

- *resampling plan*: on a parallel corpus (the languages counted the same sentence ids, in the same
  order, so shard s of every language holds the same sentences under the shard rule) one draw is shared
  by all languages (*paired*): independent draws would compare language A on some documents with
  language B on others, and topic differences would pass for language differences. Otherwise each
  language draws on its own (*independent*). `resampling_plan` decides from the run's manifest.
- *bootstrap*: S shards drawn with replacement (seeded; per the plan); the resampled counts are the
  multiplicity-weighted sum of the shard counts (one batched product per resample). Per neuron and
  language: the share of resamples whose set holds it (selection frequency); per language: the
  Jaccard index of each resample's set with the full-data set; the *stable core* = the neurons whose
  frequency is at least ``threshold`` (0.9), as a neuron set every other command reads.
- *split halves*: R seeded random splits of the shards into two disjoint halves; per language the
  Jaccard index between the sets the two halves give, and a Spearman–Brown-style extrapolation to the
  full data, J_full ≈ 2J/(1+J) (an approximation: Jaccard is not a correlation coefficient).
- *data-size curve* (secondary view): the method on nested fractions of the shards (the first ⌈f·S⌉ of a seeded random
  order, the same order for every language), Jaccard with the full-data set and set size against the
  counted tokens; at fraction 1 the counts are the totals, so the set is the full-data set. The subsets
  are nested inside the full data, so the curve must reach 1: it shows how fast a subset approaches the
  full-data set, not how reproducible the full-data set is.
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
from langneurons.formats.shards import SHARD_RULE, Shards
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


def bootstrap_weights(
    num_languages: int, num_shards: int, resamples: int, seed: int, *, paired: bool = False
) -> torch.Tensor:
    """Int64 [B, K, S]: how often each shard is drawn in each resample (S draws with replacement).

    ``paired``: one draw per resample shared by every language (parallel corpora); else one per language.
    """
    gen = torch.Generator().manual_seed(int(seed))
    draws = torch.randint(num_shards, (resamples, 1 if paired else num_languages, num_shards), generator=gen)
    weights = torch.zeros(draws.shape, dtype=torch.int64).scatter_add_(2, draws, torch.ones_like(draws))
    return weights.expand(resamples, num_languages, num_shards).contiguous()


# ---- paired or independent resampling ----------------------------------------------------------------

RESAMPLING_MODES = ("auto", "paired", "independent")


def resampling_plan(manifest: dict[str, Any], mode: str = "auto") -> dict[str, str]:
    """``{"mode": "paired" | "independent", "reason": ...}`` for a run's manifest.

    ``auto``: paired when the corpus is parallel in the shards — every language counted the same sentence
    ids in the same order (manifest ``sentence_ranges`` identical) and the shards follow the fixed rule
    (sentence i of n in shard floor(i*S/n)), so shard s holds the same sentences in every language.
    ``paired`` / ``independent`` force the mode (the reason says so).
    """
    key = mode.strip().lower()
    if key not in RESAMPLING_MODES:
        raise LangneuronsError(f"--resampling must be one of {', '.join(RESAMPLING_MODES)}, got {mode!r}")
    if key != "auto":
        return {"mode": key, "reason": f"forced ({key})"}
    langs = list(manifest.get("languages") or [])
    ranges = manifest.get("sentence_ranges") or {}
    rule = (manifest.get("shards") or {}).get("rule") if isinstance(manifest.get("shards"), dict) else None
    if len(langs) < 2:
        return {"mode": "independent", "reason": "fewer than two languages"}
    if any(lang not in ranges for lang in langs):
        return {"mode": "independent", "reason": "the manifest lists no sentence ids (sentence_ranges) per language"}
    first = ranges[langs[0]]
    if any(ranges[lang] != first for lang in langs[1:]):
        return {"mode": "independent", "reason": "the languages counted different sentence ids (not parallel)"}
    if rule != SHARD_RULE:
        return {"mode": "independent", "reason": f"shard rule {rule!r} does not assign shards by sentence position"}
    return {
        "mode": "paired",
        "reason": "parallel corpus: every language counted the same sentence ids in the same order, so shard s "
        "holds the same sentences in every language (one draw shared by all languages)",
    }


def _plan(stats: Stats, resampling: str | dict[str, str]) -> dict[str, str]:
    return dict(resampling) if isinstance(resampling, dict) else resampling_plan(stats.manifest, resampling)


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
    resampling: str | dict[str, str] = "auto",
    progress: Progress | None = None,
) -> BootstrapResult:
    """Rerun ``method`` on ``resamples`` bootstrap resamples of the shards (with replacement).

    ``resampling``: ``auto`` (paired on a parallel corpus, see `resampling_plan`), ``paired``,
    ``independent``, or a plan from `resampling_plan`."""
    method, params = check_method(method), dict(params or {})
    if resamples <= 0:
        raise LangneuronsError(f"--bootstrap must be positive, got {resamples}")
    if not 0.0 < threshold <= 1.0:
        raise LangneuronsError(f"the stable-core threshold must be in (0, 1], got {threshold}")
    full = full or identify(stats, method, **params)
    full_masks, full_selected = language_masks(full), full.selected_mask().reshape(-1)
    counts = ShardCounts(shards)
    plan = _plan(stats, resampling)
    paired = plan["mode"] == "paired"
    weights = bootstrap_weights(counts.num_languages, counts.num_shards, resamples, seed, paired=paired)
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
        "resampling": plan["mode"],
        "resampling_reason": plan["reason"],
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


# ---- split halves -------------------------------------------------------------------------------------

SPLIT_HALF_RULE = (
    "each split: a seeded random permutation of the S shards; half A = its first floor(S/2) shards, half B = "
    "the next floor(S/2) (disjoint; with odd S one shard is left out); Jaccard between the sets of A and B"
)
EXTRAPOLATION = (
    "Spearman-Brown-style: J_full = 2J / (1 + J), as for a reliability coefficient from half-length tests; "
    "an approximation (the Jaccard index is not a correlation), read it as a rough full-size estimate"
)


def spearman_brown(j: float | torch.Tensor, factor: float = 2.0) -> float | torch.Tensor:
    """Agreement at ``factor`` times the data from agreement ``j`` (J_full = 2J/(1+J) for factor 2)."""
    return factor * j / (1 + (factor - 1) * j)


def split_half_weights(
    num_languages: int, num_shards: int, splits: int, seed: int, *, paired: bool = False
) -> torch.Tensor:
    """Int64 0/1 [R, 2, K, S]: per split two disjoint halves of floor(S/2) shards (odd S: one left out).

    ``paired``: one permutation per split shared by every language; else one per language.
    """
    if num_shards < 2:
        raise LangneuronsError(f"split halves need at least 2 shards, got {num_shards}")
    gen = torch.Generator().manual_seed(int(seed))
    half = num_shards // 2
    draws = 1 if paired else num_languages
    weights = torch.zeros(splits, 2, draws, num_shards, dtype=torch.int64)
    for r in range(splits):
        for k in range(draws):
            perm = torch.randperm(num_shards, generator=gen)
            weights[r, 0, k, perm[:half]] = 1
            weights[r, 1, k, perm[half : 2 * half]] = 1
    return weights.expand(splits, 2, num_languages, num_shards).contiguous()


def split_half(
    stats: Stats,
    shards: Shards,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    splits: int = 50,
    seed: int = 0,
    resampling: str | dict[str, str] = "auto",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Reproducibility of the set: the method on two disjoint halves of the shards, ``splits`` random splits.

    Per language: the Jaccard index between the two halves' sets (mean, 5–95 % over splits), its
    Spearman–Brown-style extrapolation to the full data (`spearman_brown`), the halves' set sizes and tokens.
    Unlike the data-size curve, the two sets share no data, so agreement is not built in.
    """
    method, params = check_method(method), dict(params or {})
    if splits <= 0:
        raise LangneuronsError(f"--split-half must be positive, got {splits}")
    counts = ShardCounts(shards)
    plan = _plan(stats, resampling)
    weights = split_half_weights(counts.num_languages, counts.num_shards, splits, seed, paired=plan["mode"] == "paired")
    jac, sizes, tokens, failures = [], [], [], []
    for r in range(splits):
        try:
            halves = []
            for h in range(2):
                count, n_tokens = counts.weighted(weights[r, h])
                tokens.append(n_tokens)
                halves.append(language_masks(identify(stats_from_counts(stats, count, n_tokens), method, **params)))
        except LangneuronsError as exc:
            failures.append(str(exc))
        else:
            jac.append(jaccard(halves[0], halves[1]))
            sizes.append(torch.stack([m.sum(1) for m in halves]).to(torch.float64).mean(0))
        if progress is not None:
            progress(1)
    if not jac:
        raise LangneuronsError(f"the method failed in every split half ({failures[0]})")
    jac_t, sizes_t, tok_t = torch.stack(jac), torch.stack(sizes), torch.stack(tokens).to(torch.float64)
    per: dict[str, Any] = {}
    for k, lang in enumerate(stats.languages):
        q = _quantiles(jac_t[:, k])
        per[lang] = {
            "jaccard": q,
            "extrapolated": {key: None if v is None else float(spearman_brown(v)) for key, v in q.items()},
            "size": _quantiles(sizes_t[:, k]),
            "tokens_half": float(tok_t[:, k].mean()),
            "tokens_full": int(stats.n_tokens[k]),
            "values": [round(float(x), 6) for x in jac_t[:, k]],
        }
    mean = float(jac_t.mean())
    return {
        "splits": splits,
        "successful": len(jac),
        "failed": len(failures),
        "failures": sorted(set(failures))[:5],
        "seed": seed,
        "shards": counts.num_shards,
        "shards_per_half": counts.num_shards // 2,
        "resampling": plan["mode"],
        "resampling_reason": plan["reason"],
        "rule": SPLIT_HALF_RULE,
        "extrapolation": EXTRAPOLATION,
        "per_language": per,
        "jaccard_mean": mean,
        "extrapolated_mean": float(spearman_brown(mean)),
    }


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
    A secondary view: the subsets are nested in the full data, so the curve reaches 1 by construction
    and its rise says nothing about reproducibility (`split_half` measures that).
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
        "for every language); Jaccard with the full-data set. Nested in the full data, so it reaches 1 by "
        "construction: it shows how fast subsets approach the full-data set, not how reproducible that set is",
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
    "EXTRAPOLATION",
    "RESAMPLING_MODES",
    "SPLIT_HALF_RULE",
    "BootstrapResult",
    "ShardCounts",
    "bootstrap",
    "bootstrap_weights",
    "resampling_plan",
    "spearman_brown",
    "split_half",
    "split_half_weights",
    "data_size_curve",
    "default_grid",
    "jaccard",
    "language_masks",
    "sensitivity",
    "stable_core",
    "stats_from_counts",
]
