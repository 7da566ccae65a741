"""Direction-set sections: a DiffMean set (`identify --method diffmean`) found in the run, from its JSON alone."""

from __future__ import annotations

from typing import Any

from langneurons.reporting.sections.common import Section, Table, anchor

TEMPLATE = "section_directions.html"


def directions_section(name: str, data: dict[str, Any]) -> Section:
    """What the direction set holds: per language and layer the length of its direction relative to the residual
    stream's norm r_l (what `steer --directions` scales α by), the layer where it is longest, and how to use it."""
    languages = [str(lang) for lang in data.get("languages") or []]
    norms = data.get("norms") or {}
    resid = [float(r) for r in data.get("resid_norm") or []]
    n_layers = int(data.get("num_layers") or len(resid))
    shown = _layers_shown(n_layers)
    rows = []
    for lang in languages:
        values = [float(v) for v in norms.get(lang) or []]
        rel = [v / r if r > 0 else float("nan") for v, r in zip(values, resid, strict=False)]
        peak = max(range(len(rel)), key=lambda i: rel[i]) if rel else None
        rows.append([lang, *(f"{rel[i]:.3f}" if i < len(rel) else "–" for i in shown),
                     "–" if peak is None else f"{peak} ({rel[peak]:.3f})"])  # fmt: skip
    head = ["language", *(f"layer {i}" for i in shown), "longest at layer"]
    method = data.get("method", "diffmean")
    intro = (
        f"Direction set {name}.json ({method}, site {data.get('site', 'residual')}): one direction per language "
        f"and layer over {n_layers} layers, hidden size {data.get('hidden_size', '?')}, languages "
        f"{', '.join(languages)}. The table gives ‖d‖ / r, the length of each language's direction relative to the "
        "mean residual-stream norm r of its layer; `steer --directions` adds α · r · d/‖d‖."
    )
    note = (f"Steer with it: langneurons steer --model {data.get('model') or 'MODEL'} --directions "
            f"{name}.json --to {languages[0] if languages else 'LANG'}")  # fmt: skip
    return Section(f"directions-{anchor(name)}", f"Direction set: {name}", TEMPLATE, intro=intro, note=note,
                   data={"table": Table(head, rows)})  # fmt: skip


def _layers_shown(n_layers: int, most: int = 12) -> list[int]:
    """Every layer of a shallow model; about ``most`` evenly spaced ones (first and last included) of a deep one."""
    if n_layers <= most:
        return list(range(n_layers))
    return sorted({round(i * (n_layers - 1) / (most - 1)) for i in range(most)})


__all__ = ["directions_section"]
