"""The neuron browser: a cards file from `langneurons explain SET.json` as an interactive section.

A reader picks a language and a layer (or types ``L:N``), sees the set's neurons ranked by activation
probability, and clicks one to open its card: per-language probabilities as bars, top examples with the firing
token highlighted, and the tokens it writes with their languages. The cards travel inside the page as JSON
(``<`` ``>`` ``&`` escaped, so no text can close the script); the script builds the view with ``textContent``
only, so no text from a result file is ever parsed as HTML.
"""

from __future__ import annotations

import json
from typing import Any

from markupsafe import Markup

from langneurons.reporting.sections.common import Section, Table, anchor

TEMPLATE = "section_neurons.html"


def neuron_browser_section(name: str, data: dict[str, Any]) -> Section:
    """The browser of one cards file, and its "writes its own language" table by layer."""
    cards = {f"{c['layer']}:{c['neuron']}": c for c in data.get("cards") or [] if isinstance(c, dict)}
    payload = {
        "languages": list(data.get("languages") or []),
        "num_layers": data.get("num_layers"),
        "ranked": data.get("ranked") or {},
        "cards": cards,
        "command": f"langneurons explain {data.get('run') or 'RUN'} --neuron",
    }
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    by_layer = (data.get("writes_by_layer") or {}).get("languages") or {}
    intro = (
        f"{len(cards)} neuron cards of the {data.get('method') or ''} set (model {data.get('model')}, site "
        f"{data.get('site')}). Pick a language and a layer, or type LAYER:NEURON; click a neuron to open its card. "
        "Probability = share of the language's counted tokens where the neuron's activation is > 0; written tokens "
        "= logit-lens scores of its output weights (docs/methods.md §15)."
    )
    rule = (data.get("writes_by_layer") or {}).get("rule", "")
    return Section(anchor(f"neurons-{name}"), f"Neuron browser: {name}", TEMPLATE, intro,
                   data={"json": Markup(text), "table": writes_table(by_layer), "rule": rule})  # fmt: skip


def writes_table(by_layer: dict[str, Any]) -> Table | None:
    """Per layer and language: the set's neurons that write their own language / the set's neurons."""
    if not by_layer:
        return None
    langs = list(by_layer)
    n_layers = max(len(v.get("by_layer") or []) for v in by_layer.values())
    rows = []
    for layer in range(n_layers):
        cells = []
        for lang in langs:
            rows_of = by_layer[lang].get("by_layer") or []
            row = rows_of[layer] if layer < len(rows_of) else {}
            cells.append(f"{row.get('writes', 0)}/{row['neurons']}" if row.get("neurons") else "")
        if any(cells):
            rows.append([str(layer), *cells])
    rows.append(["all", *(f"{by_layer[lang].get('writes', 0)}/{by_layer[lang].get('neurons', 0)}" for lang in langs)])
    return Table(["layer", *langs], rows)


__all__ = ["neuron_browser_section"]
