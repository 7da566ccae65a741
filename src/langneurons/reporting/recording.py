"""Figures of a bare recording (stats file only): firing rate per layer, profile correlation, tokens counted."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator, PercentFormatter

from langneurons.reporting.figures import label_cells, masked_cmap, new_figure, png


def activation_rate_figure(summary: dict[str, Any], title: str = "") -> bytes:
    """One line per language: the share of a layer's neurons with activation > 0 on an average token."""
    rate = np.array(summary["activation_rate"], dtype=float)  # [K, L]
    langs = summary["languages"]
    fig, ax = new_figure(7.6, 3.4)
    cmap = _palette(len(langs))
    for k, lang in enumerate(langs):
        ax.plot(np.arange(rate.shape[1]), 100 * rate[k], marker="o", ms=2.5, lw=1.2, color=cmap[k], label=lang)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(rate.shape[1], 20)))
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_xlabel("layer")
    ax.set_ylabel("neurons with activation > 0\n(mean over tokens)", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              ncol=1 if len(langs) <= 14 else 2)  # fmt: skip
    ax.set_title(title or "activation rate per layer and language", fontsize=10)
    return png(fig)


MIN_SPAN = 0.05  # the colour scale of the correlation map covers at least the mean ± this


def profile_correlation_figure(summary: dict[str, Any], title: str = "") -> bytes:
    """Language × language correlation of activation-probability profiles (diagonal masked)."""
    corr = np.array(summary["profile_correlation"], dtype=float)
    langs = summary["languages"]
    k = len(langs)
    off = corr.copy()
    np.fill_diagonal(off, np.nan)
    finite = off[np.isfinite(off)]
    # A diverging map around a stated reference, the mean over the pairs, with at least ±MIN_SPAN: pairs more
    # (red) or less (blue) alike than the typical pair stand out, and a spread of 0.73-0.78 is not stretched
    # over the whole colour range as if it were large. The cells carry the values.
    ref = float(finite.mean()) if finite.size else 0.0
    span = max(float(np.abs(finite - ref).max()) if finite.size else 0.0, MIN_SPAN)
    fig, ax = new_figure(2.4 + 0.62 * k, 1.5 + 0.55 * k)
    im = ax.imshow(off, cmap=masked_cmap("RdBu_r"), vmin=ref - span, vmax=ref + span)
    ax.set_xticks(range(k), langs)
    ax.set_yticks(range(k), langs)
    if k <= 16:
        label_cells(ax, im, off, lambda v: f"{v:.3f}", fontsize=7.0 if k <= 10 else 5.5)
    fig.colorbar(im, ax=ax, label=f"Pearson r over all neurons\n(white: mean of the pairs, {ref:.3f})", shrink=0.9)
    ax.set_title(title or "how alike languages make neurons fire", fontsize=10)
    return png(fig)


def tokens_figure(summary: dict[str, Any], title: str = "") -> bytes:
    """Counted tokens per language (horizontal bars), with the sentences they came from."""
    langs = summary["languages"]
    tokens = [summary["tokens"][lang] for lang in langs]
    sentences = summary.get("sentences") or {}
    fig, ax = new_figure(6.4, 1.0 + 0.28 * len(langs))
    y = np.arange(len(langs))
    ax.barh(y, tokens, color="#4c72b0", height=0.7)
    top = max(max(tokens), 1)
    for i, lang in enumerate(langs):
        n = sentences.get(lang)
        text = f"{tokens[i]:,}" + (f" tokens / {n:,} sentences" if isinstance(n, int) else " tokens")
        ax.text(tokens[i] + top * 0.01, i, text, va="center", fontsize=7)
    ax.set_yticks(y, langs)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("counted tokens (padding, BOS and EOS excluded)", fontsize=8)
    ax.set_title(title or "tokens counted per language", fontsize=10)
    return png(fig)


def _palette(n: int) -> list:
    import matplotlib

    name = "tab10" if n <= 10 else "tab20"
    cmap = matplotlib.colormaps[name]
    return [cmap(i % cmap.N) for i in range(n)]


__all__ = ["activation_rate_figure", "profile_correlation_figure", "tokens_figure"]
