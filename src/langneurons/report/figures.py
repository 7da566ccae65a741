"""Matplotlib figures (Agg backend) of result data, returned as PNG bytes; no model is ever loaded."""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from langneurons.analyze.sets import class_distribution, language_overlap, layer_distribution  # noqa: E402
from langneurons.formats.neuronset import NeuronSet  # noqa: E402

CLASS_COLOURS = {"specific": "#d62728", "related": "#ff7f0e", "agnostic": "#2ca02c", "unassigned": "#7f7f7f"}
DPI = 110


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def neuron_heatmap(ns: NeuronSet, title: str = "") -> bytes:
    """Layer × language heatmap of neuron counts."""
    dist = layer_distribution(ns)
    data = np.array([dist[lang] for lang in ns.languages], dtype=float).T  # [L, K]
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(ns.languages), 1.5 + 0.22 * ns.num_layers))
    im = ax.imshow(data, aspect="auto", cmap="viridis", origin="lower")
    ax.set_xticks(range(len(ns.languages)), ns.languages)
    ax.set_yticks(range(ns.num_layers)[:: max(1, ns.num_layers // 16)])
    ax.set_xlabel("language")
    ax.set_ylabel("layer")
    if ns.num_layers * len(ns.languages) <= 400:
        for (y, x), v in np.ndenumerate(data):
            if v:
                ax.text(
                    x,
                    y,
                    str(int(v)),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v < data.max() * 0.6 else "black",
                )
    fig.colorbar(im, ax=ax, label="neurons")
    ax.set_title(title or "neurons per layer and language", fontsize=10)
    return _png(fig)


def class_profile(ns: NeuronSet, title: str = "") -> bytes:
    """Neurons per class over relative depth (stacked bars per layer)."""
    dist = class_distribution(ns)
    layers = np.arange(ns.num_layers)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bottom = np.zeros(ns.num_layers)
    for name, values in dist.items():
        v = np.array(values, dtype=float)
        if v.sum():
            ax.bar(layers, v, bottom=bottom, color=CLASS_COLOURS.get(name), label=name, width=0.85)
            bottom += v
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"layer (0 … {ns.num_layers - 1}; relative depth = (layer + 0.5) / {ns.num_layers})")
    ax.set_ylabel("neurons")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "neuron classes over depth", fontsize=10)
    return _png(fig)


def overlap_matrix(ns: NeuronSet, title: str = "") -> bytes:
    """Jaccard overlap between languages' neuron sets, with shared counts written in each cell."""
    ov = language_overlap(ns)
    jac, shared = np.array(ov["jaccard"]), np.array(ov["shared"])
    k = len(ns.languages)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * k, 1.2 + 0.55 * k))
    im = ax.imshow(jac, vmin=0, vmax=1, cmap="magma")
    ax.set_xticks(range(k), ns.languages)
    ax.set_yticks(range(k), ns.languages)
    if k <= 20:
        for (y, x), v in np.ndenumerate(shared):
            ax.text(
                x,
                y,
                str(int(v)),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if jac[y, x] < 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, label="Jaccard")
    ax.set_title(title or "overlap between languages (cells: shared neurons)", fontsize=10)
    return _png(fig)


def matrix_figure(
    rows: list[str],
    cols: list[str],
    values: list[list[float]],
    title: str,
    label: str,
    center: float | None = None,
) -> bytes:
    """A labelled matrix (e.g. ΔPPL: intervention × evaluated language); diverging around ``center``."""
    data = np.array([[np.nan if v is None else float(v) for v in row] for row in values], dtype=float)
    fig, ax = plt.subplots(figsize=(1.8 + 0.6 * len(cols), 1.2 + 0.45 * len(rows)))
    finite = data[np.isfinite(data)]
    kwargs: dict[str, Any] = {"cmap": "viridis"}
    if center is not None and finite.size:
        span = max(float(np.abs(finite - center).max()), 1e-12)
        kwargs = {"cmap": "RdBu_r", "vmin": center - span, "vmax": center + span}
    im = ax.imshow(data, aspect="auto", **kwargs)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("evaluated language")
    if len(rows) * len(cols) <= 400:
        for (y, x), v in np.ndenumerate(data):
            if math.isfinite(v):
                ax.text(x, y, f"{v:.3g}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def similarity_figure(sim: dict[str, Any], title: str = "") -> bytes:
    """LRDS and SADS per layer (whole-model values as dashed lines), with the peaks marked."""
    per = sim["per_layer"]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for key, colour, name in (("lrds", "#1f77b4", "LRDS (language)"), ("sads", "#d62728", "SADS (meaning)")):
        values = np.array([np.nan if v is None else v for v in per.get(key) or []], dtype=float)
        if not values.size:
            continue
        layers = np.arange(values.size)
        ax.plot(layers, values, marker="o", ms=3.5, color=colour, label=name)
        whole = (sim.get("whole_model") or {}).get(key)
        if whole is not None:
            ax.axhline(whole, color=colour, ls="--", lw=0.8, alpha=0.7)
        if np.isfinite(values).any():
            best = int(np.nanargmax(values))
            ax.annotate(
                f"{values[best]:.3f}",
                (best, values[best]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=7,
                color=colour,
            )
    ax.axhline(0, color="black", lw=0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.12)
    ax.set_xlabel("layer")
    ax.set_ylabel("difference of mean cosine")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "LRDS and SADS per layer (dashed: whole model)", fontsize=10)
    return _png(fig)


def comparison_figures(result: dict[str, Any]) -> dict[str, bytes]:
    """PNGs of a `compare` result: depth histograms per run for each set, and LRDS/SADS on relative depth."""
    out: dict[str, bytes] = {}
    bins = int(result.get("bins", 10))
    centres = (np.arange(bins) + 0.5) / bins
    for name, data in result.get("sets", {}).items():
        fig, ax = plt.subplots(figsize=(7, 3.2))
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
        out[f"compare-{_safe(name)}-depth.png"] = _png(fig)
    curves = {k: v for k, v in result.get("similarity", {}).items() if v}
    if curves:
        fig, ax = plt.subplots(figsize=(7, 3.4))
        for label, c in curves.items():
            for key, style in (("lrds", "-"), ("sads", "--")):
                values = [np.nan if v is None else v for v in c.get(key) or []]
                if values:
                    ax.plot(
                        c["relative_depth"], values, style, marker="o", ms=3, label=f"{key.upper()} {label}"
                    )
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("relative depth")
        ax.set_ylabel("difference of mean cosine")
        ax.legend(fontsize=7, frameon=False)
        ax.set_title("LRDS (solid) and SADS (dashed) per layer", fontsize=10)
        out["compare-similarity.png"] = _png(fig)
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:80] or "set"


__all__ = [
    "class_profile",
    "comparison_figures",
    "matrix_figure",
    "neuron_heatmap",
    "overlap_matrix",
    "similarity_figure",
]
