"""The perplexity matrix (docs/methods.md §9): interventions × evaluation languages, with random controls.

Rows: no intervention, each language's neurons deactivated, and each language's matched random
control (same count per layer, disjoint from every language neuron; `intervene.random_control`).
PPL = exp(total NLL / total predicted tokens) per evaluation language, token-weighted.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.evaluation.nll import sentence_nll
from langneurons.evaluation.significance import bootstrap_ratio_ci, summarise_effect
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.provenance import now, software
from langneurons.intervention import Intervention, check_neurons, deactivate, intervene, matched_control, null_control
from langneurons.intervention.routing import parse_route, steer_routing
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.recording.distributed import World, gather_to_main, share
from langneurons.recording.spans import check_count, span_arguments
from langneurons.summaries import summarise_ratios

PPL_FORMAT = "langneurons-ppl/1"


@dataclass
class PPLSettings:
    """Everything besides model, neurons and texts that decides the numbers (all go in the file)."""

    site: str | None = None  # None: the neuron set's site (or act)
    strength: float = 0.0  # deactivation: x ← strength · x
    # 0: no control; 1: the matched disjoint control row (files before wrote true = 1); R >= 2: that row
    # and R null draws per language on its own text, for p-values (`significance`).
    controls: int = 1
    seed: int = 0
    batch_size: int = 8
    max_length: int = 512
    any_site: bool = False
    languages: list[str] | None = None  # whose neurons to deactivate (default: all of the set)
    route: str | None = None  # MoE: a routing edit ("mask:L:E,bias:L:E:V"), evaluated as its own row "route"
    count: str = "all"  # prompt/response corpora: predict all / response / prompt tokens (docs/responses.md)


def _rows(neurons: NeuronSet, s: PPLSettings, site: str) -> list[tuple[str, Intervention | None]]:
    langs = s.languages or neurons.languages
    rows: list[tuple[str, Intervention | None]] = [("none", None)]
    rows += [(f"neurons:{lang}", deactivate(neurons.mask(lang), s.strength, site=site, label=lang)) for lang in langs]
    if s.controls:
        rows += [
            (f"random:{lang}", deactivate(_control(neurons, lang, s), s.strength, site=site, label=lang))
            for lang in langs
        ]
    return rows


def _control(neurons: NeuronSet, lang: str, s: PPLSettings):
    """The matched disjoint control; for a head set (few heads per layer, where a disjoint draw can run out of
    free heads) the first null draw past the significance draws instead (`matched_control`)."""
    return matched_control(neurons, lang, s.seed, max(int(s.controls), 1))


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
    check_count(corpus, s.count)
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
    extra = _extra_controls(neurons, s, site, corpus.languages)
    # one job per (row, language) cell, then the null draws (their own language only); split over ranks
    cells = [(name, lang, iv) for name, iv in rows for lang in corpus.languages] + extra
    mine = [cells[i] for i in share(len(cells), world)]
    done: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}  # per-sentence NLL and tokens
    effects: dict[str, dict[str, Any]] = {}  # the routing edit's effect per language (routing_changed)
    bar = progress_bar(progress and world.is_main, "sentences")
    with bar:
        total_sentences = sum(len(corpus.items[lang]) for _, lang, _ in mine)
        task = bar.add_task("perplexity", total=total_sentences, tokens=0)
        seen = {"tokens": 0}

        def on_batch(n_sentences: int, n_tokens: int) -> None:
            seen["tokens"] += n_tokens
            bar.update(task, advance=n_sentences, tokens=seen["tokens"])

        for name, lang, iv in mine:
            bar.update(task, description=f"ppl {name} on {lang}")
            routing = steer_routing(loaded, route) if name == "route" else nullcontext()
            with intervene(loaded, [] if iv is None else [iv]), routing as effect:
                done[name, lang] = sentence_nll(loaded, corpus.texts(lang), s.batch_size, max_length, on_batch,
                                                **span_arguments(corpus, lang, s.count))  # fmt: skip
            if effect is not None:
                effects[lang] = effect.summary()
    gathered = gather_to_main((done, effects), world)  # per-sentence NLLs too: rank 0 computes the p-values
    if gathered is None:
        return None
    per_text: dict[tuple[str, str], tuple] = {key: value for part, _ in gathered for key, value in part.items()}
    routing_effects = {lang: eff for _, part in gathered for lang, eff in part.items()}
    nll: dict[str, dict[str, float]] = {name: {} for name, _ in rows}
    tokens: dict[str, int] = {}
    for name, _ in rows:
        for lang in corpus.languages:
            total, count = float(per_text[name, lang][0].sum()), int(per_text[name, lang][1].sum())
            if count == 0:
                raise LangneuronsError(f"no predicted tokens in the {lang} texts")
            nll[name][lang], tokens[lang] = total, count
    ppl = {r: {lang: math.exp(v / tokens[lang]) for lang, v in row.items()} for r, row in nll.items()}
    result = {
        "format": PPL_FORMAT,
        "interventions": [r for r, _ in rows],
        "languages": corpus.languages,
        "ppl": ppl,
        "delta_relative": _delta(ppl, relative=True),
        "delta_absolute": _delta(ppl, relative=False),
        "summary": summarise(ppl, s.languages or neurons.languages, corpus.languages),
        "tokens": tokens,
        "neuron_counts": {r: iv.n_neurons for r, iv in rows if iv is not None},
        **({"routing": {lang: routing_effects[lang] for lang in corpus.languages}} if route else {}),
        "provenance": {
            **loaded.describe(),
            "site": site,
            "neurons": neurons.describe(neurons_path),
            "texts": {
                "spec": corpus.name,
                "sha256": corpus.sha256(),
                "sentences": {lang: len(corpus.items[lang]) for lang in corpus.languages},
            },
            "settings": asdict(s),
            "processes": world.size,
            "controls": "random:<lang> = seeded random neurons, same count per layer as <lang>'s, "
            "disjoint from every selected/language neuron of the set"
            + (" (head sets: where a layer has too few free heads, a uniform draw of the same per-layer "
               "counts, nothing excluded)" if site == "heads" else ""),
            "units": "attention heads" if site == "heads" else "neurons",
            "wall_seconds": round(time.time() - started, 3),
            "created": now(),
            **software(),
        },
    }
    if s.controls >= 2:
        result["significance"] = significance(per_text, s, neurons, corpus.languages)
    return result


def _extra_controls(neurons: NeuronSet, s: PPLSettings, site: str, eval_langs: list[str]):
    """With ``controls`` R >= 2: R null draws (`null_control`) per set language that is also evaluated."""
    if s.controls < 2:
        return []
    langs = [lang for lang in (s.languages or neurons.languages) if lang in eval_langs]
    return [
        (f"null:{lang}#{r}", lang, deactivate(null_control(neurons, lang, s.seed, r), s.strength, site=site,
                                              label=lang))
        for lang in langs
        for r in range(int(s.controls))
    ]  # fmt: skip


def _own_delta(per_text: dict[tuple[str, str], tuple], name: str, lang: str) -> float:
    """Relative ΔPPL of row ``name`` on ``lang``'s text, from the per-sentence NLLs."""
    (nll, tok), (base, _) = per_text[name, lang], per_text["none", lang]
    mean = float((nll - base).sum()) / max(int(tok.sum()), 1)  # NaN when the model overflowed
    try:
        return math.expm1(mean)
    except OverflowError:  # a finite but huge NLL increase: the effect is +inf
        return math.inf


def significance(
    per_text: dict[tuple[str, str], tuple], s: PPLSettings, neurons: NeuronSet, eval_langs: list[str]
) -> dict[str, Any]:
    """Per language: ΔPPL on itself vs its R controls' (empirical p, z) and a bootstrap CI over sentences.

    NaN is never significant: a NaN/inf ΔPPL has no p-value (``reason``), NaN/inf controls are left out
    and counted (`summarise_effect`); ``warnings`` collects every language's lines for the CLI.
    """
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for lang in s.languages or neurons.languages:
        if lang not in eval_langs:
            continue
        base_nll, tok = per_text["none", lang]
        controls = [_own_delta(per_text, f"null:{lang}#{r}", lang) for r in range(int(s.controls))]
        real = _own_delta(per_text, f"neurons:{lang}", lang)
        diff = per_text[f"neurons:{lang}", lang][0] - base_nll
        ci = bootstrap_ratio_ci(diff, tok, transform=torch.expm1, seed=s.seed)
        summary = summarise_effect(real, controls)
        out[lang] = {**summary, "ci95": ci,  # None for NaN/inf sentences (`bootstrap_ratio_ci`)
                     "control_deltas": [c if math.isfinite(c) else None for c in controls]}  # fmt: skip
        warnings += [f"{lang}: {w}" for w in summary["warnings"]]
    return {
        "effect": "relative ΔPPL of a language's own text when its neurons are deactivated",
        "controls": "R seeded random sets with the language's per-layer counts, uniform over each layer "
        "(nothing excluded: exchangeable with the real set under the null)",
        "p": "(1 + #{controls with ΔPPL >= real}) / (1 + R), one-sided, over the finite controls; None "
        "(not computable) when the real ΔPPL is NaN/inf",
        "z": "(real - mean of controls) / sd of controls (ddof 1)",
        "ci95": "percentile bootstrap over sentences (2000 resamples) of the real ΔPPL",
        "per_language": out,
        "warnings": warnings,
    }


def _delta(ppl: dict[str, dict[str, float]], relative: bool) -> dict[str, dict[str, float]]:
    base = ppl["none"]
    return {
        r: {lang: (v / base[lang] - 1.0) if relative else (v - base[lang]) for lang, v in row.items()}
        for r, row in ppl.items()
    }


def _others(row: dict[str, float], eval_langs: list[str], lang: str) -> dict[str, float | None]:
    """Median and geometric mean of the ratios 1 + Δ over the other languages (``langneurons.summaries``),
    as Δ like the cells."""
    r = summarise_ratios(1.0 + row[o] for o in eval_langs if o != lang and o in row)
    return {k: None if r[k] is None else r[k] - 1.0 for k in ("median", "geomean")}


def summarise(ppl: dict[str, dict[str, float]], set_langs: list[str], eval_langs: list[str]) -> dict[str, Any]:
    """Per language: relative ΔPPL on itself, on the others and its random control's on itself.

    On the others, one definition shared with ``benchmark``, ``translate`` and the report
    (``langneurons.summaries``): the median of the ratios PPL_int/PPL_base with their geometric mean beside it
    (both reported as ratio − 1, like ΔPPL), and the max.
    """
    rel = _delta(ppl, relative=True)
    out: dict[str, Any] = {}
    for lang in set_langs:
        row = rel.get(f"neurons:{lang}")
        if row is None:
            continue
        others = [row[o] for o in eval_langs if o != lang]
        ctrl = rel.get(f"random:{lang}")
        mine = _others(row, eval_langs, lang)
        theirs = None if ctrl is None else _others(ctrl, eval_langs, lang)
        out[lang] = {
            "self": row.get(lang),
            "others_median": mine["median"],
            "others_geomean": mine["geomean"],
            "others_max": max(others) if others else None,
            "random_self": None if ctrl is None else ctrl.get(lang),
            "random_others_median": None if theirs is None else theirs["median"],
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
