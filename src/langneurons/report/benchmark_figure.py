"""The benchmark figure: every method on the three causal tests, each beside its random control."""

from __future__ import annotations

from typing import Any

import numpy as np

from langneurons.report.figures import _png, plt


def benchmark_figure(result: dict[str, Any]) -> bytes:
    """Three panels (perplexity, steering, translation) of grouped bars per method, as PNG bytes."""
    methods = list(result["summary"])
    rows = [result["summary"][m] for m in methods]
    x = np.arange(len(methods))
    ppl = [("own language", "ppl_own", 1.0), ("other languages", "ppl_others", 1.0),
           ("random control, own", "ppl_random_own", 1.0)]
    steer = [("success (fluent, in X)", "steer_success", 0.0), ("fluent", "steer_fluent", 0.0),
             ("combined", "steer_combined", 0.0), ("random control success", "steer_random_success", 0.0)]
    chrf = [("en→X (own)", "chrf_drop_own", 0.0), ("en→Y (others)", "chrf_drop_others", 0.0),
            ("random control, en→X", "chrf_drop_random_own", 0.0)]
    panels = [
        ("switched off: PPL factor (median)", "PPL_off / PPL_base", True, ppl),
        ("steering en → X (test prompts)", "share of generations", False, steer),
        ("switched off: translation chrF drop (median)", "chrF points", False, chrf),
    ]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(5.2 * 3, 3.8))
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f"]
    for ax, (title, ylabel, log, series) in zip(axes, panels, strict=True):
        width = 0.8 / len(series)
        for i, (label, key, offset) in enumerate(series):
            values = [np.nan if r.get(key) is None else r[key] + offset for r in rows]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label, color=colours[i])
        if log:
            ax.set_yscale("log")
            ax.axhline(1.0, color="black", lw=0.6)
        else:
            ax.axhline(0.0, color="black", lw=0.6)
        ax.set_xticks(x, methods, rotation=20)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    model = result.get("provenance", {}).get("model", "")
    fig.suptitle(f"benchmark: {model}, languages {','.join(result['languages'])}", fontsize=11)
    fig.tight_layout()
    return _png(fig)
