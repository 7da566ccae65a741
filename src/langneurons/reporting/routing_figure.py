"""The routing figure of an MoE run (from a ``routing`` result): per language a MoE-layer × expert heatmap
of expert usage, and the Jensen–Shannon divergence of each language's routing from the reference over depth."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from langneurons.reporting.figures import plt
from langneurons.reporting.figures import png as _png


def routing_figure(data: dict[str, Any]) -> bytes:
    """PNG bytes of the usage heatmaps (one panel per language) and the divergence curve."""
    langs, layers = list(data["languages"]), list(data["moe_layers"])
    n = len(langs)
    cols = min(n, 5)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(2.6 * cols + 0.6, 2.2 * rows + 2.8))
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1.0] * rows + [1.1], hspace=0.55, wspace=0.3)
    vmax = max(float(np.max(np.asarray(data["usage"][lang]))) for lang in langs) or 1.0
    im = None
    for i, lang in enumerate(langs):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        u = np.asarray(data["usage"][lang], dtype=float)  # [L_moe, E]
        im = ax.imshow(u, aspect="auto", origin="lower", cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(lang, fontsize=9)
        ax.set_xlabel("expert", fontsize=8)
        ticks = range(0, len(layers), max(1, len(layers) // 6))
        ax.set_yticks(list(ticks), [str(layers[t]) for t in ticks], fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        if i % cols == 0:
            ax.set_ylabel("layer", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.6, label="share of routing decisions")
    ax = fig.add_subplot(grid[rows, :])
    for lang in langs:
        if lang != data["reference"]:
            ax.plot(layers, data["js_divergence"][lang], marker="o", ms=3, label=lang)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel(f"JS divergence from {data['reference']} (bits)")
    ax.set_ylim(bottom=0)
    if len(langs) > 1:
        ax.legend(fontsize=7, ncol=min(len(langs), 8))
    ax.grid(alpha=0.3)
    return _png(fig)
