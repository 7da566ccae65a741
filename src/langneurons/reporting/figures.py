"""Matplotlib figures (Agg backend) of result data, returned as PNG bytes; no model is ever loaded.

Shared conventions: constrained layout (titles, colour bars and legends never overlap), one number
format per figure, cell labels in black or white by the luminance of the cell behind them.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from langneurons.analysis.sets import class_distribution, language_overlap, layer_distribution  # noqa: E402
from langneurons.formats.neuronset import NeuronSet  # noqa: E402

CLASS_COLOURS = {"specific": "#d62728", "related": "#ff7f0e", "agnostic": "#2ca02c", "unassigned": "#7f7f7f"}
DPI = 110
MASKED = "#e6e6e6"  # cells that carry no value (the diagonal of an overlap matrix, missing numbers)


def new_figure(width: float, height: float):
    """A figure with one axes under constrained layout (no title / colour-bar collisions)."""
    return plt.subplots(figsize=(width, height), layout="constrained")


def png(fig) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on ``rgba`` (WCAG relative luminance)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.18 else "white"


def label_cells(ax, im, data: np.ndarray, text, fontsize: float = 7.0, skip_zero: bool = False) -> None:
    """Write ``text(value)`` in every finite cell, in the colour that contrasts with the cell."""
    for (y, x), v in np.ndenumerate(data):
        if not math.isfinite(v) or (skip_zero and v == 0):
            continue
        colour = text_colour(im.cmap(im.norm(v)))
        ax.text(x, y, text(v), ha="center", va="center", fontsize=fontsize, color=colour)


def masked_cmap(name: str):
    """A copy of colour map ``name`` that draws NaN cells in light grey."""
    return matplotlib.colormaps[name].with_extremes(bad=MASKED)


def neuron_heatmap(ns: NeuronSet, title: str = "") -> bytes:
    """Layer × language heatmap of neuron counts (empty cells grey, counts written in every other)."""
    dist = layer_distribution(ns)
    data = np.array([dist[lang] for lang in ns.languages], dtype=float).T  # [L, K]
    k = len(ns.languages)
    fig, ax = new_figure(2.2 + 0.6 * k, 1.6 + 0.24 * ns.num_layers)
    shown = np.where(data > 0, data, np.nan)
    im = ax.imshow(shown, aspect="auto", cmap=masked_cmap("viridis"), origin="lower", vmin=0,
                   vmax=max(float(data.max()), 1.0))  # fmt: skip
    ax.set_xticks(range(k), ns.languages)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(ns.num_layers, 18)))
    ax.set_xlabel("language")
    ax.set_ylabel("layer")
    if ns.num_layers * k <= 600:
        label_cells(ax, im, shown, lambda v: f"{v:.0f}", fontsize=6.5 if k > 12 else 7.0)
    fig.colorbar(im, ax=ax, label="neurons", shrink=0.9)
    ax.set_title(title or "neurons per layer and language", fontsize=10)
    return png(fig)


def class_profile(ns: NeuronSet, phases: dict[str, Any] | None = None, title: str = "") -> bytes:
    """Neurons per class and layer (stacked bars), with the depth phases shaded and their means drawn."""
    dist = class_distribution(ns)
    layers = np.arange(ns.num_layers)
    fig, ax = new_figure(7.6, 3.4)
    bottom = np.zeros(ns.num_layers)
    for name, values in dist.items():
        v = np.array(values, dtype=float)
        if v.sum():
            ax.bar(layers, v, bottom=bottom, color=CLASS_COLOURS.get(name), label=name, width=0.85, zorder=2)
            bottom += v
    top = max(float(bottom.max()), 1.0)
    if phases and phases.get("bands"):
        for i, band in enumerate(phases["bands"]):
            start, end = band["layers"]
            ax.axvspan(start - 0.5, end + 0.5, color="#000000", alpha=0.05 if i % 2 == 0 else 0.0, lw=0, zorder=0)
            if i:
                ax.axvline(start - 0.5, color="#555555", lw=0.8, ls=":", zorder=1)
            ax.hlines(band["per_layer"], start - 0.45, end + 0.45, colors="black", lw=1.4, zorder=3,
                      label="phase mean (specific + related)" if i == 0 else None)  # fmt: skip
            ax.text((start + end) / 2, top * 1.03, f"P{i + 1}\n{band['level']}\n{band['share']:.0%}",
                    ha="center", va="bottom", fontsize=6.5, color="#333333", linespacing=1.1)  # fmt: skip
        ax.set_ylim(0, top * 1.32)
    ax.set_xlim(-0.6, ns.num_layers - 0.4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(ns.num_layers, 20)))
    ax.set_xlabel(f"layer (0 … {ns.num_layers - 1})")
    ax.set_ylabel("neurons")
    ax.legend(fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or "neuron classes over depth, with the depth phases", fontsize=10)
    return png(fig)


def overlap_matrix(ns: NeuronSet, title: str = "") -> bytes:
    """Jaccard overlap between languages' neuron sets (diagonal masked: it says each language's size)."""
    ov = language_overlap(ns)
    jac, shared = np.array(ov["jaccard"], dtype=float), np.array(ov["shared"], dtype=float)
    k = len(ns.languages)
    off = jac.copy()
    np.fill_diagonal(off, np.nan)
    finite = off[np.isfinite(off)]
    vmax = max(float(finite.max()) if finite.size else 0.0, 0.05)
    fig, ax = new_figure(2.2 + 0.62 * k, 1.5 + 0.55 * k)
    im = ax.imshow(off, vmin=0, vmax=vmax, cmap=masked_cmap("magma"))
    ax.set_xticks(range(k), ns.languages)
    ax.set_yticks(range(k), ns.languages)
    if k <= 24:
        fontsize = 7.0 if k <= 12 else 5.5
        for (y, x), v in np.ndenumerate(shared):
            if x == y:
                ax.text(x, y, f"{v:.0f}", ha="center", va="center", fontsize=fontsize, color="#555555",
                        style="italic")  # fmt: skip
            else:
                colour = text_colour(im.cmap(im.norm(off[y, x])))
                ax.text(x, y, f"{v:.0f}", ha="center", va="center", fontsize=fontsize, color=colour)
    fig.colorbar(im, ax=ax, label="Jaccard index (off-diagonal)", shrink=0.9)
    ax.set_title(title or "overlap between languages", fontsize=10)
    return png(fig)


def matrix_figure(
    rows: list[str],
    cols: list[str],
    values: list[list[float]],
    title: str,
    label: str,
    center: float | None = None,
) -> bytes:
    """A labelled matrix of result numbers (files not written by langneurons); diverging around ``center``."""
    data = np.array([[np.nan if v is None else float(v) for v in row] for row in values], dtype=float)
    fig, ax = new_figure(2.4 + 0.62 * len(cols), 1.4 + 0.42 * len(rows))
    finite = data[np.isfinite(data)]
    kwargs: dict[str, Any] = {"cmap": masked_cmap("viridis")}
    if center is not None and finite.size:
        span = max(float(np.abs(finite - center).max()), 1e-12)
        kwargs = {"cmap": masked_cmap("RdBu_r"), "vmin": center - span, "vmax": center + span}
    im = ax.imshow(data, aspect="auto", **kwargs)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("evaluated language")
    if len(rows) * len(cols) <= 400:
        label_cells(ax, im, data, lambda v: f"{v:.3g}")
    fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    ax.set_title(title, fontsize=10)
    return png(fig)


def similarity_figure(sim: dict[str, Any], title: str = "") -> bytes:
    """LRDS and SADS per layer with their bootstrap 95 % bands (where the file has them), the whole-model values
    as dashed lines, and the highest layer marked as a peak only where it stands outside the other layers' bands."""
    per = sim["per_layer"]
    bands = sim.get("per_layer_ci95") or {}
    fig, ax = new_figure(7.6, 3.6)
    for key, colour, name in (("lrds", "#1f77b4", "LRDS (language)"), ("sads", "#d62728", "SADS (meaning)")):
        values = np.array([np.nan if v is None else v for v in per.get(key) or []], dtype=float)
        if not values.size:
            continue
        layers = np.arange(values.size)
        band = np.array([[np.nan, np.nan] if b is None else [np.nan if v is None else v for v in b]
                         for b in bands.get(key) or []], dtype=float)  # fmt: skip
        if band.shape == (values.size, 2):
            ax.fill_between(layers, band[:, 0], band[:, 1], color=colour, alpha=0.18, lw=0,
                            label=f"{key.upper()} 95 % band")  # fmt: skip
        ax.plot(layers, values, marker="o", ms=3.5, color=colour, label=name)
        whole = (sim.get("whole_model") or {}).get(key)
        if whole is not None:
            ax.axhline(whole, color=colour, ls="--", lw=0.8, alpha=0.7, label=f"{key.upper()} of the whole model")
        peak = (sim.get("peaks") or {}).get(key) or {}
        if np.isfinite(values).any() and peak.get("stands_out", band.shape != (values.size, 2)):
            best = int(np.nanargmax(values))
            ax.annotate(f"peak {values[best]:.3f}", (best, values[best]), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontsize=7, color=colour)  # fmt: skip
    ax.axhline(0, color="black", lw=0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.12)
    ax.set_xlabel("layer")
    ax.set_ylabel("difference of mean cosine")
    ax.legend(fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or "LRDS and SADS per layer", fontsize=10)
    return png(fig)


def comparison_figures(result: dict[str, Any]) -> dict[str, bytes]:
    """PNGs of a `compare` result: depth histograms per run for each set, and LRDS/SADS on relative depth."""
    out: dict[str, bytes] = {}
    bins = int(result.get("bins", 10))
    centres = (np.arange(bins) + 0.5) / bins
    for name, data in result.get("sets", {}).items():
        fig, ax = new_figure(7.6, 3.4)
        width = 0.8 / bins / max(len(data["profiles"]), 1)
        for i, (label, profile) in enumerate(data["profiles"].items()):
            hists = np.array(list(profile["depth_histogram"].values()), dtype=float)
            counts = np.array(list(profile["counts"].values()), dtype=float)
            pooled = (hists * counts[:, None]).sum(0) / max(counts.sum(), 1)
            ax.bar(centres + (i - (len(data["profiles"]) - 1) / 2) * width, pooled, width=width, label=label)
        ax.set_xlabel("relative depth")
        ax.set_ylabel("share of (language, neuron) pairs")
        ax.legend(fontsize=8, frameon=False)
        ax.set_title(f"{name}: where the neurons sit, by relative depth", fontsize=10)
        out[f"compare-{_safe(name)}-depth.png"] = png(fig)
    curves = {k: v for k, v in result.get("similarity", {}).items() if v}
    if curves:
        fig, ax = new_figure(7.6, 3.4)
        for label, c in curves.items():
            for key, style in (("lrds", "-"), ("sads", "--")):
                values = [np.nan if v is None else v for v in c.get(key) or []]
                if values:
                    ax.plot(c["relative_depth"], values, style, marker="o", ms=3, label=f"{key.upper()} {label}")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("relative depth")
        ax.set_ylabel("difference of mean cosine")
        ax.legend(fontsize=7, frameon=False)
        ax.set_title("LRDS (solid) and SADS (dashed) per layer", fontsize=10)
        out["compare-similarity.png"] = png(fig)
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:80] or "set"


__all__ = [
    "CLASS_COLOURS",
    "class_profile",
    "label_cells",
    "masked_cmap",
    "new_figure",
    "png",
    "text_colour",
    "comparison_figures",
    "matrix_figure",
    "neuron_heatmap",
    "overlap_matrix",
    "similarity_figure",
]
