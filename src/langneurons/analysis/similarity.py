"""Activation-pattern similarity (Zeng et al. 2024, docs/methods.md §7): LRDS and SADS per layer and whole-model.

All pairs are ordered pairs (i, j) with i ≠ j (self-pairs excluded) of the pooled sentence vectors:

* LRDS = mean cos over pairs in the same language − mean cos over pairs in different languages.
* SADS = mean cos over *same-meaning* pairs − mean cos over *different-meaning* pairs, where both sides are
  cross-language pairs: same meaning = equal sentence id and different language (translations of each
  other); different meaning = different id and different language. Keeping both sides cross-language
  means SADS measures meaning with language held apart (a same-language pair never counts on either side).

Meaning groups come from the explicit sentence ids in the pooled file, never from row positions. The
whole-model vector is the concatenation of all layers' vectors; its cosine is computed from the summed
per-layer Gram matrices (no concatenated copy). A zero vector (a sentence with no counted token) has cosine 0
with everything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, write_json
from langneurons.formats.pooled import Pooled
from langneurons.progress import progress_bar
from langneurons.version import __version__

SIMILARITY_FILE = "similarity.json"
SIMILARITY_FORMAT = "langneurons-similarity/1"
SIDES = ("same_language", "different_language", "same_meaning", "different_meaning")
DEFINITIONS = {
    "pairs": "ordered pairs (i, j), i != j; cosine similarity of mean-pooled activations",
    "lrds": "mean cos(same language) - mean cos(different language)",
    "sads": "mean cos(same sentence id, different language) - mean cos(different id, different language)",
    "whole_model": "cosine of the concatenation of all layers' vectors",
}


def pair_masks(row_languages: list[str], ids: list[str]) -> dict[str, torch.Tensor]:
    """Bool ``[N, N]`` masks of the four pair sets (see the module docstring); the diagonal is never set."""
    lang_codes = {x: i for i, x in enumerate(dict.fromkeys(row_languages))}
    id_codes = {x: i for i, x in enumerate(dict.fromkeys(ids))}
    lang = torch.tensor([lang_codes[x] for x in row_languages])
    sid = torch.tensor([id_codes[x] for x in ids])
    n = lang.numel()
    off = ~torch.eye(n, dtype=torch.bool)
    same_lang = (lang[:, None] == lang[None, :]) & off
    diff_lang = lang[:, None] != lang[None, :]
    same_id = sid[:, None] == sid[None, :]
    return {
        "same_language": same_lang,
        "different_language": diff_lang,
        "same_meaning": same_id & diff_lang,
        "different_meaning": ~same_id & diff_lang,
    }


def cosine_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """Cosine matrix from a Gram matrix ``X Xᵀ`` (float64); zero vectors give 0."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    inv = torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))
    return gram * inv[:, None] * inv[None, :]


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the rows of ``x`` ``[N, D]`` as float64 ``[N, N]``."""
    x = x.to(torch.float64)
    return cosine_from_gram(x @ x.T)


def pair_scores(sim: torch.Tensor, masks: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean similarity of each pair set, LRDS and SADS (NaN where a side has no pair)."""
    out = {}
    for name in SIDES:
        m = masks[name]
        count = int(m.sum())
        out[name] = float(sim[m].sum() / count) if count else math.nan
    out["lrds"] = out["same_language"] - out["different_language"]
    out["sads"] = out["same_meaning"] - out["different_meaning"]
    return out


def language_matrix(sim: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Float64 ``[K, K]``: mean cosine between sentences of language a and b (self-pairs excluded)."""
    onehot = torch.nn.functional.one_hot(labels, k).to(torch.float64)  # [N, K]
    off = sim.clone()
    off.fill_diagonal_(0.0)
    totals = onehot.T @ off @ onehot
    sizes = onehot.sum(0)
    pairs = sizes[:, None] * sizes[None, :] - torch.diag(sizes)
    return torch.where(pairs > 0, totals / pairs.clamp_min(1), torch.full_like(totals, math.nan))


BOOTSTRAP = 200  # resamples of the meaning groups behind the per-layer 95 % bands


def resample_weights(ids: list[str], resamples: int, seed: int = 0) -> torch.Tensor:
    """Float64 ``[B, N]``: how often each row is drawn in each bootstrap resample of the meaning groups (sentence
    ids drawn with replacement; the rows of one id, its translations, move together)."""
    codes = {x: i for i, x in enumerate(dict.fromkeys(ids))}
    group = torch.tensor([codes[x] for x in ids])
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(len(codes), (resamples, len(codes)), generator=gen)
    counts = torch.zeros(resamples, len(codes), dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(resamples, len(codes), dtype=torch.float64)
    )
    return counts[:, group]


def resampled_scores(sim: torch.Tensor, masks: dict[str, torch.Tensor], weights: torch.Tensor,
                     pairs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # fmt: skip
    """LRDS and SADS ``[B]`` of each resample: pair means weighted by w_i · w_j (a row drawn twice pairs with the
    other rows twice, never with itself); ``pairs`` the weighted pair counts of each side (the same every layer)."""
    means = {}
    for name in SIDES:
        total = ((weights @ (sim * masks[name])) * weights).sum(1)
        means[name] = torch.where(pairs[name] > 0, total / pairs[name].clamp_min(1e-12), torch.nan)
    return {"lrds": means["same_language"] - means["different_language"],
            "sads": means["same_meaning"] - means["different_meaning"]}  # fmt: skip


def similarity(pooled: Pooled, *, progress: bool = False, bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """LRDS/SADS and the four pair means, whole-model and per layer, plus the K×K language matrix; with
    ``bootstrap`` > 0 also 95 % percentile bands of LRDS/SADS per layer over resampled meaning groups, and a peak
    is called one only where it stands above the bands of the layers away from it."""
    x = pooled.pooled
    n, n_layers, _ = x.shape
    if n < 2:
        raise LangneuronsError("similarity needs at least 2 sentences")
    if bootstrap < 0:
        raise LangneuronsError(f"bootstrap must be 0 or more, got {bootstrap}")
    masks = pair_masks(pooled.row_languages, pooled.ids)
    per_layer: dict[str, list[float]] = {name: [] for name in (*SIDES, "lrds", "sads")}
    bands: dict[str, list[list[float]]] = {"lrds": [], "sads": []}
    weights = resample_weights(pooled.ids, bootstrap, seed) if bootstrap else None
    pairs = ({name: ((weights @ masks[name].to(torch.float64)) * weights).sum(1) for name in SIDES}
             if weights is not None else {})  # fmt: skip
    total = torch.zeros(n, n, dtype=torch.float64)
    with progress_bar(progress, "layers", transient=True) as bar:
        task = bar.add_task("similarity per layer", total=n_layers)
        for layer in range(n_layers):
            h = x[:, layer].to(torch.float64)
            gram = h @ h.T
            total += gram
            sim = cosine_from_gram(gram)
            for name, value in pair_scores(sim, masks).items():
                per_layer[name].append(value)
            if weights is not None:
                for name, values in resampled_scores(sim, masks, weights, pairs).items():
                    finite = values[torch.isfinite(values)]
                    band = torch.quantile(finite, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist() \
                        if finite.numel() else [math.nan, math.nan]  # fmt: skip
                    bands[name].append(band)
            bar.update(task, advance=1)
    whole_sim = cosine_from_gram(total)
    whole = pair_scores(whole_sim, masks)
    labels = pooled.language_labels()
    matrix = language_matrix(whole_sim, labels, len(pooled.languages))
    m = pooled.manifest
    return {
        "format": SIMILARITY_FORMAT,
        "model": m.get("model"),
        "revision": m.get("revision"),
        "site": m.get("site"),
        "corpus": m.get("corpus"),
        "corpus_sha256": m.get("corpus_sha256"),
        "id_source": m.get("id_source", "not recorded (pooled file made before ids were documented)"),
        "languages": pooled.languages,
        "num_layers": n_layers,
        "intermediate_size": pooled.intermediate_size,
        "sentences": {lang: int((labels == k).sum()) for k, lang in enumerate(pooled.languages)},
        "pairs": {name: int(masks[name].sum()) for name in SIDES},
        "definitions": DEFINITIONS,
        "whole_model": whole,
        "per_layer": per_layer,
        "peaks": {name: _peak(per_layer[name], bands[name] if bootstrap else None) for name in ("lrds", "sads")},
        **({"per_layer_ci95": bands, "bootstrap": {
            "resamples": bootstrap, "seed": seed, "unit": "meaning group (sentence id, with its translations)",
            "interval": "2.5th-97.5th percentile of the resampled values",
            "peak_rule": "a peak is claimed when its lower bound is above the upper bound of every layer at least "
                         "2 layers away"}} if bootstrap else {}),
        "language_matrix": matrix.tolist(),
        "pooling": m.get("pooling"),
        "source": {key: m.get(key) for key in ("dtype", "store_dtype", "settings", "langneurons_version")},
        "analyzed_with": f"langneurons {__version__}",
    }


def _peak(values: list[float], bands: list[list[float]] | None = None) -> dict[str, Any]:
    """The highest layer; with bootstrap bands, whether it stands out: its lower bound above the upper bound of
    every layer at least 2 layers away (a plateau or a noisy bump is no peak)."""
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if not finite:
        return {"layer": None, "value": None}
    value, layer = max(finite)
    out: dict[str, Any] = {"layer": layer, "value": value, "relative_depth": (layer + 0.5) / len(values)}
    if bands is not None:
        low = bands[layer][0]
        away = [hi for i, (_, hi) in enumerate(bands) if abs(i - layer) >= 2 and not math.isnan(hi)]
        out["stands_out"] = bool(away) and not math.isnan(low) and low > max(away)
    return out


def save_similarity(path: str | Path, result: dict[str, Any]) -> None:
    """Write a similarity result (NaN written as null)."""
    write_json(Path(path), _nan_to_none(result))


def load_similarity(path: str | Path) -> dict[str, Any]:
    """Read a similarity.json (a file or a run directory holding one); one-line errors."""
    path = Path(path)
    if path.is_dir():
        path = path / SIMILARITY_FILE
    if not path.is_file():
        raise LangneuronsError(f"no similarity results at {path}")
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != SIMILARITY_FORMAT:
        raise LangneuronsError(f"{path} is not a langneurons similarity file")
    return data


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


__all__ = [
    "SIMILARITY_FILE",
    "cosine_matrix",
    "language_matrix",
    "load_similarity",
    "pair_masks",
    "pair_scores",
    "save_similarity",
    "similarity",
]
