"""Figures and text of the causal evaluation: the perplexity-ratio matrix and steering success with intervals.

Reads the files `langneurons ppl` and `langneurons steer` write (docs/formats.md); numbers are shown
as ratios (×2.01 = perplexity doubled) and percentages with 95 % Wilson intervals.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import FuncNorm

from langneurons.intervals import ratio_text, wilson
from langneurons.reporting.figures import label_cells, masked_cmap, new_figure, png
from langneurons.summaries import summarise_ratios

RATIO_TICKS = (1 / 1000, 1 / 100, 1 / 10, 1 / 2, 1, 2, 10, 100, 1000, 10000)
FINE_TICKS = (1 / 3, 1 / 2, 2 / 3, 1, 1.5, 2, 3)  # when every ratio is within ×1/3 … ×3


@dataclass
class PPLRatios:
    """PPL_intervened / PPL_base for each intervention row (random controls last) and evaluated language."""

    rows: list[str]  # intervention names as in the file: "neurons:fr", "random:fr"
    languages: list[str]
    ratio: np.ndarray  # [rows, languages]
    base: dict[str, float | None]  # PPL with no intervention, per language


def ppl_ratios(data: dict[str, Any]) -> PPLRatios | None:
    """The ratio matrix of a `langneurons ppl` result (from ``ppl``, else ``delta_relative``); None if neither."""
    ppl, delta = data.get("ppl"), data.get("delta_relative")
    table = ppl if _is_table(ppl) and "none" in ppl else delta if _is_table(delta) else None
    if table is None:
        return None
    langs = data.get("languages")
    if not isinstance(langs, list):
        langs = list(next(iter(table.values())))
    langs = [str(x) for x in langs]
    base = table.get("none") if table is ppl else None
    names = [r for r in table if r != "none"]
    names = [r for r in names if not r.startswith("random:")] + [r for r in names if r.startswith("random:")]
    grid = np.full((len(names), len(langs)), np.nan)
    for i, row in enumerate(names):
        for j, lang in enumerate(langs):
            v = _num(table[row].get(lang))
            if v is None:
                continue
            if table is ppl:
                b = _num((base or {}).get(lang))
                grid[i, j] = v / b if b else np.nan
            else:
                grid[i, j] = 1.0 + v
    return PPLRatios(names, langs, grid, {lang: _num((base or {}).get(lang)) for lang in langs})


def row_label(name: str) -> str:
    """``neurons:fr`` → ``fr neurons off``; ``random:fr`` → ``random (as fr)``."""
    kind, _, lang = name.partition(":")
    if kind == "neurons" and lang:
        return f"{lang} neurons off"
    if kind == "random" and lang:
        return f"random (as {lang})"
    return name


def ppl_ratio_figure(m: PPLRatios, title: str) -> bytes:
    """Intervention × language heatmap of PPL ratios on a log scale diverging at ×1, cells labelled."""
    log = np.log10(m.ratio)
    finite = log[np.isfinite(log)]
    span = max(float(np.abs(finite).max()) if finite.size else 0.0, math.log10(1.5))
    # sqrt of |log ratio|: a doubling (+101 %) stays clearly coloured next to a ×381
    norm = FuncNorm((_signed_sqrt, _signed_square), vmin=-span, vmax=span)
    k, n = len(m.languages), len(m.rows)
    fig, ax = new_figure(3.0 + 0.7 * k, 1.6 + 0.36 * n)
    im = ax.imshow(log, aspect="auto", cmap=masked_cmap("RdBu_r"), norm=norm)
    ax.set_xticks(range(k), [f"{lang}\n{_ppl_text(m.base.get(lang))}" for lang in m.languages], fontsize=8)
    ax.set_yticks(range(n), [row_label(r) for r in m.rows], fontsize=8)
    ax.set_xlabel("evaluated language (its perplexity with no intervention)", fontsize=8)
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    real = sum(not r.startswith("random:") for r in m.rows)
    if 0 < real < n:
        ax.axhline(real - 0.5, color="black", lw=1.5)
    for i, row in enumerate(m.rows):  # outline the diagonal: a language's own neurons on its own text
        lang = row.partition(":")[2]
        if lang in m.languages and row.startswith("neurons:"):
            j = m.languages.index(lang)
            ax.add_patch(_box(j, i))
    fontsize = 7.5 if k <= 10 else 6.0
    label_cells(ax, im, log, lambda v: ratio_text(10**v), fontsize=fontsize)
    ticks = [t for t in (FINE_TICKS if span <= math.log10(3) else RATIO_TICKS) if abs(math.log10(t)) <= span + 1e-9]
    bar = fig.colorbar(im, ax=ax, shrink=0.9, ticks=[math.log10(t) for t in ticks])
    bar.ax.set_yticklabels([ratio_text(t) for t in ticks], fontsize=7)
    bar.set_label("PPL with neurons off / PPL without (log scale)", fontsize=8)
    ax.set_title(title, fontsize=10)
    return png(fig)


def ppl_summary(m: PPLRatios) -> str:
    """One sentence: own-language ratios, the others (per row the median of the ratios over the other
    languages, ``langneurons.summaries``; then the median over rows, geometric mean beside it) and the
    random controls."""
    own, others, control = [], [], []
    for i, row in enumerate(m.rows):
        kind, _, lang = row.partition(":")
        if lang not in m.languages:
            continue
        j = m.languages.index(lang)
        rest = summarise_ratios(float(m.ratio[i, c]) for c in range(len(m.languages)) if c != j)
        if kind == "neurons":
            own.append(f"{lang} {ratio_text(m.ratio[i, j])}")
            others.append(rest["median"])
        elif kind == "random":
            control.append(float(m.ratio[i, j]))
    parts = []
    if own:
        parts.append("each language's own neurons off, on its own text: " + ", ".join(own))
    over_rows = summarise_ratios(others)
    if over_rows["median"] is not None:
        parts.append(
            f"on the other languages (median ratio; median over rows): {ratio_text(over_rows['median'])}"
            f" (geometric mean {ratio_text(over_rows['geomean'])})"
        )
    if control:
        finite = [c for c in control if math.isfinite(c)]
        if finite:
            parts.append(
                f"matched random controls on their language: {ratio_text(min(finite))} to {ratio_text(max(finite))}"
            )
    return "; ".join(parts)


@dataclass
class SteerBar:
    """One condition of one target: its rate, interval and what it counts."""

    target: str
    strength: str
    condition: str  # steered | random | baseline
    measure: str  # success | language_rate
    rate: float
    n: int

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % Wilson interval of the rate over its n prompts, so a small sample shows its uncertainty."""
        return wilson(round(self.rate * self.n), self.n) or (math.nan, math.nan)


def steer_bars(data: dict[str, Any]) -> list[SteerBar]:
    """Success (and the raw language rate where the file has it) of every target, strength and condition."""
    results = data.get("results")
    if not isinstance(results, dict):
        return []
    n_default = _prompts(data)
    bars: list[SteerBar] = []
    for target, entry in results.items():
        if not isinstance(entry, dict):
            continue
        strengths = entry.get("strengths") or {}
        for strength, kinds in strengths.items():
            for kind in ("steered", "random"):
                bars += _bars(target, strength, kind, (kinds or {}).get(kind), n_default)
        bars += _bars(target, "", "baseline", entry.get("baseline"), n_default)
    return bars


def _bars(target: str, strength: str, kind: str, res: Any, n_default: int) -> list[SteerBar]:
    if not isinstance(res, dict) or _num(res.get("success")) is None:
        return []
    n = int(res.get("n") or len(res.get("generations") or []) or n_default)
    out = [SteerBar(str(target), str(strength), kind, "success", float(res["success"]), n)]
    if _num(res.get("language_rate")) is not None:
        out.append(SteerBar(str(target), str(strength), kind, "language_rate", float(res["language_rate"]), n))
    return out


STEER_COLOURS = {"steered": "#1f77b4", "random": "#8c8c8c", "baseline": "#d9a441"}


def steer_figure(bars: list[SteerBar], title: str) -> bytes:
    """Grouped bars per target (and strength): steered, random control, baseline; 95 % Wilson intervals.

    Solid bars are the success rate (target language and fluent, where the file separates them);
    the hatched bar beside a solid one is the raw rate of text identified as the target language.
    """
    bars = [b for b in bars if b.measure == "success" or b.condition == "steered"]  # raw rate: steered only
    groups = list(dict.fromkeys((b.target, b.strength) for b in bars if b.condition != "baseline"))
    groups += [(b.target, "") for b in bars if b.condition == "baseline" and all(t != b.target for t, _ in groups)]
    strengths = {s for _, s in groups if s}
    several = len(strengths) > 1
    slots = list(dict.fromkeys((b.condition, b.measure) for b in bars))
    order = {("steered", "success"): 0, ("steered", "language_rate"): 1, ("random", "success"): 2,
             ("random", "language_rate"): 3, ("baseline", "success"): 4, ("baseline", "language_rate"): 5}  # fmt: skip
    slots.sort(key=lambda s: order.get(s, 9))
    width = 0.8 / max(len(slots), 1)
    fig, ax = new_figure(2.6 + max(len(groups), 2) * (0.35 + 0.33 * len(slots)), 3.4)
    index = {(b.target, b.strength, b.condition, b.measure): b for b in bars}
    baseline = {(b.target, b.measure): b for b in bars if b.condition == "baseline"}
    for s, (condition, measure) in enumerate(slots):
        xs, ys, lo, hi = [], [], [], []
        for g, (target, strength) in enumerate(groups):
            b = index.get((target, strength, condition, measure)) or (
                baseline.get((target, measure)) if condition == "baseline" else None
            )
            if b is None:
                continue
            low, high = b.interval
            xs.append(g + (s - (len(slots) - 1) / 2) * width)
            ys.append(100 * b.rate)
            lo.append(100 * (b.rate - low))
            hi.append(100 * (high - b.rate))
        if not xs:
            continue
        hatched = measure == "language_rate"
        label = {"steered": "steered", "random": "random control", "baseline": "no intervention"}[condition]
        label += ": target language (any fluency)" if hatched else (": success" if _has_rates(bars) else "")
        ax.bar(xs, ys, width=width * 0.92, color="white" if hatched else STEER_COLOURS[condition],
               edgecolor=STEER_COLOURS[condition], hatch="///" if hatched else None, lw=1.0, label=label,
               yerr=[lo, hi], capsize=2.5, error_kw={"lw": 0.8, "ecolor": "#333333"}, zorder=2)  # fmt: skip
        for x, y, up in zip(xs, ys, hi, strict=True):
            ax.text(x, y + up + 1.0, f"{y:.0f}", ha="center", va="bottom", fontsize=6.5, color="#333333")
    names = [f"→ {t}" + (f"\ns = {s}" if several else "") for t, s in groups]
    ax.set_xticks(range(len(groups)), names)
    ax.set_ylim(0, 115)
    ax.set_yticks(range(0, 101, 20), [f"{v} %" for v in range(0, 101, 20)])
    ax.set_ylabel("generations (95 % Wilson interval)", fontsize=8)
    ax.grid(axis="y", color="#eeeeee", zorder=0)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=10)
    return png(fig)


SWEEP_KEY = re.compile(r"^\s*([-+0-9.eE]+)\s*@\s*layer\s*(\d+)\s*$")  # "0.1 @ layer 6" (steer --directions)


def direction_sweep(data: dict[str, Any]) -> dict[str, Any] | None:
    """A `steer --directions` result as α × layer grids per target: ``{"alphas", "layers", "targets": {target:
    {"steered": [[rate]], "random": [[rate]], "baseline": rate}}}`` (rows layers, columns α); None if not a sweep."""
    results = data.get("results")
    if not isinstance(results, dict) or not results:
        return None
    cells: dict[str, dict[tuple[float, int], dict[str, float]]] = {}
    for target, entry in results.items():
        for key, kinds in ((entry or {}).get("strengths") or {}).items():
            match = SWEEP_KEY.match(str(key))
            if match is None:
                return None
            rates = {k: float(v["success"]) for k, v in (kinds or {}).items()
                     if isinstance(v, dict) and _num(v.get("success")) is not None}  # fmt: skip
            cells.setdefault(str(target), {})[(float(match[1]), int(match[2]))] = rates
    alphas = sorted({a for grid in cells.values() for a, _ in grid})
    layers = sorted({layer for grid in cells.values() for _, layer in grid})
    if len(alphas) * len(layers) < 2:
        return None
    out: dict[str, Any] = {"alphas": alphas, "layers": layers, "targets": {}}
    for target, grid in cells.items():
        base = _num(((results[target] or {}).get("baseline") or {}).get("success"))
        out["targets"][target] = {
            kind: [[grid.get((a, layer), {}).get(kind, math.nan) for a in alphas] for layer in layers]
            for kind in ("steered", "random")
        } | {"baseline": base}
    return out


def direction_sweep_figure(sweep: dict[str, Any], title: str) -> bytes:
    """One heatmap per target: success of the steered model over α (columns) × layer (rows), cells labelled in
    %, one colour scale (0–100 %) for all panels; the panel title gives the unsteered baseline and the best
    random-direction control."""
    import matplotlib.pyplot as plt

    targets = list(sweep["targets"])
    alphas, layers = sweep["alphas"], sweep["layers"]
    width = 1.2 + 0.55 * len(alphas)
    fig, axes = plt.subplots(1, len(targets), figsize=(0.9 + width * len(targets), 1.6 + 0.32 * len(layers)),
                             layout="constrained", squeeze=False)  # fmt: skip
    im = None
    for ax, target in zip(axes[0], targets, strict=True):
        grid = np.array(sweep["targets"][target]["steered"], dtype=float) * 100
        im = ax.imshow(grid, aspect="auto", cmap=masked_cmap("viridis"), vmin=0, vmax=100)
        label_cells(ax, im, grid, lambda v: f"{v:.0f}", fontsize=6.5 if len(alphas) > 8 else 7.5)
        ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas], fontsize=7.5)
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers], fontsize=7.5)
        ax.set_xlabel("α (× mean residual norm)", fontsize=8)
        rnd = np.array(sweep["targets"][target]["random"], dtype=float)
        base = sweep["targets"][target]["baseline"]
        notes = [] if base is None else [f"no steering {100 * base:.0f} %"]
        if np.isfinite(rnd).any():
            notes.append(f"random direction ≤ {100 * np.nanmax(rnd):.0f} %")
        ax.set_title(f"→ {target}" + (f"\n({', '.join(notes)})" if notes else ""), fontsize=8.5)
    axes[0][0].set_ylabel("layer", fontsize=8)
    fig.colorbar(im, ax=list(axes[0]), label="success (% of generations)", shrink=0.9)
    fig.suptitle(title, fontsize=10)
    return png(fig)


def calibration_figure(cal: dict[str, Any], title: str) -> bytes:
    """`steer --calibrate`'s dev curve, one panel per target: success and fluent rate (and the raw language rate,
    dashed) at each grid setting, the chosen setting marked with a grey band (the success–fluency trade-off)."""
    import matplotlib.pyplot as plt

    curve = {t: [p for p in points if isinstance(p, dict)] for t, points in (cal.get("curve") or {}).items()}
    targets = [t for t, points in curve.items() if points]
    fig, axes = plt.subplots(1, max(len(targets), 1), figsize=(0.8 + 2.6 * max(len(targets), 1), 2.9),
                             layout="constrained", squeeze=False, sharey=True)  # fmt: skip
    for ax, target in zip(axes[0], targets, strict=False):
        points = curve[target]
        x = np.arange(len(points))
        for key, label, style in (("success", "success", "o-"), ("fluent_rate", "fluent", "s-"),
                                  ("language_rate", "in target language", "^--")):  # fmt: skip
            ax.plot(x, [100 * (_num(p.get(key)) or 0.0) for p in points], style, markersize=3.5, linewidth=1.2,
                    label=label)  # fmt: skip
        chosen = (cal.get("chosen") or {}).get(target) or {}
        for i, p in enumerate(points):
            if p.get("mode") == chosen.get("mode") and p.get("strength") == chosen.get("strength"):
                ax.axvspan(i - 0.4, i + 0.4, color="0.85", zorder=0)
        ax.set_xticks(x, [f"{p.get('mode')} {p.get('strength'):g}" if isinstance(p.get("strength"), int | float)
                          else str(p.get("mode")) for p in points], rotation=60, ha="right", fontsize=7)  # fmt: skip
        ax.set_ylim(-5, 105)
        ax.set_title(f"→ {target}", fontsize=8.5)
    axes[0][0].set_ylabel("% of dev generations", fontsize=8)
    axes[0][0].legend(fontsize=6.5, loc="best")
    fig.suptitle(title, fontsize=10)
    return png(fig)


def _has_rates(bars: list[SteerBar]) -> bool:
    return any(b.measure == "language_rate" for b in bars)


def steer_examples(data: dict[str, Any], per_target: int = 2) -> dict[str, list[dict[str, Any]]]:
    """``per_target`` steered generations of each target at its best strength, successes first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for target, entry in (data.get("results") or {}).items():
        best, best_rate = None, -1.0
        for strength, kinds in ((entry or {}).get("strengths") or {}).items():
            steered = (kinds or {}).get("steered") or {}
            rate = _num(steered.get("success"))
            if rate is not None and rate > best_rate and steered.get("generations"):
                best, best_rate = (strength, steered), rate
        if best is None:
            continue
        strength, steered = best
        gens = [g for g in steered["generations"] if isinstance(g, dict)]
        ok = [g for g in gens if _is_success(g, target)]
        chosen = (ok + [g for g in gens if g not in ok])[:per_target]
        out[str(target)] = [{**g, "strength": strength} for g in chosen]
    return out


def _is_success(g: dict[str, Any], target: str) -> bool:
    return str(g.get("lang", "")).split("-")[0] == str(target).split("-")[0] and g.get("fluent", True) is not False


def _prompts(data: dict[str, Any]) -> int:
    prov = data.get("provenance")
    n = prov.get("n_prompts") if isinstance(prov, dict) else None
    return int(n) if isinstance(n, int) else 0


def _signed_sqrt(v):
    return np.sign(v) * np.sqrt(np.abs(v))


def _signed_square(v):
    return np.sign(v) * v * v


def _box(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.3)


def _ppl_text(v: float | None) -> str:
    return "" if v is None else f"PPL {v:.3g}" if v < 1000 else f"PPL {v:,.0f}"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


__all__ = [
    "PPLRatios",
    "SteerBar",
    "ppl_ratio_figure",
    "ppl_ratios",
    "ppl_summary",
    "direction_sweep",
    "direction_sweep_figure",
    "ratio_text",
    "steer_bars",
    "steer_examples",
    "steer_figure",
]
