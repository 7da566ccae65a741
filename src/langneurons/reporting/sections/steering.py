"""Steering sections: success rates with 95 % Wilson intervals (figure and table) and example generations."""

from __future__ import annotations

from typing import Any

import langneurons.reporting.evaluation as ev
from langneurons.reporting.sections.common import Figure, Section, Table, anchor, file_stem, number_text

TEMPLATE = "section_steering.html"


def steer_section(name: str, data: dict[str, Any]) -> Section:
    """Success rates with 95 % Wilson intervals (figure and table) and two example generations per target, so a
    reader sees both the numbers and what the steered model wrote."""
    section = Section(f"steer-{anchor(name)}", f"Steering: {name}", TEMPLATE, data={"table": None, "examples": []})
    bars = ev.steer_bars(data)
    if not bars:
        section.note = f"{name}.json holds no steering results this report understands."
        return section
    prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
    settings = prov.get("settings") if isinstance(prov.get("settings"), dict) else {}
    rule = prov.get("success_rule")
    source = data.get("source")
    what = (
        f"Generations from {prov.get('n_prompts', '?')} prompts ({prov.get('prompts') or 'default prompts'}) "
        f"with the source ({source}) neurons off and the target's set by "
        + ("each target's calibrated mode and strength; " if settings.get("mode") == "calibrated"
           else f"mode {settings.get('mode', '?')}; ")  # fmt: skip
        + f"model {prov.get('model', '?')}, site {prov.get('site', '?')}, neurons of "
        f"{(prov.get('neurons') or {}).get('path', '?')}; identified by {prov.get('identifier', '?')}."
    )
    success = f"Success = {rule}." if rule else "Success = identified as the target language."
    section.intro = f"{what} {success}"
    sweep = ev.direction_sweep(data)
    if sweep is not None:  # steer --directions: α × layer, one heatmap per target instead of a forest of bars
        prompts = prov.get("prompts") or "default prompts"
        section.intro = (f"Generations from {prov.get('n_prompts', '?')} prompts ({prompts}) with α · r · d/‖d‖ added "
                         f"to the residual stream at one layer; model {prov.get('model', '?')}. {success}")  # fmt: skip
        section.figures.append(
            Figure(
                f"{file_stem(name)}-sweep.png",
                ev.direction_sweep_figure(sweep, f"{name}: steering success over α × layer"),
                f"{name}: steering success over α × layer",
                f"Share of generations that succeed when the target language's direction is added with strength "
                f"α (columns; α times the layer's mean residual norm) at one layer (rows), one panel per target; "
                f"the panel titles give the unsteered model and the best random direction of the same norm. "
                f"{success} From {name}.json; exact counts and intervals in the table.",
            )
        )
        section.data = {"table": steer_table(data, bars), "examples": steer_examples(data)}
        return section
    section.figures.append(
        Figure(
            f"{file_stem(name)}-success.png",
            ev.steer_figure(bars, f"{name}: steering success per target"),
            f"{name}: steering success per target",
            f"Share of generations that succeed (solid) and, where recorded, that are merely in the target "
            f"language (hatched), for the steered model, a matched random control and the unmodified model; "
            f"error bars: 95 % Wilson intervals over the prompts. {success} From {name}.json.",
        )
    )
    section.data = {"table": steer_table(data, bars), "examples": steer_examples(data),
                    "calibration": calibration_table(data)}  # fmt: skip
    if section.data["calibration"] is not None:
        cal = data["calibration"]
        section.figures.append(
            Figure(
                f"{file_stem(name)}-calibration.png",
                ev.calibration_figure(cal, f"{name}: calibration on the dev prompts"),
                f"{name}: calibration on the dev prompts",
                f"Success, fluent rate and raw language rate of the steered model on the "
                f"{len(cal.get('dev_prompts') or [])} dev prompts at each (mode, strength) of the grid, one panel "
                f"per target; the grey band is the setting chosen ({cal.get('rule', '')}). From {name}.json.",
            )
        )
        section.intro += (f" Calibrated: each target's mode and strength were chosen on the first "
                          f"{len(cal.get('dev_prompts') or [])} prompts (the dev split; {cal.get('rule', '')}); "
                          f"the figure and table measure the other {len(cal.get('test_prompts') or [])} at the "
                          f"chosen setting.")  # fmt: skip
    return section


def calibration_table(data: dict[str, Any]) -> Table | None:
    """`steer --calibrate`'s dev curve: per target and grid setting, success, fluent rate and language rate on the
    dev prompts (the success–fluency trade-off), the chosen setting marked. None for an uncalibrated file."""
    cal = data.get("calibration")
    if not isinstance(cal, dict) or not isinstance(cal.get("curve"), dict):
        return None
    rows = []
    for target, points in cal["curve"].items():
        chosen = (cal.get("chosen") or {}).get(target) or {}
        for p in points or []:
            mark = p.get("mode") == chosen.get("mode") and p.get("strength") == chosen.get("strength")
            rows.append([f"→ {target}", f"{p.get('mode')} {number_text(p.get('strength'))}",
                         *(f"{100 * p[k]:.0f} %" if isinstance(p.get(k), int | float) else "–"
                           for k in ("success", "fluent_rate", "language_rate")),
                         str(p.get("n", "?")), "chosen" if mark else ""])  # fmt: skip
    return Table(["target", "setting (dev)", "success", "fluent", "in target language", "prompts", ""], rows)


def steer_table(data: dict[str, Any], bars: list[ev.SteerBar]) -> Table:
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
                number_text(steered.get("distinct_2")),
                number_text(steered.get("continuation_ppl_median")),
                ", ".join(f"{k} {v}" for k, v in list((steered.get("languages") or {}).items())[:4]),
            ]
            rows.append(cells)
    return Table(head, rows)


def steer_examples(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Two steered generations per target (successes first): prompt, continuation and a tag line saying how
    each was judged."""
    out = []
    for target, gens in ev.steer_examples(data).items():
        if not gens:
            continue
        shown = []
        for g in gens:
            tags = [f"identified as {g.get('lang', '?')}"]
            if g.get("fluent") is not None:
                tags.append("fluent" if g["fluent"] else "not fluent")
            if isinstance(g.get("ppl"), int | float):
                tags.append(f"PPL {g['ppl']:.3g}")
            tags.append(f"strength {g.get('strength')}")
            shown.append({"prompt": g.get("prompt", ""), "text": g.get("text", ""), "tags": "; ".join(tags)})
        out.append({"target": target, "generations": shown})
    return out


def _pct(bar: ev.SteerBar | None) -> str:
    if bar is None:
        return "–"
    low, high = bar.interval
    return f"{100 * bar.rate:.0f} % [{100 * low:.0f}–{100 * high:.0f}] of {bar.n}"


__all__ = ["calibration_table", "steer_examples", "steer_section", "steer_table"]
