"""Report pieces of `langneurons stability` and `ppl --controls R` results (read from result files only).

Figures come back as ``(file name, PNG bytes, heading, caption)``; `report.html` wraps them.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from langneurons.reporting.figures import plt
from langneurons.reporting.figures import png as _png

STABILITY_FORMAT = "langneurons-stability/1"
FigureParts = tuple[str, bytes, str, str]


def _languages(data: dict[str, Any]) -> list[str]:
    return [str(x) for x in data.get("languages") or []]


def bootstrap_figure(data: dict[str, Any]) -> bytes:
    """Per language: mean bootstrap Jaccard with the full-data set (5–95 % band), full vs stable-core size."""
    boot, langs = data["bootstrap"], _languages(data)
    per = boot["per_language"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(4 + 0.9 * len(langs), 3.4))
    x = list(range(len(langs)))
    mean = [per[lang]["jaccard"]["mean"] for lang in langs]
    lo = [m - per[lang]["jaccard"]["p05"] for m, lang in zip(mean, langs, strict=True)]
    hi = [per[lang]["jaccard"]["p95"] - m for m, lang in zip(mean, langs, strict=True)]
    # points, not bars: the axis is zoomed to the bands so differences of a few hundredths show
    ax1.errorbar(x, mean, yerr=[lo, hi], fmt="o", color="#1f77b4", capsize=3)
    ax1.set_xticks(x, langs)
    lows = [per[lang]["jaccard"]["p05"] for lang in langs if per[lang]["jaccard"]["p05"] is not None]
    ax1.set_ylim(max(0.0, min(lows, default=0.0) - 0.05), 1.02)
    ax1.grid(axis="y", alpha=0.3)
    ax1.set_ylabel("Jaccard with the full-data set (mean, 5–95 %)")
    ax1.set_title(f"{boot['successful']} bootstrap resamples of {boot['shards']} shards", fontsize=9)
    full = [per[lang]["full_size"] for lang in langs]
    core = [per[lang]["core_size"] for lang in langs]
    ax2.bar([i - 0.2 for i in x], full, width=0.4, label="full-data set", color="#aec7e8")
    ax2.bar([i + 0.2 for i in x], core, width=0.4, label=f"stable core (≥ {boot['threshold']:g})", color="#d62728")
    ax2.set_xticks(x, langs)
    ax2.set_ylabel("neurons")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{data.get('method')}: bootstrap stability", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def split_half_figure(data: dict[str, Any]) -> bytes:
    """Per language: split-half Jaccard (mean, 5–95 % over splits) and its extrapolation to the full data."""
    halves, langs = data["split_half"], _languages(data)
    per = halves["per_language"]
    fig, ax = plt.subplots(figsize=(3 + 0.7 * len(langs), 3.4))
    x = list(range(len(langs)))
    mean = [per[lang]["jaccard"]["mean"] for lang in langs]
    lo = [m - per[lang]["jaccard"]["p05"] for m, lang in zip(mean, langs, strict=True)]
    hi = [per[lang]["jaccard"]["p95"] - m for m, lang in zip(mean, langs, strict=True)]
    ax.errorbar([i - 0.12 for i in x], mean, yerr=[lo, hi], fmt="o", color="#1f77b4", capsize=3,
                label=f"split halves ({halves['shards_per_half']} vs {halves['shards_per_half']} shards)")
    ext = [per[lang]["extrapolated"]["mean"] for lang in langs]
    ax.plot([i + 0.12 for i in x], ext, "D", color="#d62728", ms=5, label="full size ≈ 2J/(1+J)")  # fmt: skip
    ax.set_xticks(x, langs)
    lows = [per[lang]["jaccard"]["p05"] for lang in langs]
    ax.set_ylim(max(0.0, min(lows, default=0.0) - 0.05), 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylabel("Jaccard between the halves' sets")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{data.get('method')}: split-half reproducibility ({halves['successful']} splits, "
                 f"{halves['resampling']})", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return _png(fig)


def data_size_figure(data: dict[str, Any]) -> bytes:
    """Small multiples, one panel per language: the nested data-size curve (Jaccard with the full-data set
    against counted tokens, mean and min–max) and, when present, the split-half Jaccard at half the tokens
    with its full-size extrapolation. One panel per language keeps ten languages readable."""
    curve, langs = data["data_size"], _languages(data)
    halves = (data.get("split_half") or {}).get("per_language") or {}
    cols = min(5, max(1, len(langs)))
    rows = math.ceil(len(langs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols + 0.6, 2.0 * rows + 0.9), sharex=True, sharey=True,
                             squeeze=False)  # fmt: skip
    lows = [p["per_language"][lang]["jaccard"]["min"] for p in curve["points"] for lang in langs]
    lows += [h["jaccard"]["p05"] for h in halves.values() if h["jaccard"]["p05"] is not None]
    lows = [v for v in lows if v is not None]
    bottom = max(0.0, min(lows, default=0.0) - 0.05)
    for i, lang in enumerate(langs):
        ax = axes[i // cols][i % cols]
        pts = [
            p["per_language"][lang] for p in curve["points"] if p["per_language"][lang]["jaccard"]["mean"] is not None
        ]
        tokens = [p["tokens"] for p in pts]
        j = [p["jaccard"] for p in pts]
        ax.fill_between(tokens, [v["min"] for v in j], [v["max"] for v in j], color="grey", alpha=0.25, lw=0)
        ax.plot(tokens, [v["mean"] for v in j], marker="o", ms=3, color="grey", label="nested subset vs full")
        h = halves.get(lang)
        if h and h["jaccard"]["mean"] is not None:
            m = h["jaccard"]
            ax.errorbar([h["tokens_half"]], [m["mean"]], yerr=[[m["mean"] - m["p05"]], [m["p95"] - m["mean"]]],
                        fmt="o", color="#1f77b4", capsize=3, ms=4, label="split halves (5–95 %)")  # fmt: skip
            ax.plot([h["tokens_full"]], [h["extrapolated"]["mean"]], "D", color="#d62728", ms=4,
                    label="full size ≈ 2J/(1+J)")  # fmt: skip
        ax.set_title(lang, fontsize=9)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1,000 · 2,000 · 5,000: a decade spans the data
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom, 1.02)
    for i in range(len(langs), rows * cols):
        axes[i // cols][i % cols].set_visible(False)
    for r in range(rows):
        axes[r][0].set_ylabel("Jaccard", fontsize=8)
    for c in range(cols):
        axes[rows - 1][c].set_xlabel("counted tokens", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fractions = ", ".join(f"{p['shards']}/{curve['shards']}" for p in curve["points"])
    fig.suptitle(f"{data.get('method')}: data size per language (nested shards {fractions}; {curve['repeats']} "
                 "orders)", fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _png(fig)


def sensitivity_figure(data: dict[str, Any]) -> bytes:
    """LAPE: mean Jaccard with the default set over top_rate × quantile; entropy−λ: against λ."""
    points = [p for p in data["sensitivity"]["points"] if p.get("jaccard_mean") is not None]
    if data.get("method") == "lape":
        rates = sorted({p["params"]["top_rate"] for p in points})
        qs = sorted({p["params"]["filter_rate"] for p in points})
        grid = [[math.nan] * len(qs) for _ in rates]
        for p in points:
            grid[rates.index(p["params"]["top_rate"])][qs.index(p["params"]["filter_rate"])] = p["jaccard_mean"]
        fig, ax = plt.subplots(figsize=(1.8 + 0.9 * len(qs), 1.4 + 0.55 * len(rates)))
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
        ax.set_xticks(range(len(qs)), [f"{q:g}" for q in qs])
        ax.set_yticks(range(len(rates)), [f"{r:g}" for r in rates])
        ax.set_xlabel("filter_rate = bar_ratio")
        ax.set_ylabel("top_rate")
        for y, row in enumerate(grid):
            for x, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(
                        x, y, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.6 else "black"
                    )
        fig.colorbar(im, ax=ax, label="mean Jaccard with the default set")
    else:
        fixed = sorted((p for p in points if p["params"].get("lambda") != "auto"), key=lambda p: p["params"]["lambda"])
        fig, ax = plt.subplots(figsize=(6, 3.4))
        ax.plot(
            [p["params"]["lambda"] for p in fixed], [p["jaccard_mean"] for p in fixed], marker="o", label="mean Jaccard"
        )
        ax.plot(
            [p["params"]["lambda"] for p in fixed],
            [p["kept"] for p in fixed],
            marker="s",
            label="share of default pairs kept",
        )
        auto = next((p for p in points if p["params"].get("lambda") == "auto"), None)
        if auto and auto.get("lambda") is not None:
            ax.axvline(auto["lambda"], color="grey", ls="--", label=f"AutoSweep λ = {auto['lambda']:.3g}")
        ax.set_xlabel("λ")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    ax.set_title(f"{data.get('method')}: overlap with the default set", fontsize=10)
    return _png(fig)


def stability_figures(name: str, data: dict[str, Any]) -> list[FigureParts]:
    """The figures a stability result allows (bootstrap, data-size, sensitivity), each with a caption."""
    if data.get("format") != STABILITY_FORMAT:
        return []
    prov = data.get("provenance") or {}
    on = (f"statistics {prov.get('stats')} (model {prov.get('model')}, site {prov.get('site')}, corpus "
          f"{prov.get('corpus')}); method {data.get('method')} {data.get('params') or '(defaults)'}; "
          f"{name}.json")  # fmt: skip
    out: list[FigureParts] = []
    if data.get("bootstrap"):
        b = data["bootstrap"]
        lam = "" if "lambda" not in b else (
            f" AutoSweep λ re-chosen in each resample: mean {b['lambda']['mean']:.3g} "
            f"(5–95 % {b['lambda']['p05']:.3g}–{b['lambda']['p95']:.3g}).")  # fmt: skip
        out.append((
            f"{name}-bootstrap.png", bootstrap_figure(data), f"{name}: bootstrap stability",
            f"Left: Jaccard index of each language's set in {b['successful']} bootstrap resamples ({b['shards']} "
            f"shards drawn with replacement, seed {b['seed']}; {b.get('resampling', 'independent')} resampling: "
            f"{b.get('resampling_reason', 'one draw per language')}) with its full-data set; dots = mean, "
            f"whiskers = 5–95 %. Right: full-data set size and stable core ({b['core_rule']}).{lam} {on}.",
        ))  # fmt: skip
    if data.get("split_half"):
        h = data["split_half"]
        caption = (
            f"Per language: Jaccard index between the sets found on two disjoint halves of the shards "
            f"({h['successful']} seeded random splits into {h['shards_per_half']} + {h['shards_per_half']} of "
            f"{h['shards']} shards, seed {h['seed']}; {h['resampling']} resampling: {h['resampling_reason']}); "
            f"dot = mean, whiskers = 5–95 % over the splits. Diamonds: extrapolation to the full data, "
            f"{h['extrapolation']}. {on}."
        )
        out.append((f"{name}-split-half.png", split_half_figure(data), f"{name}: split-half reproducibility", caption))
    if data.get("data_size"):
        c = data["data_size"]
        marks = "" if not data.get("split_half") else (
            " Blue: split-half Jaccard at half the tokens (5–95 %); red diamond: its extrapolation to full size "
            "(approximate). These compare sets that share no data and are the measure of reproducibility.")  # fmt: skip
        out.append((
            f"{name}-data-size.png", data_size_figure(data), f"{name}: how much text is needed",
            f"One panel per language. Grey (secondary view): identification on nested fractions of the shards "
            f"({c['rule']}), {c['repeats']} random orders (line = mean, band = min–max), Jaccard with the "
            f"full-data set against counted tokens. Each subset is part of the full data, so the grey curve "
            f"reaches 1 by construction; it shows how fast subsets approach the full-data set, not whether "
            f"another corpus of the same size would give the same set, and a curve still rising at the end "
            f"proves nothing.{marks} Set sizes per fraction are in {name}.json. {on}.",
        ))  # fmt: skip
    if data.get("sensitivity") and any(p.get("jaccard_mean") is not None for p in data["sensitivity"]["points"]):
        out.append((
            f"{name}-sensitivity.png", sensitivity_figure(data), f"{name}: threshold sensitivity",
            f"Mean over languages of the Jaccard index between the set at each setting and the set at the "
            f"default setting ({data['sensitivity']['default']['params']}). {on}.",
        ))  # fmt: skip
    return out


def significance_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """ΔPPL on each language's own text with its bootstrap CI, the controls' mean / max, p and z, as a header and
    rows of text for the report's table; ``([], [])`` when the result has no significance test."""
    sig = (data.get("significance") or {}).get("per_language")
    if not isinstance(sig, dict) or not sig:
        return [], []

    def pct(v: Any) -> str:
        return "–" if v is None else f"{v:+.1%}" if abs(v) < 10 else f"×{v + 1:.3g}"

    def pvalue(s: dict[str, Any]) -> str:  # a NaN/inf effect has no p: say why instead of a number
        return f"{s['p']:.3g}" if s.get("p") is not None else f"not computable ({s.get('reason') or 'NaN'})"

    rows = []
    for lang, s in sig.items():
        ci = s.get("ci95") or [None, None]
        z = "–" if s.get("z") is None else f"{s['z']:.1f}"
        rows.append([str(lang), pct(s.get("real")), f"{pct(ci[0])} … {pct(ci[1])}", pct(s.get("control_mean")),
                     pct(s.get("control_max")), pvalue(s), z])  # fmt: skip
    r = next(iter(sig.values())).get("controls")
    head = ["language", "ΔPPL on itself", "95 % CI (sentences)", "controls: mean", "controls: max",
            f"p ({r} controls)", "z"]  # fmt: skip
    return head, rows


__all__ = ["STABILITY_FORMAT", "significance_rows", "stability_figures"]
