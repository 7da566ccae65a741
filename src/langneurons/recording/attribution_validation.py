"""Trust the estimate: exact ablation of sampled units beside their attribution (docs/methods.md §17).

Per unit type, N units are sampled (half the top-scored — largest estimated zero-ablation effect on any
language — half uniformly among the rest, seeded); each is ablated alone (zeroed, and replaced by its
mean on the other languages) at every position, and each language's mean NLL is measured exactly.
Agreement over the (unit, language) pairs: Spearman's ρ between estimate and exact effect, and, on the
pairs with the largest exact effects, the absolute and relative error (first-order estimates fail where
effects saturate; the relative error shows it).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from langneurons.data import Corpus
from langneurons.formats.attribution import Attribution
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.recording.attribution import AttributionSettings, Sites, batch_nll, block_columns, corpus_batches
from langneurons.recording.distributed import World, sum_across


def rank(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 with ties averaged (as scipy's rankdata, minus one)."""
    x = x.double().reshape(-1)
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(x.numel(), dtype=torch.float64)
    _, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1 if x.numel() else 0, dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.bincount(inverse).double()
    return (sums / counts)[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Spearman's rank correlation (None when either side is constant or there are < 3 points)."""
    if a.numel() < 3:
        return None
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return None if denom == 0 else float((ra * rb).sum()) / denom


def agreement(estimate: torch.Tensor, exact: torch.Tensor, largest: int | None = None) -> dict[str, Any]:
    """Spearman over all pairs; errors on the ``largest`` pairs by |exact| (default: a tenth, at least 3).
    Medians of an even count average the two middle values."""
    estimate, exact = estimate.double().reshape(-1), exact.double().reshape(-1)
    n = exact.numel()
    m = min(n, largest or max(3, math.ceil(n / 10)))
    top = exact.abs().argsort(descending=True)[:m]
    err = (estimate[top] - exact[top]).abs()
    rel = err / exact[top].abs().clamp(min=1e-12)
    return {
        "spearman": spearman(estimate, exact),
        "pairs": n,
        "largest": {
            "pairs": m,
            "mean_abs_error": float(err.mean()) if m else None,
            "median_relative_error": float(rel.quantile(0.5)) if m else None,
            "median_ratio": float((estimate[top] / exact[top].where(exact[top] != 0, 1e-12)).quantile(0.5))
            if m else None,
        },
    }


def sample_units(result: Attribution, unit: str, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` (layer, index) units: half the top-scored (largest zero-ablation estimate on any language),
    half uniformly among the other candidates."""
    scores = result.scores(unit).amax(0)
    cand = result.existing(unit)
    flat = scores.masked_fill(~cand, -math.inf).reshape(-1)
    n = min(n, int(cand.sum()))
    n_top = n // 2 + n % 2
    top = flat.argsort(descending=True)[:n_top]
    rest = cand.reshape(-1).clone()
    rest[top] = False
    pool = rest.nonzero().reshape(-1)
    gen = torch.Generator().manual_seed(int(seed))
    rand = pool[torch.randperm(pool.numel(), generator=gen)[: n - n_top]]
    width = scores.shape[1]
    return [(int(i) // width, int(i) % width) for i in torch.cat([top, rand])]


def _edit(unit: str, layer: int, index: int, value: torch.Tensor | float):
    def edit(kind: str, lyr: int, x: torch.Tensor, rows) -> torch.Tensor | None:
        if lyr != layer:
            return None
        if kind == "heads":
            new = x.clone()
            new[..., index, :] = torch.as_tensor(value, dtype=x.dtype, device=x.device)
            return new
        start, width, groups = block_columns(rows, x)
        w = x.shape[1]
        if unit == "experts":
            if rows.groups is None or start != 0:  # a shared expert or dense block: not a routed expert
                return None
            new = x.clone()
            sel = groups == index
            new[sel] = torch.as_tensor(value, dtype=x.dtype, device=x.device).expand(int(sel.sum()), w)
            return new
        if not start <= index < start + width:
            return None
        group, j = divmod(index - start, w)
        new = x.clone()
        sel = groups == group
        new[sel, j] = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        return new

    return edit


def _mean_value(result: Attribution, unit: str, layer: int, index: int, k: int) -> torch.Tensor:
    """The unit's replacement for language k's mean ablation: the mean of the others' means."""
    others = [lang for j, lang in enumerate(result.languages) if j != k]
    if unit == "heads":
        return torch.stack([result.tensors[f"activation_mean.heads.{o}"][layer, index] for o in others]).mean(0)
    means = torch.stack([result.tensors[f"activation_mean.neurons.{o}"][layer] for o in others]).mean(0)
    if unit == "experts":
        f = result.meta["layout"]["moe"]["expert_intermediate_size"]
        return means[index * f : (index + 1) * f]
    return means[index]


def validate_attribution(loaded: LoadedModel, corpus: Corpus, result: Attribution, s: AttributionSettings,
                         *, progress: bool = True, world: World | None = None) -> dict[str, Any]:  # fmt: skip
    """Exact ablation of ``s.validate`` sampled units per unit type beside the estimates (see the module).

    Under torchrun (``world`` of several processes) rank r ablates sampled units r, r + size, …; the exact
    effects are added across ranks (each entry is computed by one rank, the others add zeros: the same numbers
    as one process). Every rank returns the same result."""
    world = world or World()
    max_length = result.meta["provenance"]["settings"]["max_length"]
    batches = {lang: list(corpus_batches(loaded, corpus, lang, s, max_length)) for lang in corpus.languages}
    langs = corpus.languages
    kinds = [k for k in s.validate_ablations if k == "zero" or len(langs) > 1]

    def mean_nll(lang: str, sites: Sites | None) -> float:
        total, tokens = 0.0, 0
        for batch in batches[lang]:
            if sites is None:
                loss, n = batch_nll(loaded, batch)
            else:
                with sites:
                    loss, n = batch_nll(loaded, batch)
            total, tokens = total + float(loss), tokens + n
        return total / max(tokens, 1)

    samples = {unit: sample_units(result, unit, s.validate, s.seed) for unit in s.units}
    n_forwards = sum(len(v) for v in samples.values()) * len(langs) * len(kinds)
    out: dict[str, Any] = {}
    bar = progress_bar(progress and world.is_main, "ablations")
    with bar, torch.no_grad():
        task = bar.add_task("exact ablation", total=n_forwards + len(langs))
        base = {}
        for lang in langs:
            base[lang] = mean_nll(lang, None)
            bar.advance(task)
        for unit, units in samples.items():
            exact = {kind: torch.zeros(len(units), len(langs), dtype=torch.float64) for kind in kinds}
            for u, (layer, index) in enumerate(units):
                if u % world.size != world.rank:  # another rank's unit
                    bar.advance(task, len(langs) * len(kinds))
                    continue
                bar.update(task, description=f"exact ablation: {unit} {layer}:{index}")
                for k, lang in enumerate(langs):
                    for kind in kinds:
                        value = 0.0 if kind == "zero" else _mean_value(result, unit, layer, index, k)
                        edit = _edit(unit, layer, index, value)
                        neurons = [layer] if unit != "heads" else None
                        sites = Sites(loaded, s.site, neurons, [layer] if unit == "heads" else None, edit=edit,
                                      capture=False)  # fmt: skip
                        exact[kind][u, k] = mean_nll(lang, sites) - base[lang]
                        bar.advance(task)
            sum_across(list(exact.values()), world)
            entry: dict[str, Any] = {"units": [[layer, index] for layer, index in units],
                                     "top_scored": len(units) // 2 + len(units) % 2}  # fmt: skip
            for kind in kinds:
                name = result.meta["method"] if kind == "zero" else "patching"  # mean ablation: first order
                est = {name: torch.stack([result.score(unit, lang, kind)[[lyr for lyr, _ in units],
                                                                                [i for _, i in units]]
                                                for lang in langs], dim=1).double()}  # fmt: skip
                if kind == "zero" and result.meta["method"] == "ig":
                    est["patching"] = torch.stack([result.tensors[f"patching.{unit}.{lang}"][
                        [lyr for lyr, _ in units], [i for _, i in units]] for lang in langs], dim=1).double()
                entry[kind] = {
                    "exact": exact[kind].tolist(),
                    **{name: e.tolist() for name, e in est.items()},
                    "agreement": {name: agreement(e, exact[kind]) for name, e in est.items()},
                }
            out[unit] = entry
    return {
        "languages": langs,
        "baseline_nll": base,
        "per_unit": out,
        "method": "each sampled unit ablated alone at every position (zero, and its mean on the other languages); "
        "exact = that language's mean NLL with the ablation minus without (nats per token)",
        "sampling": "half the top-scored units (largest zero-ablation estimate on any language), half uniformly "
        "among the others; seeded",
        "agreement": "Spearman's rho over (unit, language) pairs; 'largest': the pairs with the largest |exact| "
        "effect (a tenth, at least 3): mean |estimate - exact|, median |estimate - exact| / |exact|, median "
        "estimate / exact",
    }


def validation_table(validation: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (unit type, ablation, estimator): the numbers a reader compares."""
    rows = []
    for unit, entry in validation["per_unit"].items():
        for kind in ("zero", "mean"):
            if kind not in entry:
                continue
            for name, agr in entry[kind]["agreement"].items():
                rows.append({"unit": unit, "ablation": kind, "estimator": name, "units": len(entry["units"]),
                             "pairs": agr["pairs"], "spearman": agr["spearman"], **{
                                 f"largest_{k}": v for k, v in agr["largest"].items()}})  # fmt: skip
    return rows


__all__ = ["agreement", "rank", "sample_units", "spearman", "validate_attribution", "validation_table"]
