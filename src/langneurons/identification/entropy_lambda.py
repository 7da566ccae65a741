"""Entropy − λ·max with AutoSweep (Zhang et al. 2025), docs/methods.md §4."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import Stats
from langneurons.identification.common import (
    TIE_BREAK,
    Method,
    assign_languages,
    build_set,
    check_rate,
    existing_neurons,
    probabilities,
    quantile_bar,
    select_lowest,
    zhang_normalised_entropy,
)


def parse_lambda(value: float | str | None) -> float | None:
    """``"auto"``/None → None (AutoSweep); otherwise a finite λ ≥ 0."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        lam = float(value)
    except (TypeError, ValueError):
        raise LangneuronsError(f"lambda must be a number ≥ 0 or 'auto', got {value!r}") from None
    if not math.isfinite(lam) or lam < 0:
        raise LangneuronsError(f"lambda must be a finite number ≥ 0 or 'auto', got {value!r}")
    return lam


def norm_max(k: int) -> float:
    """``(Σ_{i=1..K} 1/i) / K``: the expected largest share of K uniform spacings (0.2929 for K = 10)."""
    return sum(1.0 / i for i in range(1, k + 1)) / k


def autosweep(
    all_language: Callable[[float], int],
    lo: float = 0.0,
    hi: float = 0.2,
    eps: float = 1e-3,
    max_steps: int = 64,
    on_interval: Callable[[float, float], None] | None = None,
) -> tuple[float | None, list[list[float]]]:
    """Largest λ in [lo, hi] with ``all_language(λ) == 0``, by bisection to width ``eps`` (≤ max_steps).

    Returns the λ (None when none qualifies) and the history ``[[λ, all-language neurons], ...]``.
    Unlike the reference code, an acceptable ``hi`` is returned as it is (the reference bisects on).
    ``on_interval(lo, hi)`` is told each bracket before it is searched (λ = lo has been evaluated).
    """
    history: list[list[float]] = []

    def ok(lam: float) -> bool:
        n = all_language(lam)
        history.append([lam, n])
        return n == 0

    best = lo if ok(lo) else None
    if ok(hi):
        return hi, history
    steps = 0
    while hi - lo > eps and steps < max_steps:
        steps += 1
        if on_interval is not None:
            on_interval(lo, hi)
        mid = (lo + hi) / 2.0
        if ok(mid):
            best, lo = mid, mid
        else:
            hi = mid
    return best, history


def sweep_edge(chosen: float, lo: float, hi: float) -> str | None:
    """``"upper"`` when AutoSweep kept the top of its range (a larger λ might qualify too: the search was
    cut short), ``"lower"`` when it kept the bottom (every larger λ tried left all-language neurons), else None."""
    if chosen >= hi:
        return "upper"
    if chosen <= lo:
        return "lower"
    return None


def edge_warning(sweep: dict[str, Any]) -> str | None:
    """One sentence for an AutoSweep λ at the edge of its range (None inside it); it names ``--lambda-range``."""
    lo, hi, edge = sweep["lo"], sweep["hi"], sweep.get("at_edge")
    if edge == "upper":
        return (
            f"AutoSweep chose lambda = {hi:g}, the top of its range [{lo:g}, {hi:g}]: a larger lambda may also "
            f"leave no all-language neuron; widen the range, e.g. --lambda-range {lo:g},{2 * hi:g}"
        )
    if edge == "lower":
        hint = (
            "lambda 0 is plain entropy; give --lambda to choose one"
            if lo == 0
            else f"lower the bottom, e.g. --lambda-range 0,{hi:g}"
        )
        return (
            f"AutoSweep chose lambda = {lo:g}, the bottom of its range [{lo:g}, {hi:g}] (every larger lambda "
            f"tried left neurons assigned to all languages); {hint}"
        )
    return None


class LambdaSelector:
    """The ``target`` lowest scores ``hn − λ·peak / norm_max`` for one λ after another, cached by λ.

    After `narrow(lo, hi)`, only neurons that can still be selected for some λ in [lo, hi] are scored:
    every score, and so the k-th lowest, falls as λ grows, so a neuron whose score at ``hi`` is above
    the k-th lowest at ``lo`` is never selected. Scores are computed identically either way.
    """

    def __init__(self, hn: torch.Tensor, peak: torch.Tensor, nmax: float, target: int) -> None:
        self.hn, self.peak, self.nmax, self.target = hn, peak, nmax, target
        self.pool: torch.Tensor | None = None  # sorted flat indices still in play; None = all
        self.cache: dict[float, torch.Tensor] = {}

    def score(self, lam: float) -> torch.Tensor:
        if self.pool is None:
            return self.hn - self.peak.mul(lam).div_(self.nmax)
        return self.hn[self.pool] - self.peak[self.pool].mul(lam).div_(self.nmax)

    def __call__(self, lam: float) -> torch.Tensor:
        """Sorted flat indices of the selected neurons at ``lam``."""
        if lam not in self.cache:
            chosen = select_lowest(self.score(lam), self.target)
            self.cache[lam] = chosen if self.pool is None else self.pool[chosen]
        return self.cache[lam]

    def narrow(self, lo: float, hi: float) -> None:
        """Restrict later calls (for λ in [lo, hi] only) to the neurons that can still be selected."""
        first = self(lo)
        if first.numel() == 0:
            return
        edge = (self.hn[first] - self.peak[first].mul(lo).div_(self.nmax)).max()
        keep = (self.score(hi) <= edge).nonzero().squeeze(1)
        self.pool = keep if self.pool is None else self.pool[keep]


def entropy_lambda(
    stats: Stats,
    *,
    top_rate: float = 0.01,
    bar_ratio: float = 0.95,
    lam: float | str | None = "auto",
    sweep_lo: float = 0.0,
    sweep_hi: float = 0.2,
    sweep_eps: float = 1e-3,
    sweep_max_steps: int = 64,
) -> NeuronSet:
    """Select the ``round(top_rate·N)`` lowest ``Hn − λ·max_k p / norm_max``; assign by the bar quantile.

    ``lam="auto"`` picks λ by AutoSweep: the largest λ for which no selected neuron gets all K languages.
    N = L·F, or for a mixture-of-experts run the neurons that exist (padding columns are never scored and
    enter neither the count nor the bar's quantile).
    """
    top_rate = check_rate("top_rate", top_rate)
    bar_ratio = check_rate("bar_ratio", bar_ratio)
    fixed = parse_lambda(lam)
    k = len(stats.languages)
    if fixed is None:
        if k < 2:
            raise LangneuronsError("lambda 'auto' needs at least 2 languages; give a number")
        if not (0.0 <= sweep_lo < sweep_hi) or sweep_eps <= 0:
            raise LangneuronsError(f"bad AutoSweep range [{sweep_lo}, {sweep_hi}] / eps {sweep_eps}")
    p = probabilities(stats)
    existing = existing_neurons(stats)
    n_neurons = p.shape[1] if existing is None else int(existing.sum())
    hn = zhang_normalised_entropy(p)
    if existing is not None:
        hn[~existing] = math.inf  # padding: never selected
    low, peak = p.amin(0), p.amax(0)
    bar = quantile_bar(p, bar_ratio, p.shape[0] * (p.shape[1] - n_neurons))
    everywhere = low > bar  # a selected neuron here would be assigned to all K languages
    target = round(top_rate * n_neurons)
    nmax = norm_max(k)
    select = LambdaSelector(hn, peak, nmax, target)

    sweep: dict[str, Any] | None = None
    if fixed is None:
        chosen, history = autosweep(
            lambda x: int(everywhere[select(x)].sum()),
            sweep_lo,
            sweep_hi,
            sweep_eps,
            sweep_max_steps,
            on_interval=select.narrow,
        )
        if chosen is None:
            raise LangneuronsError(
                f"AutoSweep found no lambda in [{sweep_lo}, {sweep_hi}] that leaves no neuron assigned to "
                f"all {k} languages; give --lambda"
            )
        sweep = {"lo": sweep_lo, "hi": sweep_hi, "eps": sweep_eps, "max_steps": sweep_max_steps}
        sweep["steps"] = history
        sweep["at_edge"] = sweep_edge(chosen, sweep_lo, sweep_hi)
    else:
        chosen = fixed
    selected = select(chosen)
    assigned = assign_languages(p, selected, bar)
    params: dict[str, Any] = {
        "top_rate": top_rate,
        "bar_ratio": bar_ratio,
        "lambda": chosen,
        "lambda_mode": "fixed" if sweep is None else "auto",
        "bar": bar,
        "norm_max": nmax,
        "n_target": target,
        "n_selected": int(selected.numel()),
        "probability": "max(count, 0) / max(n_tokens, 1), float64",
        "tie_break": TIE_BREAK,
    }
    if existing is not None:
        params["n_existing"] = n_neurons
    if sweep is not None:
        params["autosweep"] = sweep
        if (message := edge_warning(sweep)) is not None:
            params["warnings"] = [message]
    return build_set(stats, "entropy-lambda", selected, assigned, params)


METHOD = Method(
    name="entropy-lambda",
    run=entropy_lambda,
    summary="normalised entropy minus λ times peak probability, λ by AutoSweep (Zhang et al. 2025)",
    defaults={"top_rate": 0.01, "bar_ratio": 0.95, "lam": "auto"},
)

__all__ = ["METHOD", "autosweep", "edge_warning", "entropy_lambda", "norm_max", "parse_lambda", "sweep_edge"]
