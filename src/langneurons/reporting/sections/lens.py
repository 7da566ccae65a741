"""The latent-language section (`langneurons lens`, docs/methods.md §16): the lens curves over depth above the
neuron-class depth profile of the run's main set (and, for MoE runs, the routing divergence from English), on
one layer axis; then each result's own figure, the peaks and the KL of logit vs tuned lens."""

from __future__ import annotations

from typing import Any

from langneurons.formats.neuronset import NeuronSet
from langneurons.reporting.lens_figure import lens_depth_figure, lens_figure, pair_label
from langneurons.reporting.sections.common import Figure, Section, Table

TEMPLATE = "section_lens.html"


def lens_section(results: dict[str, dict[str, Any]], neurons: NeuronSet | None = None,
                 routing: dict[str, Any] | None = None) -> Section:  # fmt: skip
    """One section for every lens result of the run (word tasks and natural text)."""
    ordered = list(results.items())
    n = {int(r["num_layers"]) for _, r in ordered}
    same_axis = neurons is None or n == {neurons.num_layers}
    figures = []
    caption = (
        "Top panels: per layer, the lens probability of the answer word in the target language and of its "
        "English translation at the last prompt position (mean over prompts, shaded: bootstrap 95 % interval), "
        "or for natural text the share of the lens's top-1 tokens in the text's language and in English."
    )
    if neurons is not None and same_axis:
        caption += (f" Bottom: the neuron set {neurons.method}'s language-specific / related / agnostic neurons "
                    "per layer (Zhang's phases), on the same layer axis.")  # fmt: skip
    if routing is not None and isinstance(routing.get("js_divergence"), dict):
        caption += " Routing: Jensen–Shannon divergence of each language's expert usage from English's per MoE layer."
    figures.append(Figure("lens-depth.png", lens_depth_figure([r for _, r in ordered],
                                                              neurons if same_axis else None, routing),
                          "Latent language and neuron classes over depth", caption))  # fmt: skip
    for name, result in ordered:
        figures.append(Figure(f"lens-{name}.png", lens_figure(result), f"{name}: {pair_label(result)}",
                              _caption(result)))  # fmt: skip
    peaks = []
    kl_rows = []
    for name, result in ordered:
        for curve, peak in (result.get("peaks") or {}).items():
            peaks.append([name, pair_label(result), curve, str(peak["layer"]), f"{peak['value']:.3f}",
                          f"{result['mean'][curve][-1]:.3f}"])  # fmt: skip
        for lens, values in (result.get("kl") or {}).items():
            kl_rows.append([name, lens, *(f"{v:.2f}" for v in values)])
    layers = max(n) if n else 0
    data: dict[str, Any] = {
        "peaks": Table(["result", "task", "curve", "peak layer", "peak", "last layer"], peaks) if peaks else None,
        "kl": Table(["result", "lens", *(str(i) for i in range(layers))], kl_rows) if kl_rows else None,
    }
    intro = (
        "Where the model thinks in which language: the residual stream after each decoder layer read through "
        "the model's own final norm and unembedding (logit lens; tuned lens where trained). Wendler et al. "
        "(2024) found English rising in Llama-2's middle layers before the target language takes over."
    )
    note = "" if same_axis else "The neuron set has a different number of layers than the lens results: not drawn."
    return Section("lens", "Latent language (logit lens)", TEMPLATE, intro, figures, note, data)


def _caption(result: dict[str, Any]) -> str:
    prov = result.get("provenance") or {}
    if result.get("task") == "text":
        texts = prov.get("texts") or {}
        return (f"{result.get('lens')} lens on {texts.get('spec')} ({texts.get('sentences')} sentences); share of "
                f"top-1 tokens by language (§15 rule); model {result.get('model')}.")  # fmt: skip
    w = result.get("words") or {}
    s = prov.get("settings") or {}
    return (
        f"{result.get('lens')} lens, {pair_label(result)}, {w.get('prompts')} prompts ({w.get('kept')} of "
        f"{w.get('concepts')} words of {w.get('list')} kept by the first-token filter), {s.get('shots')} shots; "
        f"shaded: bootstrap 95 % interval over prompts ({s.get('bootstrap')} resamples); dotted: entropy (bits); "
        f"model {result.get('model')}."
    )


__all__ = ["lens_section"]
