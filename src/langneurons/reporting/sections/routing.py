"""The routing section: expert usage per language in a mixture-of-experts model (routing.json)."""

from __future__ import annotations

import json
from typing import Any

from langneurons.reporting.routing_figure import routing_figure
from langneurons.reporting.sections.common import Figure, Section

TEMPLATE = "section_routing.html"


def routing_section(data: dict[str, Any]) -> Section:
    """The MoE routing figure with a caption naming the model, corpus and counted tokens."""
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
        TEMPLATE,
        "",
        [Figure("routing.png", routing_figure(data), "Expert routing per language", text)],
    )


__all__ = ["routing_section"]
