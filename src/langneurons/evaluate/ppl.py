"""The perplexity matrix (METHODS.md §7): interventions × evaluation languages, with random controls.

Rows: no intervention, each language's neurons deactivated, and each language's matched random
control (same count per layer, disjoint from every language neuron; `intervene.random_control`).
PPL = exp(total NLL / total predicted tokens) per evaluation language, token-weighted.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.evaluate.nll import text_nll
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.provenance import now, software
from langneurons.intervene import Intervention, check_neurons, deactivate, intervene, random_control
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar

PPL_FORMAT = "langneurons-ppl/1"


@dataclass
class PPLSettings:
    """Everything besides model, neurons and texts that decides the numbers (all go in the file)."""

    site: str | None = None  # None: the neuron set's site (or act)
    strength: float = 0.0  # deactivation: x ← strength · x
    controls: bool = True
    seed: int = 0
    batch_size: int = 8
    max_length: int = 256
    any_site: bool = False
    languages: list[str] | None = None  # whose neurons to deactivate (default: all of the set)


def _rows(neurons: NeuronSet, s: PPLSettings, site: str) -> list[tuple[str, Intervention | None]]:
    langs = s.languages or neurons.languages
    rows: list[tuple[str, Intervention | None]] = [("none", None)]
    rows += [
        (f"neurons:{lang}", deactivate(neurons.mask(lang), s.strength, site=site, label=lang))
        for lang in langs
    ]
    if s.controls:
        rows += [
            (
                f"random:{lang}",
                deactivate(random_control(neurons, lang, s.seed), s.strength, site=site, label=lang),
            )
            for lang in langs
        ]
    return rows


def ppl_matrix(
    loaded: LoadedModel,
    neurons: NeuronSet,
    corpus: Corpus,
    settings: PPLSettings | None = None,
    *,
    neurons_path: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Perplexity of each corpus language under each intervention; ΔPPL and the per-language summary."""
    s = settings or PPLSettings()
    site = check_neurons(loaded, neurons, s.site, s.any_site)
    if not corpus.languages:
        raise LangneuronsError("no evaluation texts")
    rows = _rows(neurons, s, site)
    started = time.time()
    nll: dict[str, dict[str, float]] = {}
    tokens: dict[str, int] = {}
    bar = progress_bar(progress, "perplexities")
    with bar:
        task = bar.add_task("", total=len(rows) * len(corpus.languages))
        for name, iv in rows:
            nll[name] = {}
            for lang in corpus.languages:
                bar.update(task, description=f"ppl {name} on {lang}")
                with intervene(loaded, [] if iv is None else [iv]):
                    total, count = text_nll(loaded, corpus.texts(lang), s.batch_size, s.max_length)
                if count == 0:
                    raise LangneuronsError(f"no predicted tokens in the {lang} texts")
                nll[name][lang], tokens[lang] = total, count
                bar.advance(task)
    ppl = {r: {lang: math.exp(v / tokens[lang]) for lang, v in row.items()} for r, row in nll.items()}
    return {
        "format": PPL_FORMAT,
        "interventions": [r for r, _ in rows],
        "languages": corpus.languages,
        "ppl": ppl,
        "delta_relative": _delta(ppl, relative=True),
        "delta_absolute": _delta(ppl, relative=False),
        "summary": summarise(ppl, s.languages or neurons.languages, corpus.languages),
        "tokens": tokens,
        "neuron_counts": {r: iv.n_neurons for r, iv in rows if iv is not None},
        "provenance": {
            **loaded.describe(),
            "site": site,
            "neurons": {
                "path": neurons_path,
                "method": neurons.method,
                "params": neurons.params,
                "site": neurons.site,
                "model": neurons.model,
                "source": neurons.source,
            },
            "texts": {
                "spec": corpus.name,
                "sha256": corpus.sha256(),
                "sentences": {lang: len(corpus.items[lang]) for lang in corpus.languages},
            },
            "settings": asdict(s),
            "controls": "random:<lang> = seeded random neurons, same count per layer as <lang>'s, "
            "disjoint from every selected/language neuron of the set",
            "wall_seconds": round(time.time() - started, 3),
            "created": now(),
            **software(),
        },
    }


def _delta(ppl: dict[str, dict[str, float]], relative: bool) -> dict[str, dict[str, float]]:
    base = ppl["none"]
    return {
        r: {lang: (v / base[lang] - 1.0) if relative else (v - base[lang]) for lang, v in row.items()}
        for r, row in ppl.items()
    }


def _geomean_delta(deltas: list[float]) -> float | None:
    """Geometric mean of the ratios 1 + Δ, as a Δ (None when empty)."""
    if not deltas:
        return None
    return math.exp(sum(math.log1p(d) for d in deltas) / len(deltas)) - 1.0


def summarise(
    ppl: dict[str, dict[str, float]], set_langs: list[str], eval_langs: list[str]
) -> dict[str, Any]:
    """Per language: relative ΔPPL on itself, on the others and its random control's on itself.

    On the others: the arithmetic mean of ΔPPL (dominated by one large cell), the median and the
    geometric mean of the ratios PPL_int/PPL_base (reported as ratio − 1, like ΔPPL), and the max.
    """
    rel = _delta(ppl, relative=True)
    out: dict[str, Any] = {}
    for lang in set_langs:
        row = rel.get(f"neurons:{lang}")
        if row is None:
            continue
        others = [row[o] for o in eval_langs if o != lang]
        ctrl = rel.get(f"random:{lang}")
        out[lang] = {
            "self": row.get(lang),
            "others_mean": sum(others) / len(others) if others else None,
            "others_median": statistics.median(others) if others else None,
            "others_geomean": _geomean_delta(others),
            "others_max": max(others) if others else None,
            "random_self": None if ctrl is None else ctrl.get(lang),
            "random_others_mean": None
            if ctrl is None or not others
            else sum(ctrl[o] for o in eval_langs if o != lang) / len(others),
        }
    return out
