"""What a neuron writes (docs/methods.md §15): its output weights read through the final norm's gain and the
unembedding, logit-lens style, and the languages of the tokens it promotes.

``score = W_U · (g ⊙ W_down[:, j])``: promoted tokens are the top of ``score``, suppressed ones the bottom.
Over a neuron set, a neuron of language L *writes its own language* when the share of L among its top-100
promoted tokens is above the 95th percentile of that share over random neurons of the same layer (a
weight-based check of the activation-based assignment).
"""

from __future__ import annotations

from typing import Any

import torch

from langneurons.analysis.token_language import TokenLanguages
from langneurons.models import Adapter

TOP_SHARE = 100  # promoted tokens whose languages make the share
RANDOM_NEURONS = 200  # random neurons per layer for the baseline share
QUANTILE = 0.95  # a neuron writes its language when its share is above this quantile of the random ones
CHUNK = 64  # neurons per product with the unembedding


class WriteLens:
    """The unembedding and final-norm gain of one model, in float32 on the model's device, read once."""

    def __init__(self, adapter: Adapter):
        self.adapter = adapter
        unembed = adapter.unembedding_weight()
        self.device = unembed.device
        self.unembed = unembed.to(torch.float32)
        self.gain = adapter.final_norm_gain().to(self.device, torch.float32)
        self.baselines: dict[tuple, dict[str, torch.Tensor]] = {}  # random_shares, per (languages, layer, n, seed)

    @property
    def vocab_size(self) -> int:
        return int(self.unembed.shape[0])

    def scores(self, layer: int, neurons: list[int]) -> torch.Tensor:
        """[len(neurons), vocab] float32: each neuron's direct effect on every token's logit (per unit act)."""
        cols = torch.stack([self.adapter.down_column(layer, j).to(self.device, torch.float32) for j in neurons], 1)
        return (self.unembed @ (self.gain[:, None] * cols)).T

    def top(self, layer: int, neurons: list[int], k: int, exclude: set[int] | None = None):
        """Per neuron the ``k`` most promoted and ``k`` most suppressed tokens: (values, ids) pairs [n, k],
        ties broken by the lower token id; ``exclude`` (special tokens) never appear."""
        promoted_v, promoted_i, suppressed_v, suppressed_i = [], [], [], []
        for i in range(0, len(neurons), CHUNK):
            s = self.scores(layer, neurons[i : i + CHUNK])
            if exclude:
                keep = torch.tensor(sorted(t for t in exclude if t < s.shape[1]), dtype=torch.long, device=s.device)
                s_hi, s_lo = s.index_fill(1, keep, float("-inf")), s.index_fill(1, keep, float("inf"))
            else:
                s_hi = s_lo = s
            v, idx = _stable_topk(s_hi, k, largest=True)
            promoted_v.append(v)
            promoted_i.append(idx)
            v, idx = _stable_topk(s_lo, k, largest=False)
            suppressed_v.append(v)
            suppressed_i.append(idx)
        cat = torch.cat
        return (cat(promoted_v).cpu(), cat(promoted_i).cpu()), (cat(suppressed_v).cpu(), cat(suppressed_i).cpu())


def _stable_topk(scores: torch.Tensor, k: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along dim 1 with ties broken by the lower index: exact, and cheap when no tie reaches the edge."""
    k = min(k, scores.shape[1])
    values, index = torch.topk(scores, k, dim=1, largest=largest)
    edge = values[:, -1:]
    reach = (scores >= edge) if largest else (scores <= edge)
    if bool((reach.sum(1) > k).any()):  # a tie at the k-th value: take the lowest indices among the tied
        masked = torch.where(reach, scores, float("-inf") if largest else float("inf"))
        index = torch.sort(masked, dim=1, descending=largest, stable=True).indices[:, :k]
        return scores.gather(1, index), index
    order = torch.argsort(index, dim=1)  # equal values inside the top k: lower index first
    values, index = values.gather(1, order), index.gather(1, order)
    order = torch.argsort(values, dim=1, descending=largest, stable=True)
    return values.gather(1, order), index.gather(1, order)


def neuron_writes(lens: WriteLens, langs: TokenLanguages, layer: int, neuron: int, k: int = 20) -> dict[str, Any]:
    """One neuron's card entry: ``promoted`` / ``suppressed`` (lists of token, token_id, score, language) and
    ``language_share`` of its top-100 promoted tokens, with ``random_share`` (mean and 95th percentile of
    the same share over random neurons of its layer)."""
    n = max(k, TOP_SHARE)
    (pv, pi), (sv, si) = lens.top(layer, [neuron], n, langs.special)
    share = langs.share(pi[0, :TOP_SHARE].tolist())
    baseline = random_shares(lens, langs, layer)

    def rows(values, ids):
        return [{"token": langs.text(int(t)), "token_id": int(t), "score": round(float(v), 6),
                 "language": langs(int(t))} for v, t in zip(values.tolist(), ids.tolist(), strict=True)]  # fmt: skip

    return {
        "promoted": rows(pv[0, :k], pi[0, :k]),
        "suppressed": rows(sv[0, :k], si[0, :k]),
        "language_share": share,
        "random_share": {lang: {"mean": round(float(b.mean()), 4), "q95": round(float(b.quantile(QUANTILE)), 4)}
                         for lang, b in baseline.items()},  # fmt: skip
        "top_for_share": TOP_SHARE,
    }


def random_shares(lens: WriteLens, langs: TokenLanguages, layer: int, n: int = RANDOM_NEURONS, seed: int = 0):
    """Per language, the share of its tokens among the top-100 promoted of ``n`` random neurons of ``layer``
    (a seeded draw without replacement): ``{lang: float64 [n]}``."""
    key = (id(langs), layer, n, seed)
    if key not in lens.baselines:
        width = lens.adapter.intermediate_size
        g = torch.Generator().manual_seed(seed * 1000 + layer)
        picked = torch.randperm(width, generator=g)[: min(n, width)].tolist()
        picked = [j for j in picked if _exists(lens.adapter, layer, j)]
        (_, ids), _ = lens.top(layer, picked, TOP_SHARE, langs.special)
        shares = [langs.share(row.tolist()) for row in ids]
        lens.baselines[key] = {lang: torch.tensor([s[lang] for s in shares], dtype=torch.float64)
                               for lang in langs.languages}  # fmt: skip
    return lens.baselines[key]


def _exists(adapter: Adapter, layer: int, neuron: int) -> bool:
    try:
        adapter.down_column(layer, neuron)
    except Exception:  # an MoE layer's unused columns (dense layers narrower than the expert axis)
        return False
    return True


def writes_by_layer(lens: WriteLens, langs: TokenLanguages, neurons: dict[str, list[list[int]]]) -> dict[str, Any]:
    """Over a whole set (``{lang: [[neurons of layer 0], …]}``): per language and layer, how many of that
    language's neurons write their own language, with their mean share and the random baseline's."""
    out: dict[str, Any] = {"rule": f"share of the language among the top-{TOP_SHARE} promoted tokens above the "
                           f"{QUANTILE:.0%} quantile of {RANDOM_NEURONS} random neurons of the same layer",
                           "languages": {}}  # fmt: skip
    per_neuron: dict[str, dict[str, float]] = {}
    for lang, layers in neurons.items():
        rows = []
        for layer, idx in enumerate(layers):
            if not idx or lang not in langs.languages:
                rows.append({"layer": layer, "neurons": len(idx), "writes": 0, "mean_share": None, "random_mean": None})
                continue
            baseline = random_shares(lens, langs, layer)[lang]
            q = float(baseline.quantile(QUANTILE))
            (_, ids), _ = lens.top(layer, list(idx), TOP_SHARE, langs.special)
            shares = [langs.share(row.tolist())[lang] for row in ids]
            for j, s in zip(idx, shares, strict=True):
                per_neuron.setdefault(lang, {})[f"{layer}:{j}"] = round(s, 4)
            rows.append({"layer": layer, "neurons": len(idx), "writes": sum(s > q for s in shares),
                         "mean_share": round(sum(shares) / len(shares), 4),
                         "random_mean": round(float(baseline.mean()), 4), "random_q95": round(q, 4)})  # fmt: skip
        total = sum(r["neurons"] for r in rows)
        out["languages"][lang] = {"by_layer": rows, "neurons": total, "writes": sum(r["writes"] for r in rows)}
    out["share"] = per_neuron
    return out


__all__ = ["WriteLens", "neuron_writes", "random_shares", "writes_by_layer"]
