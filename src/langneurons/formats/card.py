"""A neuron's card (``langneurons explain``): what it fires on and what it writes, as one JSON object.

  layer, neuron, site
  languages   {lang: {probability, mean, top: [{value, text, position, token, left, right, sentence}]}}
              probability = share of the language's counted tokens where activation > 0; mean = mean
              activation; top = its largest activations on that language (value order, docs/methods.md §15):
              text = the sentence, position = token index in the ids the model saw (BOS = 0), token = that
              token, left/right = a few neighbouring tokens (display only), sentence = the sentence's index
              among the language's counted sentences
  writes      promoted / suppressed: [{token, token_id, score, language}] (logit-lens scores of the neuron's
              down-projection column through the final norm's gain and the unembedding);
              language_share: {lang: share of the top-100 promoted tokens in that language};
              random_share: {lang: {mean, q95}} of the same share over random neurons of the layer
  model       the model it was read from

A cards file (``explain SET.json -o cards.json``) holds ``format`` "langneurons-cards/1", ``cards`` (a list of
cards), ``ranked`` ({lang: [[layer, neuron, probability, own-language share], …]} every neuron of the set,
most specific first: p on the language minus the largest p on another), ``writes_by_layer`` (per language and
layer: neurons that write their own language) and provenance.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, write_json

CARDS_FORMAT = "langneurons-cards/1"
CARD_FORMAT = "langneurons-card/1"


class Card(dict):
    """One neuron's card: the dict the CLI writes, with a one-line repr and an HTML view for notebooks."""

    @property
    def name(self) -> str:
        return f"{self['layer']}:{self['neuron']}"

    def __repr__(self) -> str:
        langs = self.get("languages") or {}
        best = max(langs, key=lambda lang: langs[lang].get("probability") or 0.0, default=None)
        fires = f"fires most on {best} (p={langs[best]['probability']:.2f})" if best else "no statistics"
        writes = self.get("writes") or {}
        share = writes.get("language_share") or {}
        own = f"; writes {best} {share.get(best, 0.0):.0%} of its top-100 tokens" if best and share else ""
        promoted = writes.get("promoted") or []
        top = f"; promotes {promoted[0]['token']!r}" if promoted else ""
        return f"Card({self.name}, site {self.get('site')}; {fires}{own}{top})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        return card_html(self)

    def save(self, path: str | Path) -> Path:
        write_json(Path(path), {"format": CARD_FORMAT, **self})
        return Path(path)


def card_html(card: dict[str, Any]) -> str:
    """A self-contained HTML view: per-language probability bars, top examples with the token highlighted,
    promoted and suppressed tokens with their languages."""
    e = html.escape
    langs = card.get("languages") or {}
    parts = [f"<div class='ln-card'><h4>neuron {e(str(card['layer']))}:{e(str(card['neuron']))} "
             f"<small>(site {e(str(card.get('site')))}, {e(str(card.get('model') or ''))})</small></h4>"]  # fmt: skip
    parts.append("<table class='ln-bars'>")
    for lang, entry in langs.items():
        p = float(entry.get("probability") or 0.0)
        parts.append(f"<tr><td>{e(lang)}</td><td><div style='background:#4a7ab5;height:0.8em;width:{p * 200:.0f}px'>"
                     f"</div></td><td>{p:.3f}</td></tr>")  # fmt: skip
    parts.append("</table>")
    for lang, entry in langs.items():
        top = entry.get("top") or []
        if not top:
            continue
        parts.append(f"<p><b>{e(lang)}</b> top examples</p><ol class='ln-examples'>")
        for ex in top:
            parts.append(f"<li><code>{ex['value']:.3f}</code> {e(ex.get('left', ''))}"
                         f"<mark>{e(ex.get('token', ''))}</mark>{e(ex.get('right', ''))}</li>")  # fmt: skip
        parts.append("</ol>")
    writes = card.get("writes") or {}
    for kind in ("promoted", "suppressed"):
        rows = writes.get(kind) or []
        if rows:
            shown = ", ".join(f"<code>{e(r['token'])}</code><sub>{e(str(r.get('language') or '–'))}</sub>"
                              for r in rows[:15])  # fmt: skip
            parts.append(f"<p><b>{kind}</b>: {shown}</p>")
    share = writes.get("language_share") or {}
    if share:
        parts.append("<p>language share of the top-100 promoted tokens: "
                     + ", ".join(f"{e(k)} {v:.0%}" for k, v in share.items()) + "</p>")  # fmt: skip
    parts.append("</div>")
    return "".join(parts)


def parse_neuron(text: str, num_layers: int, width: int, existing: Any = None) -> tuple[int, int]:
    """``"L:N"`` → (layer, neuron), checked against the model's shape (``existing``: bool [L, W] of the columns
    that are neurons, for MoE layouts); a one-line error naming what is wrong."""
    parts = str(text).strip().split(":")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise LangneuronsError(f"--neuron must be LAYER:NEURON (e.g. 17:1234), got {text!r}")
    layer, neuron = (int(p) for p in parts)
    if not 0 <= layer < num_layers:
        raise LangneuronsError(f"--neuron {text}: layer {layer} is not a layer of this model (0..{num_layers - 1})")
    if not 0 <= neuron < width:
        raise LangneuronsError(f"--neuron {text}: neuron {neuron} is out of range 0..{width - 1}")
    if existing is not None and not bool(existing[layer, neuron]):
        raise LangneuronsError(f"--neuron {text}: layer {layer} has no neuron {neuron} (no expert column there)")
    return layer, neuron


def save_cards(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a cards file (``data`` holds ``cards`` and the set-level results)."""
    write_json(Path(path), {"format": CARDS_FORMAT, **data})
    return Path(path)


def load_cards(path: str | Path) -> dict[str, Any]:
    """A cards file, its ``cards`` as :class:`Card` objects; one-line error if it is not one."""
    data = read_json(Path(path))
    if not isinstance(data, dict) or data.get("format") not in (CARDS_FORMAT, CARD_FORMAT):
        raise LangneuronsError(f"{path} is not a cards file (from `langneurons explain`)")
    if data["format"] == CARD_FORMAT:
        return {"format": CARDS_FORMAT, "cards": [Card({k: v for k, v in data.items() if k != "format"})]}
    data["cards"] = [Card(c) for c in data.get("cards") or []]
    return data


__all__ = ["CARDS_FORMAT", "CARD_FORMAT", "Card", "card_html", "load_cards", "parse_neuron", "save_cards"]
