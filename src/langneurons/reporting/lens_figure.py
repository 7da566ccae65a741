"""Figures of lens results (docs/methods.md §16): the latent-language curves over depth, optionally above the
neuron-class depth profile on the same layer axis. Reads result dicts only (no model)."""

from __future__ import annotations

from typing import Any

import numpy as np

from langneurons.analysis.sets import class_distribution
from langneurons.formats.neuronset import NeuronSet
from langneurons.reporting.figures import CLASS_COLOURS, new_figure, plt, png

CURVE_COLOURS = {"target": "#1f77b4", "english": "#d62728", "source": "#7f7f7f"}
TEXT_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def pair_label(result: dict[str, Any]) -> str:
    task = result.get("task")
    if task == "text":
        return "natural text"
    if task == "repetition":
        return f"repetition {result.get('to')}"
    return f"{task} {result.get('from')}→{result.get('to')}"


def _draw_words(ax, result: dict[str, Any], curves=("target", "english", "source"), legend: bool = True) -> None:
    layers = np.arange(int(result["num_layers"]))
    names = {"target": f"target ({result.get('to')})", "english": "English", "source": f"source ({result.get('from')})"}
    for curve in curves:
        if curve == "source" and result.get("task") == "repetition":
            continue  # the source word is the target word
        mean = np.array(result["mean"][curve], dtype=float)
        ci = result.get("ci", {}).get(curve)
        colour = CURVE_COLOURS[curve]
        ax.plot(layers, mean, marker="o", ms=3, lw=1.6, color=colour, label=names[curve])
        if ci:
            ax.fill_between(layers, ci["low"], ci["high"], color=colour, alpha=0.18, lw=0)
    ax.set_ylabel("probability")
    ax.set_ylim(bottom=0)
    if legend:
        ax.legend(fontsize=7.5, frameon=False, loc="upper left")


def _draw_text(ax, result: dict[str, Any]) -> None:
    layers = np.arange(int(result["num_layers"]))
    for i, (lang, per) in enumerate(result["share"].items()):
        colour = TEXT_COLOURS[i % len(TEXT_COLOURS)]
        ax.plot(layers, per["own"], lw=1.6, marker="o", ms=3, color=colour, label=f"{lang} text: {lang} tokens")
        if "en" in per and lang != "en":
            ax.plot(layers, per["en"], lw=1.2, ls="--", color=colour, label=f"{lang} text: en tokens")
    ax.set_ylabel("share of top-1 tokens")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, frameon=False, loc="upper left", ncol=2)


def lens_figure(result: dict[str, Any], title: str = "") -> bytes:
    """The curves of one lens result over depth (word task: p_target, p_en, p_source with 95 % bands and
    the entropy; text task: per text language the share of own-language and English top-1 tokens)."""
    n = int(result["num_layers"])
    fig, ax = new_figure(7.2, 3.4)
    if result.get("task") == "text":
        _draw_text(ax, result)
    else:
        _draw_words(ax, result)
        ax2 = ax.twinx()
        ax2.plot(np.arange(n), result["mean"]["entropy"], color="black", lw=0.9, ls=":", label="entropy (bits)")
        ax2.set_ylabel("entropy (bits)", fontsize=8)
        ax2.legend(fontsize=7.5, frameon=False, loc="upper right")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xticks(range(0, n, max(1, n // 18)))
    ax.set_xlabel(f"layer (0 … {n - 1})")
    lens = result.get("lens", "logit")
    ax.set_title(title or f"{lens} lens, {pair_label(result)} — {result.get('model')}", fontsize=9.5)
    return png(fig)


def lens_depth_figure(results: list[dict[str, Any]], neurons: NeuronSet | None = None,
                      routing: dict[str, Any] | None = None, title: str = "") -> bytes:  # fmt: skip
    """One panel per lens result, (with a neuron set) its class profile, and (with an MoE ``routing`` result)
    each language's routing divergence from English per MoE layer, all on one layer axis."""
    has_routing = routing is not None and isinstance(routing.get("js_divergence"), dict)
    panels = len(results) + (1 if neurons is not None else 0) + (1 if has_routing else 0)
    n = int(results[0]["num_layers"]) if results else neurons.num_layers  # type: ignore[union-attr]
    fig, axes = plt.subplots(panels, 1, figsize=(7.4, 2.3 * panels + 0.4), sharex=True, layout="constrained",
                             squeeze=False)  # fmt: skip
    for ax, result in zip(axes[:, 0], results, strict=False):
        if result.get("task") == "text":
            _draw_text(ax, result)
        else:
            _draw_words(ax, result, curves=("target", "english"))
        ax.set_title(f"{result.get('lens', 'logit')} lens, {pair_label(result)}", fontsize=9)
    if has_routing:
        ax = axes[len(results), 0]
        layers = routing["moe_layers"]  # type: ignore[index]
        for i, (lang, values) in enumerate(routing["js_divergence"].items()):  # type: ignore[index]
            if any(v for v in values):
                ax.plot(layers, values, lw=1.3, marker="o", ms=2.5, color=TEXT_COLOURS[i % len(TEXT_COLOURS)],
                        label=lang)  # fmt: skip
        ax.set_ylabel(f"JS from {routing.get('reference', 'en')} (bits)")  # type: ignore[union-attr]
        ax.legend(fontsize=7, frameon=False, loc="upper left", ncol=6)
        ax.set_title("routing divergence per MoE layer", fontsize=9)
    if neurons is not None:
        ax = axes[-1, 0]
        bottom = np.zeros(neurons.num_layers)
        for name, values in class_distribution(neurons).items():
            v = np.array(values, dtype=float)
            if v.sum():
                ax.bar(np.arange(neurons.num_layers), v, bottom=bottom, color=CLASS_COLOURS.get(name), label=name,
                       width=0.85)  # fmt: skip
                bottom += v
        ax.set_ylabel("neurons")
        ax.legend(fontsize=7, frameon=False, loc="upper left", ncol=4)
        ax.set_title(f"neuron classes per layer ({neurons.method})", fontsize=9)
    axes[-1, 0].set_xlim(-0.5, n - 0.5)
    axes[-1, 0].set_xticks(range(0, n, max(1, n // 18)))
    axes[-1, 0].set_xlabel(f"layer (0 … {n - 1})")
    if title:
        fig.suptitle(title, fontsize=10)
    return png(fig)
