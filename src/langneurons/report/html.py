"""One self-contained HTML report of a run directory: figures as base64 PNG, every text escaped.

The page sets ``data-report-status`` on ``<html>`` once every image has loaded: ``ok`` when all decoded with a
non-zero width, ``broken:N`` otherwise; a script error sets ``data-report-error``. Headless browsers (and
the test) read these attributes from the dumped DOM.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langneurons import __version__
from langneurons.analyze.sets import phase_profile
from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import write_json
from langneurons.formats.run import Run, load_run
from langneurons.report import figures as fig

STATUS_SCRIPT = """
window.addEventListener('error', function (e) {
  document.documentElement.setAttribute('data-report-error', String(e.message || e));
});
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images), bad = 0;
  imgs.forEach(function (img) { if (!img.complete || img.naturalWidth === 0) { bad += 1; } });
  document.documentElement.setAttribute('data-images', String(imgs.length));
  document.documentElement.setAttribute('data-report-status', bad ? 'broken:' + bad : 'ok');
});
"""

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
figure{margin:1.5em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.4em}
table{border-collapse:collapse;font-size:.88em;margin:.8em 0}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right} th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left} .meta{color:#555;font-size:.9em}
code{background:#f3f3f3;padding:0 .2em}
"""


@dataclass
class Figure:
    """One figure of the report: file name (for --format png), PNG bytes, heading and caption."""

    name: str
    png: bytes
    heading: str
    caption: str


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
    items = [
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ns.params.items() if k in keys
    ]
    return f"method {ns.method}" + (f" ({', '.join(items)})" if items else "")


def build_figures(run: Run) -> list[Figure]:
    """Every figure the run's result files allow, each with a caption naming what, on what, and how."""
    where = describe_run(run)
    out: list[Figure] = []
    for name, ns in run.neuron_sets.items():
        how = (
            f"{set_settings(ns)}; {ns.n_pairs()} (language, neuron) pairs, {ns.n_distinct()} distinct neurons"
        )
        src = ns.source.get("corpus")
        model = ns.model or run.info.get("model") or "unknown model"
        on = f"model {model}, site {ns.site or '?'}" + (f", statistics from corpus {src}" if src else "")
        out.append(
            Figure(
                f"{name}-heatmap.png",
                fig.neuron_heatmap(ns),
                f"{name}: neurons per layer and language",
                f"Number of neurons of each language in each layer of set {name}.json ({how}); {on}.",
            )
        )
        phases = phase_profile(ns)
        bands = "; ".join(
            f"layers {b['layers'][0]}–{b['layers'][1]} {b['level']} ({b['per_layer']:.1f}/layer)"
            for b in phases["bands"]
        )
        out.append(
            Figure(
                f"{name}-classes.png",
                fig.class_profile(ns),
                f"{name}: classes over depth",
                f"Neurons per layer by class (specific = 1 language, related = 2..K−1, agnostic = all K, "
                f"unassigned = selected without a language) in set {name}.json ({how}); {on}. "
                f"Depth phases of specific+related neurons found by least-squares segmentation into "
                f"4 bands: {bands}.",
            )
        )
        out.append(
            Figure(
                f"{name}-overlap.png",
                fig.overlap_matrix(ns),
                f"{name}: overlap between languages",
                f"Jaccard index of the neuron sets of each language pair (cell text: shared neurons) in "
                f"set {name}.json ({how}); {on}.",
            )
        )
    for name, data in run.ppl.items():
        matrix = ppl_matrix(data)
        if matrix is not None:
            rows, cols, values, label, centre = matrix
            settings = _settings_text(data)
            out.append(
                Figure(
                    f"{name}-matrix.png",
                    fig.matrix_figure(rows, cols, values, f"{name}: {label}", label, centre),
                    f"{name}: {label}",
                    f"{label} for each intervention (rows) and evaluated language (columns), "
                    f"from {name}.json; " + (_ppl_provenance(data) or where)
                    + (f"; settings: {settings}" if settings else "") + ".",
                )
            )
    if run.benchmark and isinstance(run.benchmark.get("summary"), dict):
        from langneurons.report.benchmark import benchmark_caption, benchmark_figure

        out.append(Figure("benchmark.png", benchmark_figure(run.benchmark), "Benchmark: every method, the same tests",
                          benchmark_caption(run.benchmark)))  # fmt: skip
    if run.similarity and isinstance(run.similarity.get("per_layer"), dict):
        sim = run.similarity
        peaks = sim.get("peaks") or {}
        pairs = sim.get("pairs") or {}
        text = (
            f"LRDS = mean cosine of same-language pairs − different-language pairs; SADS = mean cosine of "
            f"translation pairs (same sentence id, different language) − different-id pairs in different "
            f"languages; self-pairs excluded; mean-pooled activations at site {sim.get('site')}; model "
            f"{sim.get('model')}; corpus {sim.get('corpus')} (sha256 {str(sim.get('corpus_sha256'))[:12]}…), "
            f"{_sentences_text(sim)}; pairs per side: {json.dumps(pairs)}. Peaks: LRDS layer "
            f"{(peaks.get('lrds') or {}).get('layer')}, SADS layer {(peaks.get('sads') or {}).get('layer')}."
        )
        out.append(Figure("similarity.png", fig.similarity_figure(sim), "LRDS and SADS per layer", text))
    return out


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


def tables_html(run: Run) -> str:
    """Steering results, whole-model similarity and skipped files as escaped HTML tables."""
    parts = []
    if run.similarity and isinstance(run.similarity.get("whole_model"), dict):
        w = run.similarity["whole_model"]
        rows = "".join(f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in w.items())
        parts.append(
            f"<h2>Similarity, whole model</h2><table><tr><th>score</th><th>value</th></tr>{rows}</table>"
        )
    for name, data in run.steer.items():
        parts.append(f"<h2>Steering: {e(name)}</h2>" + steer_table(data))
    if run.benchmark and isinstance(run.benchmark.get("summary"), dict):
        from langneurons.report.benchmark import table_rows

        head, *body = table_rows(run.benchmark)
        rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in body)
        header = "".join(f"<th>{e(h)}</th>" for h in head)
        parts.append(f"<h2>Benchmark</h2><table><tr>{header}</tr>{rows}</table>")
    if run.skipped:
        rows = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in run.skipped.items())
        parts.append(f"<h2>Files not used</h2><table><tr><th>file</th><th>why</th></tr>{rows}</table>")
    return "\n".join(parts)


def steer_rows(data: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Rows (target, strength, condition, success, fluency) of a `langneurons steer` file; None if not one."""
    if not str(data.get("format", "")).startswith("langneurons-steer/") or not isinstance(data.get("results"), dict):
        return None
    rows = []
    for target, entry in data["results"].items():
        conditions = [("–", "baseline", entry.get("baseline") or {})]
        for strength, kinds in (entry.get("strengths") or {}).items():
            conditions += [(strength, kind, kinds.get(kind) or {}) for kind in ("steered", "random")]
        for strength, kind, res in conditions:
            languages = res.get("languages") or {}
            rows.append({
                "target": target,
                "strength": strength,
                "condition": kind,
                "success": res.get("success"),
                "identified as": ", ".join(f"{k} {v}" for k, v in list(languages.items())[:4]),
                "distinct-2": res.get("distinct_2"),
                "continuation PPL (median)": res.get("continuation_ppl_median"),
            })
    return rows


def steer_table(data: dict[str, Any]) -> str:
    """A steering result as a table: a list of row objects, a dict of row objects, or flat key/values."""
    rows = steer_rows(data)
    for key in ("results", "rows", "table", "per_language", "targets") if rows is None else ():
        if isinstance(data.get(key), list) and all(isinstance(r, dict) for r in data[key]):
            rows = data[key]
            break
        if isinstance(data.get(key), dict) and all(isinstance(r, dict) for r in data[key].values()):
            rows = [{"": k, **v} for k, v in data[key].items()]
            break
    if rows:
        cols = list(dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, dict | list)))
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
        )
        table = f"<table><tr>{head}</tr>{body}</table>"
    else:
        table = ""
    flat = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    if flat:
        table = (
            "<table><tr><th>field</th><th>value</th></tr>"
            + "".join(f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in flat.items())
            + "</table>"
        ) + table
    return table or "<p>(no table found in this file)</p>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v)


def render_html(run: Run, figures: list[Figure]) -> str:
    """The whole page as one string."""
    title = f"langneurons report: {run.info.get('model') or run.name}"
    body = []
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        body.append(
            f'<figure id="{e(f.name)}"><h2>{e(f.heading)}</h2>'
            f'<img src="data:image/png;base64,{data}" alt="{e(f.heading)}">'
            f"<figcaption>{e(f.caption)}</figcaption></figure>"
        )
    if not figures:
        body.append("<p>No figure: the run directory holds no neuron set, ppl or similarity result.</p>")
    sets = "".join(
        f"<li><code>{e(n)}.json</code>: {e(set_settings(ns))}</li>" for n, ns in run.neuron_sets.items()
    )
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{STYLE}</style><script>{STATUS_SCRIPT}</script></head><body>"
        f'<h1>{e(title)}</h1><p class="meta">{e(describe_run(run))}</p>'
        f'<p class="meta">Run directory <code>{e(run.path)}</code>; generated {e(generated)} by langneurons '
        f"{e(__version__)}.</p>"
        + (f"<ul>{sets}</ul>" if sets else "")
        + "\n".join(body)
        + tables_html(run)
        + "</body></html>\n"
    )


def write_report(run_dir: str | Path, out: str | Path, fmt: str = "html") -> list[Path]:
    """Write the report of ``run_dir``: one HTML file (``fmt="html"``) or a folder of PNGs (``fmt="png"``)."""
    if fmt not in ("html", "png"):
        raise LangneuronsError(f"unknown report format {fmt!r} (use html or png)")
    run = load_run(run_dir)
    figures = build_figures(run)
    out = Path(out)
    if fmt == "png":
        if out.exists() and not out.is_dir():
            raise LangneuronsError(f"{out} exists and is not a directory (--format png writes a folder)")
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for f in figures:
            (out / f.name).write_bytes(f.png)
            paths.append(out / f.name)
        write_json(
            out / "captions.json", {f.name: {"heading": f.heading, "caption": f.caption} for f in figures}
        )
        return [*paths, out / "captions.json"]
    if out.is_dir():
        raise LangneuronsError(f"{out} is a directory; give a file name such as report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_html(run, figures), encoding="utf-8")
    tmp.replace(out)
    return [out]


__all__ = ["Figure", "build_figures", "render_html", "write_report"]
