"""The perplexity matrix (docs/methods.md §9): interventions × evaluation languages, with random controls.

Rows: no intervention, each language's neurons deactivated, and each language's matched random
control (same count per layer, disjoint from every language neuron; `intervene.random_control`).
PPL = exp(total NLL / total predicted tokens) per evaluation language, token-weighted.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.evaluate.nll import text_nll
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.provenance import now, software
from langneurons.intervene import Intervention, check_neurons, deactivate, intervene, random_control
from langneurons.intervene.routing import parse_route, steer_routing
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.record.distributed import World, gather_to_main, share

PPL_FORMAT = "langneurons-ppl/1"


@dataclass
class PPLSettings:
    """Everything besides model, neurons and texts that decides the numbers (all go in the file)."""

    site: str | None = None  # None: the neuron set's site (or act)
    strength: float = 0.0  # deactivation: x ← strength · x
    controls: bool = True
    seed: int = 0
    batch_size: int = 8
    max_length: int = 512
    any_site: bool = False
    languages: list[str] | None = None  # whose neurons to deactivate (default: all of the set)
    route: str | None = None  # MoE: a routing edit ("mask:L:E,bias:L:E:V"), evaluated as its own row "route"


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
    world: World | None = None,
) -> dict[str, Any] | None:
    """Perplexity of each corpus language under each intervention; ΔPPL and the per-language summary.

    Under torchrun (``world`` of several processes) each rank computes its share of the
    (intervention, language) cells; rank 0 gathers them and returns the result (the other ranks
    return None). Every cell is computed exactly as in one process, so the numbers are identical.
    """
    s = settings or PPLSettings()
    site = check_neurons(loaded, neurons, s.site, s.any_site)
    if not corpus.languages:
        raise LangneuronsError("no evaluation texts")
    rows = _rows(neurons, s, site)
    world = world or World()
    max_length = min(s.max_length, loaded.max_length)  # capped at the model's own maximum
    route = None
    if s.route:
        route = parse_route(s.route)
        rows.insert(1, ("route", None))
    started = time.time()
    cells = [(r, lang) for r in range(len(rows)) for lang in corpus.languages]
    mine = [cells[i] for i in share(len(cells), world)]
    done: dict[tuple[int, str], tuple[float, int]] = {}
    bar = progress_bar(progress and world.is_main, "sentences")
    with bar:
        total_sentences = sum(len(corpus.items[lang]) for _, lang in mine)
        task = bar.add_task("perplexity", total=total_sentences, tokens=0)
        seen = {"tokens": 0}

        def on_batch(n_sentences: int, n_tokens: int) -> None:
            seen["tokens"] += n_tokens
            bar.update(task, advance=n_sentences, tokens=seen["tokens"])

        for r, lang in mine:
            name, iv = rows[r]
            bar.update(task, description=f"ppl {name} on {lang}")
            routing = steer_routing(loaded, route) if name == "route" else nullcontext()
            with intervene(loaded, [] if iv is None else [iv]), routing:
                done[(r, lang)] = text_nll(loaded, corpus.texts(lang), s.batch_size, max_length, on_batch)
    gathered = gather_to_main(done, world)
    if gathered is None:
        return None
    nll: dict[str, dict[str, float]] = {name: {} for name, _ in rows}
    tokens: dict[str, int] = {}
    for r, lang in cells:
        total, count = next(part[(r, lang)] for part in gathered if (r, lang) in part)
        if count == 0:
            raise LangneuronsError(f"no predicted tokens in the {lang} texts")
        nll[rows[r][0]][lang], tokens[lang] = total, count
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
            "processes": world.size,
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


def _same_corpus(a: str, b: str) -> bool:
    from pathlib import Path

    def norm(spec: str) -> str:
        if spec == "ntrex":
            return "ntrex:identify"
        path = Path(spec)
        return str(path.resolve()) if path.exists() else spec

    return norm(a) == norm(b)


def identification_text_warning(neurons: NeuronSet, corpus: Corpus) -> str | None:
    """A warning when the evaluation text is the text the neurons were identified on (a trap: the
    effect is then measured in-sample), else None."""
    recorded = neurons.source.get("corpus")
    specs = recorded if isinstance(recorded, list) else [recorded]
    same = corpus.sha256() == neurons.source.get("corpus_sha256") or any(
        isinstance(spec, str) and _same_corpus(spec, corpus.name) for spec in specs
    )
    if not same:
        return None
    hint = " (use --corpus ntrex:dev, the held-out lines)" if corpus.name.startswith("ntrex") else ""
    return (
        f"the evaluation text {corpus.name} is the text the neurons were identified on: the effect is "
        f"measured in-sample{hint}"
    )
