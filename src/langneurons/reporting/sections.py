"""The report's content: sections of figures and escaped HTML built from a run's result files.

Each section says what was measured, on what model and data, and how; `html.py` lays them out on one page.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import langneurons.reporting.evaluation as ev
import langneurons.reporting.figures as fig
import langneurons.reporting.recording as rec
from langneurons.analysis.activity import recording_summary
from langneurons.analysis.sets import phase_profile
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.run import Run
from langneurons.formats.stats import load_stats
from langneurons.reporting.stability_figures import significance_table, stability_figures


@dataclass
class Figure:
    """One figure of the report: file name (for --format png), PNG bytes, heading and caption."""

    name: str
    png: bytes
    heading: str
    caption: str


@dataclass
class Section:
    """A titled part of the report: an introduction (escaped text), figures, and extra escaped HTML."""

    anchor: str
    heading: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    html: str = ""


def e(value: Any) -> str:
    """Escape any value for HTML text and attributes."""
    return html.escape(str(value), quote=True)


def describe_run(run: Run) -> str:
    """One sentence: model, revision, site, corpus and its hash, languages and sentences."""
    info = run.info
    parts = [f"model {info.get('model') or 'unknown'}"]
    if info.get("revision"):
        parts.append(f"revision {info['revision']}")
    parts.append(f"site {info.get('site') or 'unknown'}")
    if info.get("num_layers"):
        parts.append(f"{info['num_layers']} layers × {info.get('intermediate_size', '?')} neurons")
    if info.get("corpus"):
        sha = str(info.get("corpus_sha256") or "")[:12]
        parts.append(f"corpus {info['corpus']}" + (f" (sha256 {sha}…)" if sha else ""))
    if run.languages:
        parts.append(f"languages {','.join(run.languages)}")
    sentences = info.get("sentences")
    if isinstance(sentences, dict) and sentences:
        values = sorted(set(sentences.values()), key=str)
        parts.append(
            f"{values[0]} sentences per language"
            if len(values) == 1
            else f"{sum(map(int, sentences.values()))} sentences"
        )
    return "; ".join(parts)


def set_settings(ns) -> str:
    """The identifying parameters of a neuron set, as short text."""
    keys = ("top_rate", "filter_rate", "bar_ratio", "lambda", "lambda_mode", "threshold", "n")
    items = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ns.params.items() if k in keys]
    return f"method {ns.method}" + (f" ({', '.join(items)})" if items else "")


def build_figures(run: Run) -> list[Figure]:
    """Every figure the run's result files allow, each with a caption naming what, on what, and how."""
    return [f for section in build_sections(run) for f in section.figures]


def build_sections(run: Run) -> list[Section]:
    """The report's parts in reading order: neuron sets (main first), evaluation, similarity, recording."""
    sections = [neuron_set_section(run, name, run.neuron_sets[name]) for name in set_order(run)]
    sections += [ppl_section(run, name, data) for name, data in run.ppl.items()]
    sections += [steer_section(name, data) for name, data in run.steer.items()]
    sections += [stability_section(name, data) for name, data in run.stability.items()]
    if run.benchmark and isinstance(run.benchmark.get("summary"), dict):
        sections.append(benchmark_section(run.benchmark))
    if run.similarity and isinstance(run.similarity.get("per_layer"), dict):
        sections.append(similarity_section(run.similarity))
    if run.routing and isinstance(run.routing.get("usage"), dict):
        sections.append(routing_section(run.routing))
    if run.stats_path is not None:
        sections.append(recording_section(run))
    return sections


def set_order(run: Run) -> list[str]:
    """Neuron sets, the run's main set first: sets given explicitly, then those its ppl/steer results used,
    then LAPE, entropy−λ and the rest by name."""
    used = []
    for data in (*run.ppl.values(), *run.steer.values()):
        path = ((data.get("provenance") or {}).get("neurons") or {}).get("path")
        if isinstance(path, str):
            used.append(Path(path).stem)
    method_rank = {"lape": 0, "entropy-lambda": 1}

    def key(name: str):
        ns = run.neuron_sets[name]
        given = run.given.index(name) if name in run.given else len(run.given)
        return (given, 0 if name in used else 1, method_rank.get(ns.method, 2), name)

    return sorted(run.neuron_sets, key=key)


def neuron_set_section(run: Run, name: str, ns: NeuronSet) -> Section:
    """Counts per layer and language, classes over depth with the phases, overlap; an empty set in words."""
    how = f"{set_settings(ns)}; {ns.n_pairs()} (language, neuron) pairs, {ns.n_distinct()} distinct neurons"
    src = ns.source.get("corpus")
    model = ns.model or run.info.get("model") or "unknown model"
    on = f"model {model}, site {ns.site or '?'}" + (f", statistics from corpus {src}" if src else "")
    per_lang = ", ".join(f"{lang} {ns.count(lang)}" for lang in ns.languages)
    classes = ", ".join(f"{k} {v}" for k, v in ns.class_counts().items() if v)
    intro = f"{how}. Neurons per language: {per_lang}." + (f" Classes: {classes}." if classes else "")
    section = Section(f"set-{_anchor(name)}", f"Neuron set {name}", intro)
    if ns.n_distinct() == 0:
        section.html = f'<p class="note">{e(empty_set_text(ns))}</p>'
        return section
    if ns.n_pairs() == 0:
        section.html = (
            f'<p class="note">{e(name)} selected {ns.n_distinct()} neurons but assigned none of them to a '
            f"language, so there is nothing to show per language; the classes figure shows where they sit.</p>"
        )
    else:
        section.figures.append(
            Figure(
                f"{_safe(name)}-heatmap.png",
                fig.neuron_heatmap(ns, f"{name}: neurons per layer and language"),
                f"{name}: neurons per layer and language",
                f"Number of neurons of each language in each layer of set {name} ({how}); {on}. Grey: none.",
            )
        )
    phases = phase_profile(ns)
    bands = "; ".join(
        f"P{i + 1} layers {b['layers'][0]}–{b['layers'][1]} {b['level']} ({b['per_layer']:.1f}/layer, "
        f"{b['share']:.0%} of the neurons)"
        for i, b in enumerate(phases["bands"])
    )
    section.figures.append(
        Figure(
            f"{_safe(name)}-classes.png",
            fig.class_profile(ns, phases, f"{name}: neuron classes over depth"),
            f"{name}: classes over depth",
            f"Neurons per layer by class (specific = 1 language, related = 2..K−1, agnostic = all K, "
            f"unassigned = selected without a language) in set {name} ({how}); {on}. Shaded bands and black "
            f"lines: the depth phases of the specific + related neurons, found by least-squares segmentation "
            f"of their per-layer counts into 4 bands (line = a band's mean per layer; high/low = above/below "
            f"the model's mean; % = the band's share): {bands}.",
        )
    )
    if ns.n_pairs() and len(ns.languages) > 1:
        section.figures.append(
            Figure(
                f"{_safe(name)}-overlap.png",
                fig.overlap_matrix(ns, f"{name}: overlap between languages"),
                f"{name}: overlap between languages",
                f"Jaccard index of the neuron sets of each language pair (cell text: shared neurons; diagonal, "
                f"grey: the language's own count) in set {name} ({how}); {on}.",
            )
        )
    return section


def empty_set_text(ns: NeuronSet) -> str:
    """Why a neuron set holds no neuron, in words (the likely cause for the method that made it)."""
    k = len(ns.languages)
    text = f"This set ({set_settings(ns)}, {k} languages) selects no neuron, so it has no figure."
    if ns.method == "key-neurons":
        text += (
            f" Key neurons need a z-score above {ns.params.get('threshold', 2)} across the languages; with K "
            f"languages no neuron can exceed z = √(K−1) = {math.sqrt(max(k - 1, 0)):.2f}, so at the default "
            f"threshold of 2 at least 6 languages are needed."
        )
    elif ns.method in ("lape", "entropy-lambda"):
        text += " The selection share (top_rate) rounds to zero neurons, or no neuron passed the filter quantile."
    else:
        text += " The method's threshold left nothing; see its parameters above."
    return text


def ppl_section(run: Run, name: str, data: dict[str, Any]) -> Section:
    """The PPL-ratio matrix of a `langneurons ppl` file (a generic matrix for other files)."""
    settings = _settings_text(data)
    where = (_ppl_provenance(data) or describe_run(run)) + (f"; settings: {settings}" if settings else "")
    section = Section(f"ppl-{_anchor(name)}", f"Perplexity with neurons switched off: {name}")
    table = significance_table(data)
    if table:  # `ppl --controls R` (R >= 2): p-values against R random sets
        section.html = f"<h3>Significance against random controls</h3>{table}"
    ratios = ev.ppl_ratios(data)
    if ratios is not None and ratios.rows:
        summary = ev.ppl_summary(ratios)
        section.intro = summary[:1].upper() + summary[1:] + "." if summary else ""
        section.figures.append(
            Figure(
                f"{_safe(name)}-matrix.png",
                ev.ppl_ratio_figure(ratios, f"{name}: perplexity ratio, neurons off / none"),
                f"{name}: perplexity ratio with each set switched off",
                f"PPL with the row's neurons deactivated divided by PPL with no intervention, for each evaluated "
                f"language (×2 = perplexity doubled; log colour scale, red = worse, blue = better, white = ×1); "
                f"boxed: a language's own neurons on its own text; below the line: matched random controls "
                f"(same count per layer, neurons of no language). From {name}.json; {where}.",
            )
        )
        return section
    matrix = ppl_matrix(data)
    if matrix is None:
        section.html += f'<p class="note">{e(name)}.json holds no perplexity table this report understands.</p>'
        return section
    rows, cols, values, label, centre = matrix
    section.figures.append(
        Figure(
            f"{_safe(name)}-matrix.png",
            fig.matrix_figure(rows, cols, values, f"{name}: {label}", label, centre),
            f"{name}: {label}",
            f"{label} for each intervention (rows) and evaluated language (columns), from {name}.json; {where}.",
        )
    )
    return section


def stability_section(name: str, data: dict[str, Any]) -> Section:
    """The figures of a `langneurons stability` result (bootstrap, data size, sensitivity)."""
    figures = [Figure(*parts) for parts in stability_figures(name, data)]
    section = Section(f"stability-{_anchor(name)}", f"Stability of the neuron set: {name}", figures=figures)
    if not figures:
        section.html = f'<p class="note">{e(name)}.json holds no stability result this report understands.</p>'
    return section


def steer_section(name: str, data: dict[str, Any]) -> Section:
    """Success rates with 95 % Wilson intervals (figure and table) and two example generations per target."""
    section = Section(f"steer-{_anchor(name)}", f"Steering: {name}")
    bars = ev.steer_bars(data)
    if not bars:
        section.html = f'<p class="note">{e(name)}.json holds no steering results this report understands.</p>'
        return section
    prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
    settings = prov.get("settings") if isinstance(prov.get("settings"), dict) else {}
    rule = prov.get("success_rule")
    source = data.get("source")
    what = (
        f"Generations from {prov.get('n_prompts', '?')} prompts ({prov.get('prompts') or 'default prompts'}) "
        f"with the source ({source}) neurons off and the target's set by mode {settings.get('mode', '?')}; "
        f"model {prov.get('model', '?')}, site {prov.get('site', '?')}, neurons of "
        f"{(prov.get('neurons') or {}).get('path', '?')}; identified by {prov.get('identifier', '?')}."
    )
    success = f"Success = {rule}." if rule else "Success = identified as the target language."
    section.intro = f"{what} {success}"
    section.figures.append(
        Figure(
            f"{_safe(name)}-success.png",
            ev.steer_figure(bars, f"{name}: steering success per target"),
            f"{name}: steering success per target",
            f"Share of generations that succeed (solid) and, where recorded, that are merely in the target "
            f"language (hatched), for the steered model, a matched random control and the unmodified model; "
            f"error bars: 95 % Wilson intervals over the prompts. {success} From {name}.json.",
        )
    )
    section.html = steer_table_html(data, bars) + examples_html(data)
    return section


def steer_table_html(data: dict[str, Any], bars: list[ev.SteerBar]) -> str:
    """Per target and strength: rates as percentages with intervals, fluency, and the languages identified."""
    index = {(b.target, b.strength, b.condition, b.measure): b for b in bars}
    has_rate = any(b.measure == "language_rate" for b in bars)
    head = ["target", "strength", "steered: success"] + (["steered: in target language"] if has_rate else [])
    head += ["random control: success", "no intervention: success", "distinct-2", "continuation PPL (median)",
             "identified as (steered)"]  # fmt: skip
    rows = []
    for target, entry in (data.get("results") or {}).items():
        for strength, kinds in ((entry or {}).get("strengths") or {}).items():
            steered = (kinds or {}).get("steered") or {}
            cells = [f"→ {target}", str(strength), _pct(index.get((target, strength, "steered", "success")))]
            if has_rate:
                cells.append(_pct(index.get((target, strength, "steered", "language_rate"))))
            cells += [
                _pct(index.get((target, strength, "random", "success"))),
                _pct(index.get((target, "", "baseline", "success"))),
                _fmt(steered.get("distinct_2")),
                _fmt(steered.get("continuation_ppl_median")),
                ", ".join(f"{k} {v}" for k, v in list((steered.get("languages") or {}).items())[:4]),
            ]
            rows.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{e(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def examples_html(data: dict[str, Any]) -> str:
    """Two steered generations per target (successes first), prompt and continuation, escaped."""
    parts = []
    for target, gens in ev.steer_examples(data).items():
        if not gens:
            continue
        parts.append(f"<h3>Examples → {e(target)}</h3>")
        for g in gens:
            tags = [f"identified as {g.get('lang', '?')}"]
            if g.get("fluent") is not None:
                tags.append("fluent" if g["fluent"] else "not fluent")
            if isinstance(g.get("ppl"), int | float):
                tags.append(f"PPL {g['ppl']:.3g}")
            tags.append(f"strength {g.get('strength')}")
            parts.append(
                f'<div class="gen"><span class="prompt">{e(g.get("prompt", ""))}</span>'
                f"<strong>{e(g.get('text', ''))}</strong>"
                f'<span class="tag">[{e("; ".join(tags))}]</span></div>'
            )
    return "".join(parts)


def benchmark_section(data: dict[str, Any]) -> Section:
    """Every method through the same causal tests (benchmark.json): the figure and the table."""
    from langneurons.reporting.benchmark import benchmark_caption, benchmark_figure, table_rows

    heading = "Benchmark: every method, the same tests"  # the figure's; the section is "Benchmark"
    head, *body = table_rows(data)
    rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in body)
    header = "".join(f"<th>{e(h)}</th>" for h in head)
    return Section(
        "benchmark",
        "Benchmark",
        figures=[Figure("benchmark.png", benchmark_figure(data), heading, benchmark_caption(data))],
        html=f"<table><tr>{header}</tr>{rows}</table>",
    )


def similarity_section(sim: dict[str, Any]) -> Section:
    """LRDS and SADS per layer, with the whole-model values in the text."""
    peaks = sim.get("peaks") or {}
    pairs = sim.get("pairs") or {}
    whole = sim.get("whole_model") if isinstance(sim.get("whole_model"), dict) else {}
    text = (
        f"LRDS = mean cosine of same-language pairs − different-language pairs; SADS = mean cosine of "
        f"translation pairs (same sentence id, different language) − different-id pairs in different "
        f"languages; self-pairs excluded; mean-pooled activations at site {sim.get('site')}; model "
        f"{sim.get('model')}; corpus {sim.get('corpus')} (sha256 {str(sim.get('corpus_sha256'))[:12]}…), "
        f"{_sentences_text(sim)}; pairs per side: {json.dumps(pairs)}. Peaks: LRDS layer "
        f"{(peaks.get('lrds') or {}).get('layer')}, SADS layer {(peaks.get('sads') or {}).get('layer')}."
    )
    intro = "Whole model: " + ", ".join(f"{k.upper()} {_fmt(v)}" for k, v in whole.items()) + "." if whole else ""
    return Section(
        "similarity",
        "Activation similarity across languages",
        intro,
        [Figure("similarity.png", fig.similarity_figure(sim), "LRDS and SADS per layer", text)],
    )


def routing_section(data: dict[str, Any]) -> Section:
    """The MoE routing figure with its caption (from routing.json)."""
    from langneurons.reporting.routing_figure import routing_figure

    prov = data.get("provenance") or {}
    text = (
        f"Expert usage (share of each language's routing decisions per MoE layer and expert, top-{data.get('top_k')} "
        f"of {data.get('num_experts')} experts) and the Jensen–Shannon divergence of each language's usage from "
        f"{data.get('reference')}'s, per layer; model {prov.get('model')}, corpus {prov.get('corpus')}, counted "
        f"tokens {json.dumps(prov.get('n_tokens'))}."
    )
    return Section(
        "routing",
        "Expert routing per language",
        "",
        [Figure("routing.png", routing_figure(data), "Expert routing per language", text)],
    )


def recording_section(run: Run) -> Section:
    """What the statistics say on their own: firing rate per layer, profile correlation, tokens counted."""
    stats = load_stats(run.path)
    summary = recording_summary(stats)
    where = describe_run(run)
    total = sum(summary["tokens"].values())
    intro = (
        f"{total:,} counted tokens in {len(summary['languages'])} languages "
        f"({', '.join(f'{k} {v:,}' for k, v in summary['tokens'].items())})."
    )
    figures = [
        Figure(
            "recording-activation-rate.png",
            rec.activation_rate_figure(summary),
            "Activation rate per layer and language",
            f"Mean over a layer's neurons of count / tokens: the share of neurons with activation > 0 on an "
            f"average token of each language; {where}.",
        ),
    ]
    if len(summary["languages"]) > 1:
        figures.append(
            Figure(
                "recording-profile-correlation.png",
                rec.profile_correlation_figure(summary),
                "How alike languages make neurons fire",
                f"Pearson correlation between two languages' activation probabilities over all "
                f"{stats.num_layers} × {stats.intermediate_size} neurons (1 = the same neurons fire equally "
                f"often; diagonal masked); {where}.",
            )
        )
    figures.append(
        Figure(
            "recording-tokens.png",
            rec.tokens_figure(summary),
            "Tokens counted per language",
            f"Counted tokens (every real text token; padding, BOS and EOS excluded unless --count-bos) and the "
            f"sentences they came from; {where}.",
        )
    )
    return Section("recording", "Recording statistics", intro, figures)


def ppl_matrix(data: dict[str, Any]):
    """(rows, cols, values, label, centre) from a ppl result, read defensively; None if not understood."""
    cols = _first(data, ("eval_languages", "languages", "columns", "evaluated"))
    rows = _first(data, ("interventions", "rows", "sets", "ablated", "conditions"))
    for key, label, centre in (
        ("delta_relative", "ΔPPL = PPL / PPL(none) − 1", 0.0),  # what `langneurons ppl` writes
        ("delta_ppl", "ΔPPL", 0.0),
        ("delta", "ΔPPL", 0.0),
        ("ratio", "PPL ratio", 1.0),
        ("ppl_ratio", "PPL ratio", 1.0),
        ("ppl", "PPL", None),
        ("matrix", "PPL", None),
    ):
        value = data.get(key)
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            r = list(value)
            c = cols if isinstance(cols, list) else list(next(iter(value.values())))
            grid = [[_num(value[x].get(y)) for y in c] for x in r]
            return [str(x) for x in r], [str(y) for y in c], grid, label, centre
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            grid = [[_num(v) for v in row] for row in value]
            r = (
                [str(x) for x in rows]
                if isinstance(rows, list) and len(rows) == len(grid)
                else [str(i) for i in range(len(grid))]
            )
            width = len(grid[0])
            c = (
                [str(y) for y in cols]
                if isinstance(cols, list) and len(cols) == width
                else [str(j) for j in range(width)]
            )
            if all(len(row) == width for row in grid):
                return r, c, grid, label, centre
    return None


def _first(data: dict[str, Any], keys: tuple[str, ...]):
    for key in keys:
        if isinstance(data.get(key), list):
            return data[key]
    return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _ppl_provenance(data: dict[str, Any]) -> str:
    """Model, neuron set and evaluation texts as `langneurons ppl` records them ("" if absent)."""
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        return ""
    texts, neurons = prov.get("texts") or {}, prov.get("neurons") or {}
    sentences = texts.get("sentences") or {}
    counts = sorted(set(sentences.values())) if isinstance(sentences, dict) else []
    return (
        f"model {prov.get('model')}, site {prov.get('site')}; neurons of {neurons.get('path')} "
        f"(method {neurons.get('method')}) deactivated; evaluation texts {texts.get('spec')} "
        f"(sha256 {str(texts.get('sha256'))[:12]}…), {'/'.join(map(str, counts))} sentences per language"
    )


def _settings_text(data: dict[str, Any]) -> str:
    keys = (
        "model",
        "site",
        "corpus",
        "neuron_set",
        "mode",
        "positions",
        "strength",
        "max_length",
        "sentences",
    )
    return ", ".join(f"{k}={data[k]}" for k in keys if isinstance(data.get(k), str | int | float))


def _sentences_text(sim: dict[str, Any]) -> str:
    sentences = sim.get("sentences") or {}
    if not sentences:
        return "sentences unknown"
    values = set(sentences.values())
    return (
        f"{len(sentences)} languages × {values.pop()} sentences"
        if len(values) == 1
        else f"{sum(sentences.values())} sentences in {len(sentences)} languages"
    )


def skipped_html(run: Run) -> str:
    """Files of the run directory that were not used, and why (escaped)."""
    if not run.skipped:
        return ""
    rows = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in run.skipped.items())
    return f'<h2 id="skipped">Files not used</h2><table><tr><th>file</th><th>why</th></tr>{rows}</table>'


def _pct(bar: ev.SteerBar | None) -> str:
    if bar is None:
        return "–"
    low, high = bar.interval
    return f"{100 * bar.rate:.0f} % [{100 * low:.0f}–{100 * high:.0f}] of {bar.n}"


def _anchor(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:80] or "x"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:80] or "x"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v)


__all__ = ["Figure", "Section", "build_figures", "build_sections", "describe_run", "e", "set_settings"]
