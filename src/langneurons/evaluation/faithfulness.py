"""Faithfulness of a selected set (docs/methods.md §17): the share of the whole-layer effect it recovers.

Per language k of the set: ``Δ_set`` = the increase of k's mean NLL when k's units are switched off (x ← 0),
``Δ_layers`` = the same with every unit of the layers that hold k's units switched off, and
``share = Δ_set / Δ_layers`` — beside the set's size and the layers' size. Works for neuron sets (at the
set's site) and head sets (site ``heads``).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.evaluation.nll import sentence_nll
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.provenance import now, software
from langneurons.intervention import check_neurons, deactivate, intervene
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar

FAITHFULNESS_FORMAT = "langneurons-faithfulness/1"


def faithfulness(loaded: LoadedModel, neurons: NeuronSet, corpus: Corpus, *, batch_size: int = 8, max_length: int = 512,
                 neurons_path: str | None = None, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Per language of the set that ``corpus`` has: Δ_set, Δ_layers and their ratio (module doc)."""
    site = check_neurons(loaded, neurons)
    langs = [lang for lang in neurons.languages if lang in corpus.languages]
    if not langs:
        raise LangneuronsError("none of the set's languages is in the evaluation texts")
    max_length = min(max_length, loaded.max_length)
    exists = neurons.existing_mask()
    started = time.time()
    out: dict[str, Any] = {}
    bar = progress_bar(progress, "passes")
    with bar:
        task = bar.add_task("faithfulness", total=3 * len(langs))

        def mean_nll(lang: str, mask: torch.Tensor | None) -> float:
            ivs = [] if mask is None else [deactivate(mask, 0.0, site=site)]
            with intervene(loaded, ivs):
                nll, tokens = sentence_nll(loaded, corpus.texts(lang), batch_size, max_length)
            bar.advance(task)
            return float(nll.sum()) / max(int(tokens.sum()), 1)

        for lang in langs:
            mask = neurons.mask(lang)
            layers = mask.any(1)
            whole = exists & layers.unsqueeze(1)
            base = mean_nll(lang, None)
            d_set = mean_nll(lang, mask) - base if bool(mask.any()) else 0.0
            d_layers = mean_nll(lang, whole) - base if bool(whole.any()) else 0.0
            out[lang] = {
                "size": int(mask.sum()),
                "layers": layers.nonzero().reshape(-1).tolist(),
                "layer_units": int(whole.sum()),
                "delta_set": d_set,
                "delta_layers": d_layers,
                "share": d_set / d_layers if d_layers > 0 else None,
            }
    return {
        "format": FAITHFULNESS_FORMAT,
        "units": "attention heads" if site == "heads" else "neurons",
        "per_language": out,
        "definition": "share = delta_set / delta_layers: the increase of the language's mean NLL (nats per token) "
        "with its units off, over the same with every unit of those layers off",
        "provenance": {**loaded.describe(), "site": site, "neurons": neurons.describe(neurons_path),
                       "texts": {"spec": corpus.name, "sha256": corpus.sha256(),
                                 "sentences": {lang: len(corpus.items[lang]) for lang in langs}},
                       "settings": {"batch_size": batch_size, "max_length": max_length},
                       "wall_seconds": round(time.time() - started, 3), "created": now(), **software()},
    }  # fmt: skip


__all__ = ["FAITHFULNESS_FORMAT", "faithfulness"]
