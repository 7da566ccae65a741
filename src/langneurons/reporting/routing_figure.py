"""The routing figure of an MoE run (from a ``routing`` result): per language a MoE-layer × expert heatmap
of expert usage, and the Jensen–Shannon divergence of each language's routing from the reference over depth."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from langneurons.reporting.figures import plt
from langneurons.reporting.figures import png as _png


def routing_figure(data: dict[str, Any]) -> bytes:
    """PNG bytes of the usage heatmaps (one panel per language) and the divergence from the reference per layer
    (bars where there are few MoE layers, a curve over depth where there are many)."""
    langs, layers = list(data["languages"]), list(data["moe_layers"])
    n = len(langs)
    cols = min(n, 4)
    rows = -(-n // cols)
    experts = max(np.asarray(data["usage"][lang]).shape[1] for lang in langs)
    panel_w = min(6.0, max(3.2, 0.12 * experts))
    panel_h = min(4.0, max(1.8, 0.22 * len(layers) + 1.0))
    fig = plt.figure(figsize=(panel_w * cols + 1.2, panel_h * rows + 3.0), layout="constrained")
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[panel_h] * rows + [2.6])
    vmax = max(float(np.max(np.asarray(data["usage"][lang]))) for lang in langs) or 1.0
    im, heat_axes = None, []
    for i, lang in enumerate(langs):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        heat_axes.append(ax)
        u = np.asarray(data["usage"][lang], dtype=float)  # [L_moe, E]
        im = ax.imshow(u, aspect="auto", origin="lower", cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(lang, fontsize=9)
        ax.set_xlabel("expert", fontsize=8)
        ticks = range(0, len(layers), max(1, len(layers) // 6))
        ax.set_yticks(list(ticks), [str(layers[t]) for t in ticks], fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="x", labelsize=7)
        if i % cols == 0:
            ax.set_ylabel("MoE layer", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=heat_axes, shrink=0.8, label="share of routing decisions")
    ax = fig.add_subplot(grid[rows, :])
    others = [lang for lang in langs if lang != data["reference"]]
    js = {lang: np.asarray(data["js_divergence"][lang], dtype=float) for lang in others}
    if len(layers) < 6:  # a line through two or three points says less than bars with their values
        width = min(0.8 / max(len(others), 1), 0.3)
        for k, lang in enumerate(others):
            xs = np.arange(len(layers)) + (k - (len(others) - 1) / 2) * width
            bars = ax.bar(xs, js[lang], width=width * 0.92, label=lang)
            ax.bar_label(bars, fmt="%.3f", fontsize=6.5, padding=1)
        ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlim(-0.7, len(layers) - 0.3)
        ax.set_xlabel("MoE layer")
    else:
        for lang in others:
            ax.plot(layers, js[lang], marker="o", ms=3, label=lang)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer")
    ax.set_ylabel(f"JS divergence from {data['reference']} (bits)", fontsize=8)
    top = max((float(np.nanmax(v)) for v in js.values() if np.isfinite(v).any()), default=0.0)
    ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)  # room for the value labels
    if others:
        ax.legend(fontsize=7, ncol=min(len(others), 8), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
