"""The benchmark table and figure: every method on the three causal tests, each beside its random control
(read from a `langneurons benchmark` result; no model is loaded)."""

from __future__ import annotations

from typing import Any

import numpy as np

from langneurons.reporting.figures import plt, png


def benchmark_figure(result: dict[str, Any]) -> bytes:
    """Three panels (perplexity, steering, translation) of grouped bars per method, as PNG bytes."""
    methods = list(result["summary"])
    rows = [result["summary"][m] for m in methods]
    x = np.arange(len(methods))
    ppl = [
        ("own language", "ppl_own", 1.0),
        ("other languages", "ppl_others", 1.0),
        ("random control, own", "ppl_random_own", 1.0),
    ]
    steer = [
        ("success (fluent, in X)", "steer_success", 0.0),
        ("fluent", "steer_fluent", 0.0),
        ("combined", "steer_combined", 0.0),
        ("random control success", "steer_random_success", 0.0),
    ]
    chrf = [
        ("en→X (own)", "chrf_drop_own", 0.0),
        ("en→Y (others)", "chrf_drop_others", 0.0),
        ("random control, en→X", "chrf_drop_random_own", 0.0),
    ]
    panels = [
        ("switched off: PPL factor (median)", "PPL_off / PPL_base", True, ppl),
        ("steering en → X (test prompts)", "share of generations", False, steer),
        ("switched off: translation chrF drop (median)", "chrF points", False, chrf),
    ]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(5.2 * 3, 3.8))
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f"]
    for ax, (title, ylabel, log, series) in zip(axes, panels, strict=True):
        width = 0.8 / len(series)
        for i, (label, key, offset) in enumerate(series):
            values = [np.nan if r.get(key) is None else r[key] + offset for r in rows]
            bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label, color=colours[i])
            if not log:  # a zero bar is invisible: say it is a measured 0, not a missing value
                ax.bar_label(bars, labels=["0" if v == 0 else "" for v in values], fontsize=6, color=colours[i])
        if log:
            ax.set_yscale("log")
            ax.axhline(1.0, color="black", lw=0.6)
        else:
            ax.axhline(0.0, color="black", lw=0.6)
            ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # headroom: the legend sits above the bars, not on them
        ax.set_xticks(x, methods, rotation=20)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="upper left" if log else "upper center", ncol=1 if log else 2)
    model = result.get("provenance", {}).get("model", "")
    fig.suptitle(f"benchmark: {model}, languages {','.join(result['languages'])}", fontsize=11)
    fig.tight_layout()
    return png(fig)


def benchmark_caption(result: dict[str, Any]) -> str:
    """What the figure shows, on what, and how (for the report)."""
    p = result.get("provenance", {})
    st = p.get("settings", {})
    return (
        f"Every method's component switched off (left: PPL factor on the own language, the others, and for the "
        f"matched random control; medians over languages; middle: steering {result.get('source')} → each other "
        f"language at the setting chosen on dev prompts, fluency-gated success, fluent share, their harmonic "
        f"mean and the control's success; right: few-shot translation chrF drop). Model {p.get('model')}; "
        f"languages {','.join(result.get('languages', []))}; identification {p.get('identification_text')}; "
        f"held-out {p.get('heldout_text')} ({st.get('eval_sentences')} PPL sentences, {st.get('prompts')} prompts, "
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
    ("steer_success", "steer succ."),
    ("steer_fluent", "fluent"),
    ("steer_combined", "combined"),
    ("steer_random_success", "rand. succ."),
    ("chrf_drop_own", "chrF drop own"),
    ("chrf_drop_others", "chrF drop others"),
    ("chrf_drop_random_own", "chrF drop rand."),
]


def fmt_cell(key: str, value: Any) -> str:
    """A table cell: ΔPPL as a signed %, rates as %, chrF with one decimal."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if key.startswith("ppl_") and key not in ("ppl_selectivity", "ppl_vs_random"):
        return f"{value:+.0%}" if abs(value) < 10 else f"×{value + 1:.0f}"
    if key in ("ppl_selectivity", "ppl_vs_random"):
        return f"{value:.2f}"
    if key.startswith("steer_"):
        return f"{value:.0%}"
    if key.startswith("chrf_"):
        return f"{value:+.1f}"
    if key == "units_per_language":
        return f"{value:g}"
    if key.endswith("seconds"):
        return f"{value:.2f}"
    return str(value)


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The summary table as rows of cells (first row: headers)."""
    rows = [[title for _, title in COLUMNS]]
    for method, row in result["summary"].items():
        rows.append([method] + [fmt_cell(key, row.get(key)) for key, _ in COLUMNS[1:]])
    return rows


def markdown_table(result: dict[str, Any]) -> str:
    """The summary table as Markdown, for `langneurons benchmark` to print and to paste into notes."""
    rows = table_rows(result)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"
