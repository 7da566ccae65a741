"""The benchmark table and figure: every method on the three causal tests, each beside its random control
(read from a `langneurons benchmark` result; no model is loaded)."""

from __future__ import annotations

from typing import Any

import numpy as np

from langneurons.intervals import wilson
from langneurons.reporting.figures import plt, png
from langneurons.summaries import median, summarise_ratios


def _ppl_factors(result: dict[str, Any], method: str, kind: str) -> list[tuple[float, float]]:
    """Per language: (PPL factor on its own text, median factor on the others) for ``kind`` off | random."""
    p = (result.get("perplexity") or {}).get("ppl") or {}
    base, langs, out = p.get("none") or {}, result.get("languages") or [], []
    for lang in langs:
        row = p.get(f"{method}/{kind}:{lang}")
        if not row or lang not in row or not base.get(lang):
            continue
        others = summarise_ratios(row[o] / base[o] for o in langs if o != lang and o in row and base.get(o))
        out.append((row[lang] / base[lang], others["median"] if others["median"] is not None else float("nan")))
    return out


def _steer_counts(result: dict[str, Any], method: str, kind: str) -> tuple[int, int] | None:
    """Fluency-gated successes and generations over every target's test prompts (None: not in the file)."""
    entry = ((result.get("steering") or {}).get("methods") or {}).get(method) or {}
    final, best = entry.get("test_results"), entry.get("best")
    if not final or best is None:
        return None
    hits = n = 0
    for target in final.values():
        row = ((target.get("strengths") or {}).get(best) or {}).get(kind)
        if row is None or not row.get("n"):
            continue
        hits += round(row["success"] * row["n"])
        n += row["n"]
    return (hits, n) if n else None


def _chrf_drops(result: dict[str, Any], method: str, kind: str) -> list[tuple[float, list[float] | None]]:
    """Per target X: (chrF drop on en→X, its bootstrap 95 % interval) with X's component (or control) off."""
    scores = (result.get("translation") or {}).get("scores") or {}
    source, out = result.get("source", "en"), []
    for lang in result.get("languages") or []:
        cell = (scores.get(f"{method}/{kind}:{lang}") or {}).get(f"{source}-{lang}")
        if cell is not None and cell.get("drop") is not None:
            out.append((cell["drop"], cell.get("drop_ci")))
    return out


SHORT = {"entropy-lambda": "entropy−λ", "key-neurons": "key neurons", "attribution-neurons": "attribution\nneurons",
         "attribution-heads": "attribution\nheads", "diffmean": "DiffMean\n(ours)", "diffmean-clas": "DiffMean\n(CLaS)"}


def _not_tested(ax, x, missing: list[bool]) -> None:
    """Say "not tested" where a method has no bars in a panel (a steering-only recipe), not a silent gap."""
    for pos, gone in zip(x, missing, strict=True):
        if gone:
            ax.text(pos, 0.5, "not tested\n(steering\nrecipe)", transform=ax.get_xaxis_transform(), ha="center",
                    va="center", fontsize=7, color="#555555")  # fmt: skip


def benchmark_figure(result: dict[str, Any]) -> bytes:
    """Three panels, one bar per method and measure with what varies beside it (PNG bytes):
    PPL factors (bars: medians over languages; dots: each language), steering success pooled over the
    test prompts of every target (Wilson 95 % intervals; the axis is a share, 0–1), and chrF drops (bars:
    medians over targets; dots: each target with its bootstrap 95 % interval). Each method's own set beside
    its matched random control."""
    methods = list(result["summary"])
    x = np.arange(len(methods))
    fig, axes = plt.subplots(3, 1, figsize=(8.6, 8.6), layout="constrained")
    set_colour, other_colour, control_colour = "#1f77b4", "#9ecae1", "#7f7f7f"

    ax = axes[0]  # ---- perplexity
    series = [("own language", "off", 0, set_colour), ("other languages (median)", "off", 1, other_colour),
              ("random control, own language", "random", 0, control_colour)]  # fmt: skip
    width = 0.8 / len(series)
    for i, (label, kind, which, colour) in enumerate(series):
        pos = x + (i - (len(series) - 1) / 2) * width
        per = [[f[which] for f in _ppl_factors(result, m, kind)] for m in methods]
        medians = [median(v) if v else np.nan for v in per]
        ax.bar(pos, [np.nan if v is None else v for v in medians], width, color=colour, label=label)
        for j, values in enumerate(per):
            ax.plot([pos[j]] * len(values), values, "o", ms=2.5, color="black", alpha=0.6)
    _not_tested(ax, x, [not _ppl_factors(result, m, "off") for m in methods])
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", lw=0.6)
    ax.set_ylabel("PPL with it off / PPL without")
    ax.set_title("switched off: PPL factor (bars: median over languages; dots: each language)", fontsize=9)

    ax = axes[1]  # ---- steering, fluency-gated success with Wilson intervals
    for i, (label, kind, colour) in enumerate((("steered", "steered", set_colour),
                                               ("random control, same setting", "random", control_colour))):
        pos = x + (i - 0.5) * 0.4
        for j, m in enumerate(methods):
            counts = _steer_counts(result, m, kind)
            if counts is None:
                continue
            hits, n = counts
            lo, hi = wilson(hits, n) or (np.nan, np.nan)
            ax.bar(pos[j], hits / n, 0.4, color=colour, label=label if j == 0 else None)
            rate = hits / n
            ax.errorbar(pos[j], rate, yerr=[[max(rate - lo, 0.0)], [max(hi - rate, 0.0)]], color="black", capsize=2,
                        lw=0.8)  # fmt: skip
            ax.annotate(f"{hits}/{n}", (pos[j], hi), textcoords="offset points", xytext=(0, 2), ha="center",
                        fontsize=6)  # fmt: skip
    ax.set_ylim(0, 1.12)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("fluency-gated success")
    ax.set_title(f"steering {result.get('source', 'en')} → X: test prompts pooled over targets (Wilson 95 % CI)",
                 fontsize=9)  # fmt: skip

    ax = axes[2]  # ---- translation
    for i, (label, kind, colour) in enumerate((("own pair en→X", "off", set_colour),
                                               ("random control, en→X", "random", control_colour))):
        pos = x + (i - 0.5) * 0.4
        for j, m in enumerate(methods):
            drops = _chrf_drops(result, m, kind)
            if not drops:
                continue
            ax.bar(pos[j], median(d for d, _ in drops), 0.4, color=colour, label=label if j == 0 else None)
            offsets = np.linspace(-0.12, 0.12, len(drops))
            for off, (d, ci) in zip(offsets, drops, strict=True):
                if ci is not None:
                    ax.errorbar(pos[j] + off, d, yerr=[[max(d - ci[0], 0.0)], [max(ci[1] - d, 0.0)]], fmt="o", ms=2.5,
                                color="black",
                                lw=0.6, capsize=1.5, alpha=0.7)  # fmt: skip
                else:
                    ax.plot(pos[j] + off, d, "o", ms=2.5, color="black", alpha=0.7)
    _not_tested(ax, x, [not _chrf_drops(result, m, "off") for m in methods])
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_ylabel("chrF drop (points)")
    ax.set_title("switched off: chrF drop (bars: median over targets; dots: each target, 95 % CI)", fontsize=9)
    for ax in axes:
        ax.set_xticks(x, [SHORT.get(m, m) for m in methods], fontsize=7.5)
        ax.legend(fontsize=7, loc="upper left", ncol=3, frameon=False)
    model = result.get("provenance", {}).get("model", "")
    fig.suptitle(f"benchmark: {model}, languages {','.join(result['languages'])}", fontsize=10)
    return png(fig)


def benchmark_caption(result: dict[str, Any]) -> str:
    """What the figure shows, on what, and how (for the report)."""
    p = result.get("provenance", {})
    st = p.get("settings", {})
    return (
        f"Every method's component switched off (top: PPL factor on the own language, the others, and for the "
        f"matched random control; medians over languages; middle: steering {result.get('source')} → each other "
        f"language at the setting chosen on dev prompts, fluency-gated success pooled over the test prompts with "
        f"Wilson 95 % intervals, beside the control's; bottom: few-shot translation chrF drop). Model "
        f"{p.get('model')}; languages {','.join(result.get('languages', []))}; identification "
        f"{p.get('identification_text')}; held-out {p.get('heldout_text')} ({st.get('eval_sentences')} PPL "
        f"sentences, {st.get('dev_prompts', '?')} dev and {st.get('prompts')} test prompts per target, "
        f"{st.get('translate_sentences')} translation lines per pair); {p.get('wall_seconds')} s."
    )


COLUMNS = [
    ("method", "method"),
    ("units_per_language", "units/lang"),
    ("identify_seconds", "identify s"),
    ("ppl_own", "ΔPPL own"),
    ("ppl_others", "ΔPPL others"),
    ("ppl_selectivity", "PPL sel."),
    ("ppl_random_own", "ΔPPL rand."),
    ("steer_setting", "steer at"),
    ("steer_success_pooled", "steer succ."),
    ("steer_random_success_pooled", "rand. succ."),
    ("steer_fluent", "fluent"),
    ("chrf_drop_own", "chrF drop own"),
    ("chrf_drop_others", "chrF drop others"),
    ("chrf_drop_random_own", "chrF drop rand."),
]
HEADLINE = {"ppl_selectivity": "PPL selectivity", "steer_success_pooled": "steering success",
            "chrf_drop_own": "chrF drop, own pair"}  # fmt: skip
LEGEND = ("[a, b]: 95 % interval (steering: Wilson over the pooled test generations; the rest: bootstrap over "
          "sentences, lines and prompts). In the PPL selectivity, steering success and chrF drop (own) columns, "
          "**bold** is the best method and ≈ marks a method not significantly different from it (paired bootstrap "
          "on the same items, 95 %); an unmarked value there is significantly below the best. n/a: not part of that "
          "test (diffmean-clas is a steering recipe).")  # fmt: skip


def fmt_cell(key: str, value: Any, like: float | None = None) -> str:
    """A table cell: ΔPPL as a signed % (× the factor from +1000 %), rates as %, chrF with one decimal. ``like``:
    write ``value`` in the style of that value (an interval's bounds as its point value)."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if key.startswith("ppl_") and key not in ("ppl_selectivity", "ppl_vs_random"):
        style = value if like is None else like
        return f"{value:+.0%}" if abs(style) < 10 else f"×{value + 1:,.0f}"
    if key in ("ppl_selectivity", "ppl_vs_random"):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if key.startswith("steer_"):
        return f"{value:.0%}"
    if key.startswith("chrf_"):
        return f"{value:+.1f}"
    if key == "units_per_language":
        return f"{value:g}"
    if key.endswith("seconds"):
        return f"{value:.2f}"
    return str(value)


def _interval(result: dict[str, Any], method: str, key: str, point: Any) -> str:
    cells = (result.get("intervals") or {}).get(method) or {}
    ci = cells.get(f"{key}_wilson") or cells.get(key)
    if not ci or ci[0] is None:
        return ""
    if key.startswith("steer_"):
        return f" [{ci[0]:.0%}, {ci[1]:.0%}]".replace("%", "")
    like = point if isinstance(point, float) else None
    return f" [{fmt_cell(key, ci[0], like)}, {fmt_cell(key, ci[1], like)}]"


def _mark(result: dict[str, Any], method: str, key: str, text: str, markdown: bool) -> str:
    test = (result.get("paired") or {}).get(key)
    if not test or text == "n/a":
        return text
    if test.get("best") == method:
        return f"**{text}**" if markdown else f"{text} (best)"
    return f"{text} ≈" if method in (test.get("tied_with_best") or []) else text


def table_rows(result: dict[str, Any], markdown: bool = True) -> list[list[str]]:
    """The summary table as rows of cells (first row: headers), each value with its interval and mark (the best
    in **bold** for Markdown, "(best)" in plain text)."""
    rows = [[title for _, title in COLUMNS]]
    for method, row in result["summary"].items():
        cells = [method]
        for key, _ in COLUMNS[1:]:
            text = fmt_cell(key, row.get(key))
            if key == "units_per_language" and row.get("unit"):
                text += f" {row['unit'].split()[-1]}"
            elif text != "n/a":
                text += _interval(result, method, key, row.get(key))
                if key == "steer_success_pooled" and row.get("steer_successes"):
                    text += " ({}/{})".format(*row["steer_successes"])
            cells.append(_mark(result, method, key, text, markdown))
        rows.append(cells)
    return rows


def paired_lines(result: dict[str, Any]) -> list[str]:
    """Per headline test, every significant difference between two methods (A − B, 95 % interval, p)."""
    lines = []
    for key, title in HEADLINE.items():
        test = (result.get("paired") or {}).get(key)
        if not test:
            continue
        sig = [(pair, row) for pair, row in test["pairs"].items() if row["significant"]]
        lines.append(f"- **{title}** ({len(sig)} of {len(test['pairs'])} pairs differ significantly):")
        for pair, row in sig:
            lo, hi = row["ci"]
            if key.startswith("steer_"):
                diff = f"{row['difference'] * 100:+.0f} points [{lo * 100:+.0f}, {hi * 100:+.0f}]"
            else:
                diff = f"{row['difference']:+.3g} [{lo:+.3g}, {hi:+.3g}]"
            p = f"p < {1 / test['resamples']:.2g}" if row["p"] == 0 else f"p = {row['p']:.2g}"
            lines.append(f"  - {pair}: {diff}, {p}")
    return lines


def markdown_table(result: dict[str, Any]) -> str:
    """The summary table as Markdown (with its legend and the significant paired differences), for
    `langneurons benchmark` to print and to paste into notes."""
    rows = table_rows(result)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    extra = paired_lines(result)
    text = "\n".join(lines) + "\n"
    if result.get("paired"):
        text += "\n" + LEGEND + "\n"
    if extra:
        text += "\nPaired tests (bootstrap over the same items; significant differences only):\n\n"
        text += "\n".join(extra) + "\n"
    return text
