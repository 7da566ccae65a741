"""Routing specialisation of an MoE model from its recorded routing statistics (docs/methods.md §12).

Per language k and MoE layer l: the expert-usage distribution ``u[k,l,e] = routed / (top_k · n_tokens)``,
its entropy, the Jensen–Shannon divergence of each language's ``u`` from a reference language's (English
by default), the mean router probability of each expert, and the experts most specific to each language:
LAPE-style, the entropy over languages of the routed-token shares ``s[k,l,e] = routed / n_tokens``
(normalised over languages), lowest first, among the experts a language uses most.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.provenance import now, software
from langneurons.formats.stats import Stats

ROUTING_FORMAT = "langneurons-routing/1"


def usage(stats: Stats) -> torch.Tensor:
    """``u [K, L_moe, E]``: share of each language's routing decisions that go to each expert."""
    moe, routed = _moe(stats)
    layers = torch.tensor(moe["moe_layers"], dtype=torch.long)
    n = stats.n_tokens.clamp(min=1).to(torch.float64).view(-1, 1, 1) * int(moe["top_k"])
    return routed.index_select(1, layers).to(torch.float64) / n


def entropy(u: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the last axis; 0·log 0 = 0."""
    return torch.xlogy(u, u).sum(-1).neg()


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence in bits (0 = same routing, 1 = disjoint experts) over the last axis."""
    m = (p + q) / 2
    kl = lambda a: (torch.xlogy(a, a) - torch.xlogy(a, m)).sum(-1)  # noqa: E731
    return ((kl(p) + kl(q)) / 2 / math.log(2)).clamp(min=0.0)


def specific_experts(stats: Stats, top: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Per language, the ``top`` (layer, expert) pairs whose routed-token shares are most concentrated on
    it (lowest entropy over languages of the normalised shares; only experts it uses most)."""
    moe, routed = _moe(stats)
    layers = moe["moe_layers"]
    k = len(stats.languages)
    share = routed.index_select(1, torch.tensor(layers)).to(torch.float64)
    share = share / stats.n_tokens.clamp(min=1).to(torch.float64).view(-1, 1, 1)  # [K, Lm, E]
    total = share.sum(0)
    q = torch.where(total > 0, share / total.clamp(min=1e-300), 0.0)
    h = entropy(q.permute(1, 2, 0)) / (math.log(k) if k > 1 else 1.0)  # [Lm, E], 0 = one language only
    owner = share.argmax(0)
    out: dict[str, list[dict[str, Any]]] = {}
    for i, lang in enumerate(stats.languages):
        mine = (owner == i) & (total > 0)
        score = torch.where(mine, h, torch.inf).flatten()
        order = torch.argsort(score, stable=True)[:top]
        rows = []
        for flat in order.tolist():
            if not math.isfinite(float(score[flat])):
                break
            li, e = divmod(flat, share.shape[2])
            others = torch.cat([share[:i, li, e], share[i + 1 :, li, e]])
            rows.append({"layer": layers[li], "expert": e, "entropy": round(float(h[li, e]), 6),
                         "share": round(float(share[i, li, e]), 6),
                         "share_others_mean": round(float(others.mean()) if others.numel() else 0.0, 6)})  # fmt: skip
        out[lang] = rows
    return out


def routing_analysis(stats: Stats, *, reference: str = "en", top: int = 5) -> dict[str, Any]:
    """The ``routing`` result: usage, entropy, divergence from ``reference`` and specific experts."""
    if top <= 0:
        raise LangneuronsError(f"--top must be positive, got {top}")
    moe, _ = _moe(stats)
    if reference not in stats.languages:
        raise LangneuronsError(
            f"reference language {reference!r} is not in this run (have: {','.join(stats.languages)}); pass --reference"
        )
    u = usage(stats)
    ref = u[stats.language_index(reference)]
    prob = stats.extra["router_probability"].index_select(1, torch.tensor(moe["moe_layers"]))
    prob = prob / stats.n_tokens.clamp(min=1).to(torch.float64).view(-1, 1, 1)
    n_experts = int(moe["num_experts"])
    m = stats.manifest
    return {
        "format": ROUTING_FORMAT,
        "languages": stats.languages,
        "reference": reference,
        "moe_layers": moe["moe_layers"],
        "num_layers": stats.num_layers,
        "num_experts": n_experts,
        "top_k": moe["top_k"],
        "usage": {lang: _round(u[i]) for i, lang in enumerate(stats.languages)},
        "entropy": {lang: _round(entropy(u[i])) for i, lang in enumerate(stats.languages)},
        "max_entropy": math.log(n_experts),
        "js_divergence": {lang: _round(js_divergence(u[i], ref)) for i, lang in enumerate(stats.languages)},
        "mean_router_probability": {lang: _round(prob[i]) for i, lang in enumerate(stats.languages)},
        "specific_experts": specific_experts(stats, top),
        "definitions": {
            "usage": "routed_tokens / (top_k · n_tokens), per MoE layer and expert (sums to 1 over experts)",
            "entropy": "Shannon entropy of usage, nats (max log E)",
            "js_divergence": f"Jensen–Shannon divergence of usage from {reference}'s, bits (0 same, 1 disjoint)",
            "specific_experts": "lowest entropy over languages of routed_tokens / n_tokens (normalised over "
            "languages, divided by log K), among experts the language uses most",
        },
        "provenance": {
            "model": m.get("model"), "revision": m.get("revision"), "family": m.get("family"),
            "corpus": m.get("corpus"), "corpus_sha256": m.get("corpus_sha256"), "n_tokens": dict(
                zip(stats.languages, stats.n_tokens.tolist(), strict=True)), "created": now(), **software(),
        },  # fmt: skip
    }


def _moe(stats: Stats) -> tuple[dict[str, Any], torch.Tensor]:
    moe = stats.manifest.get("moe")
    if not moe or "routed_tokens" not in stats.extra:
        raise LangneuronsError(
            "these statistics hold no routing (record a mixture-of-experts model to get routed_tokens)"
        )
    return moe, stats.extra["routed_tokens"]


def _round(t: torch.Tensor) -> list:
    return [[round(float(x), 6) for x in row] for row in t] if t.dim() == 2 else [round(float(x), 6) for x in t]


__all__ = ["ROUTING_FORMAT", "entropy", "js_divergence", "routing_analysis", "specific_experts", "usage"]
