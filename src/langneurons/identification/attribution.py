"""Select units by causal score: an attribution run → a neuron set (or a head / expert set).

Selectivity of unit u for language k (docs/methods.md, "Selection by attribution"), with e_k(u) the
estimated increase of k's mean NLL when u is ablated (an `attribute` run, nats per token):

    s_k(u) = e_k(u) − max_{j≠k} e_j(u)        (K = 1: s = e)

the margin by which ablating u hurts k more than the most-hurt other language. Per language, the units
with the largest s_k among those with s_k > 0 are selected; a unit may serve several languages only if
ties make it so (s_k > 0 for one k at most, up to ties). Budget: ``per_language`` units per language
(e.g. another set's counts, `matched_budget`), else ``round(top_rate · L · U / K)`` with ``top_rate``
0.01 for neurons (LAPE's size: 1 % of all neurons over all languages) and 0.1 for heads and experts.

Head and expert sets are neuron-set files (formats/neuronset.py) whose ``site`` is ``"heads"`` or
``"experts"`` and whose "neurons" of a layer are its attention heads (query heads, 0..H-1) or routed
experts (0..E-1); ``intermediate_size`` is then H or E.
"""

from __future__ import annotations

from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.attribution import ABLATIONS, UNITS, Attribution
from langneurons.formats.neuronset import NeuronSet, moe_layout
from langneurons.identification.common import Method, check_rate
from langneurons.version import __version__

DEFAULT_TOP_RATE = {"neurons": 0.01, "heads": 0.1, "experts": 0.1}
SCORE = "s_k = e_k - max_{j != k} e_j (e: estimated NLL increase when the unit is ablated, nats/token); select s_k > 0"


def selectivity(scores: torch.Tensor) -> torch.Tensor:
    """``[K, L, U]`` effects → ``[K, L, U]`` margins over the most-hurt other language (K = 1: the effects)."""
    scores = scores.double()
    k = scores.shape[0]
    if k == 1:
        return scores.clone()
    out = torch.empty_like(scores)
    for i in range(k):
        others = torch.cat([scores[:i], scores[i + 1 :]])
        out[i] = scores[i] - others.amax(0)
    return out


def matched_budget(neurons: NeuronSet) -> dict[str, int]:
    """Per language, the number of units of another set (``--match``)."""
    return {lang: neurons.count(lang) for lang in neurons.languages}


def attribution_set(
    attr: Attribution,
    *,
    unit: str = "neurons",
    ablation: str = "zero",
    top_rate: float | None = None,
    per_language: dict[str, int] | int | None = None,
    languages: list[str] | None = None,
) -> NeuronSet:
    """Per language, the units whose ablation hurts it most relative to the other languages (module doc)."""
    if unit not in UNITS:
        raise LangneuronsError(f"unknown unit {unit!r}; choose from {', '.join(UNITS)}")
    if unit not in attr.units:
        raise LangneuronsError(f"this attribution run has no {unit} (it has: {', '.join(attr.units)}); rerun "
                               f"`attribute --units {unit}`")  # fmt: skip
    if ablation not in ABLATIONS:
        raise LangneuronsError(f"unknown ablation {ablation!r}; choose {' or '.join(ABLATIONS)}")
    langs = languages or attr.languages
    missing = [lang for lang in langs if lang not in attr.languages]
    if missing:
        have = ",".join(attr.languages)
        raise LangneuronsError(f"language {missing[0]!r} is not in the attribution run (have: {have})")
    if ablation == "mean" and f"mean.{unit}.{langs[0]}" not in attr.tensors:
        raise LangneuronsError("this attribution run has no mean-ablation scores (one language only)")
    scores = torch.stack([attr.score(unit, lang, ablation) for lang in langs])
    exists = attr.existing(unit)
    sel = selectivity(scores)
    sel = sel.masked_fill(~(exists.unsqueeze(0) & (scores > 0) & (sel > 0)), -torch.inf)
    k, num_layers, size = scores.shape
    rate = check_rate("top_rate", top_rate if top_rate is not None else DEFAULT_TOP_RATE[unit])
    if per_language is None:
        budget = {lang: max(1, round(rate * int(exists.sum()) / k)) for lang in langs}
    elif isinstance(per_language, int):
        budget = dict.fromkeys(langs, per_language)
    else:
        budget = {lang: int(per_language.get(lang, 0)) for lang in langs}
    neurons: dict[str, list[list[int]]] = {}
    chosen = {}
    for i, lang in enumerate(langs):
        flat = sel[i].reshape(-1)
        n = min(budget[lang], int(torch.isfinite(flat).sum()))
        top = flat.argsort(descending=True, stable=True)[:n] if n else torch.zeros(0, dtype=torch.long)
        mask = torch.zeros(num_layers * size, dtype=torch.bool)
        mask[top] = True
        mask = mask.reshape(num_layers, size)
        chosen[lang] = mask
        neurons[lang] = [mask[layer].nonzero().reshape(-1).tolist() for layer in range(num_layers)]
    union = torch.stack(list(chosen.values())).any(0)
    prov = attr.meta.get("provenance", {})
    source: dict[str, Any] = {
        "attribution_run": attr.path,
        "corpus": (prov.get("texts") or {}).get("spec"),
        "corpus_sha256": (prov.get("texts") or {}).get("sha256"),
        "revision": prov.get("revision"),
        "dtype": prov.get("dtype"),
        "langneurons_version": prov.get("langneurons_version"),
        "identified_with": __version__,
    }
    if unit == "neurons" and attr.meta["layout"].get("moe"):
        source["moe"] = moe_layout(attr.meta["layout"]["moe"])
    site = attr.meta.get("site") if unit == "neurons" else unit
    params = {
        "unit": unit,
        "ablation": ablation,
        "estimator": attr.meta.get("method"),
        "steps": attr.meta.get("steps"),
        "score": SCORE,
        "top_rate": None if per_language is not None else rate,
        "per_language": budget,
        "selected_effect": {lang: float(scores[i][chosen[lang]].sum()) for i, lang in enumerate(langs)},
        "short": {lang: budget[lang] - int(chosen[lang].sum()) for lang in langs
                  if int(chosen[lang].sum()) < budget[lang]},  # fmt: skip
        "tie_break": "lowest flat index (layer, then unit) among equal scores",
    }
    ns = NeuronSet(
        languages=list(langs), num_layers=num_layers, intermediate_size=size, neurons=neurons,
        selected=[union[layer].nonzero().reshape(-1).tolist() for layer in range(num_layers)],
        method="attribution", params=params, site=site, model=prov.get("model"), source=source,
    )  # fmt: skip
    ns.validate()
    return ns


def _run(data: Attribution, *, unit: str = "neurons", ablation: str = "zero", top_rate: float | None = None,
         per_language: dict[str, int] | int | None = None) -> NeuronSet:  # fmt: skip
    if not isinstance(data, Attribution):
        raise LangneuronsError("method attribution works on an attribution run (from `attribute`)")
    return attribution_set(data, unit=unit, ablation=ablation, top_rate=top_rate, per_language=per_language)


METHOD = Method(
    "attribution",
    _run,
    "causal scores (attribution patching): units whose ablation hurts a language most relative to the others",
    {"unit": "neurons", "ablation": "zero", "top_rate": None},
    input="attribution",
)

__all__ = ["DEFAULT_TOP_RATE", "METHOD", "SCORE", "attribution_set", "matched_budget", "selectivity"]
