"""One benchmark that ranks every method on the same causal tests (docs/methods.md §9, §13, §14, §16, §17).

Methods: LAPE, entropy−λ (AutoSweep), AP (Kojima), key neurons (Zeng), attribution neurons and attribution
heads (causal scores, `attribute`), DiffMean residual directions by our recipe and by CLaS-Bench's
(``diffmean-clas``: target − source, unit-normalised, absolute strength, added over a layer range; a
steering recipe, so it takes part in steering only), each with its matched random control, on the same model,
languages, identification text (NTREX lines 0–999) and held-out text (lines 1000–1996). Tests:

- deactivation: PPL of each language with each language's component off (neurons or heads zeroed;
  DiffMean: its direction projected out at every layer); selectivity = PPL factor on the own language /
  median PPL factor on the others (``langneurons.summaries``; median over languages), beside the random
  control's factor on the own language;
- steering English → each other language: fluency-gated success, fluent share and their harmonic mean
  (CLaS-Bench's combination), at each method's best setting (strength; DiffMean also its layer, CLaS its
  layer range; heads: the amplification) from a sweep on dev prompts, measured on other (test) prompts, with
  the random control at the same setting;
- translation en → X: chrF drop with X's component off on en→X vs on en→Y, and the control's on en→X;
- size (units per language) and identification time.

Every cell gets a 95 % interval (steering rates: Wilson over the pooled test generations; the rest: a
bootstrap over sentences, lines and prompts), and each pair of methods a paired bootstrap test on the same
items (`evaluation/paired.py`); the table marks the best method per test and those not significantly
different from it.

Each stage's raw result is saved in the output folder as it finishes (with the settings it was made
with), so an interrupted benchmark resumes from the last finished stage.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from langneurons.data import load_corpus
from langneurons.data.prompts import load_prompts, split_prompts
from langneurons.errors import LangneuronsError
from langneurons.evaluation.langid import to_label
from langneurons.evaluation.nll import sentence_nll
from langneurons.evaluation.paired import Measure, paired_bootstrap
from langneurons.evaluation.steer import SteerSettings, steering_interventions
from langneurons.evaluation.steer_directions import (
    CLAS_STRENGTHS,
    DIRECTION_STRENGTHS,
    clas_builder,
    clas_key,
    default_layers,
    default_ranges,
    direction_builder,
    direction_key,
    run_steering,
)
from langneurons.evaluation.translate import TranslateSettings, chrf_from_stats, chrf_stats, translate
from langneurons.formats.atomic import read_json, write_json
from langneurons.formats.attribution import load_attribution
from langneurons.formats.directions import DirectionSet
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.pooled import load_pooled
from langneurons.formats.provenance import now, software
from langneurons.formats.stats import load_stats
from langneurons.identification import identify
from langneurons.identification.diffmean import diffmean
from langneurons.intervals import wilson
from langneurons.intervention import (
    ablate_direction,
    deactivate,
    intervene,
    matched_control,
    random_direction_control,
)
from langneurons.intervention.controls import derive_seed
from langneurons.models.base import HEADS
from langneurons.models.loading import LoadedModel
from langneurons.recording import RecordSettings, record
from langneurons.recording.attribute import attribute
from langneurons.recording.attribution import AttributionSettings
from langneurons.recording.pooled import record_pooled
from langneurons.summaries import median, selectivity, summarise_differences, summarise_ratios

BENCHMARK_FORMAT = "langneurons-benchmark/2"
NEURON_METHODS = ("lape", "entropy-lambda", "ap", "key-neurons", "attribution-neurons")
HEAD_METHODS = ("attribution-heads",)
DIRECTION_METHODS = ("diffmean", "diffmean-clas")
METHODS = (*NEURON_METHODS, *HEAD_METHODS, *DIRECTION_METHODS)
POOLED_METHODS = ("ap", "key-neurons")
ATTRIBUTION_METHODS = {"attribution-neurons": "neurons", "attribution-heads": "heads"}
STEERING_ONLY = ("diffmean-clas",)  # a steering recipe: its switch-off would be DiffMean's


@dataclass
class BenchmarkSettings:
    """Budgets and choices of one benchmark (all go in the result file)."""

    languages: list[str] = field(default_factory=lambda: ["en", "fr", "ru", "zh"])
    source: str = "en"
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    # identification parameters per method (the rest are each method's reference defaults)
    method_params: dict[str, dict[str, Any]] = field(default_factory=lambda: {"entropy-lambda": {"lam": "auto"}})
    identify_corpus: str = "ntrex:identify"
    heldout_corpus: str = "ntrex:dev"
    sentences: int = 100  # identification sentences per language
    attribution_sentences: int = 24  # of those, the first N per language for `attribute` (a backward pass each)
    eval_sentences: int = 8  # held-out sentences per language for perplexity
    prompts: int = 20  # steering test prompts per target
    dev_prompts: int = 10  # steering dev prompts (the sweep), evenly spaced among the first dev + test prompts
    prompts_spec: str = "default"
    strengths: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # neuron replace strengths
    head_strengths: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0])  # head amplification factors
    direction_strengths: list[float] = field(default_factory=lambda: list(DIRECTION_STRENGTHS))
    direction_layers: list[int] | None = None  # None: layers at 1/4, 1/2 and 3/4 of the depth
    clas_strengths: list[float] = field(default_factory=lambda: list(CLAS_STRENGTHS))  # absolute β
    clas_ranges: list[list[int]] | None = None  # [first, last] layer ranges; None: `default_ranges`
    translate_sentences: int = 6
    shots: int = 3
    max_new_tokens: int = 20
    translate_max_new_tokens: int = 48
    batch_size: int = 32
    max_length: int = 256
    bootstrap: int = 1000
    seed: int = 0

    def validate(self) -> None:
        if self.source not in self.languages:
            raise LangneuronsError(f"the source language {self.source!r} must be one of --languages")
        if len(self.languages) < 2 or len(set(self.languages)) != len(self.languages):
            raise LangneuronsError("the benchmark needs at least two distinct languages")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise LangneuronsError(f"unknown method(s) {','.join(unknown)}; choose from {','.join(METHODS)}")
        for name in ("sentences", "eval_sentences", "translate_sentences", "max_new_tokens", "batch_size",
                     "bootstrap", "translate_max_new_tokens", "max_length", "prompts", "dev_prompts",
                     "attribution_sentences"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise LangneuronsError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.attribution_sentences > self.sentences:
            raise LangneuronsError(f"--attribution-sentences {self.attribution_sentences} is more than --sentences "
                                   f"{self.sentences} (it uses the first of the identification sentences)")  # fmt: skip
        if not all((self.strengths, self.direction_strengths, self.head_strengths, self.clas_strengths)):
            raise LangneuronsError("--strengths needs at least one value")
        for first, last in self.clas_ranges or []:
            if not 0 <= first <= last:
                raise LangneuronsError(f"a CLaS layer range must be first-last with first <= last, got {first}-{last}")

    @property
    def targets(self) -> list[str]:
        return [lang for lang in self.languages if lang != self.source]

    @property
    def switched_off(self) -> list[str]:
        """The methods the deactivation tests (perplexity, translation) run: all but steering recipes."""
        return [m for m in self.methods if m not in STEERING_ONLY]


FULL = dict(sentences=1000, attribution_sentences=200, eval_sentences=100, prompts=40, dev_prompts=20,
            translate_sentences=50, max_new_tokens=32, strengths=[0.5, 1.0, 1.5, 2.0, 3.0],
            direction_strengths=[0.025, 0.05, 0.1, 0.25, 0.5], head_strengths=[1.5, 2.0, 4.0, 8.0, 16.0],
            shots=5)  # fmt: skip


# Settings that decide the identification data (the "data" stage); every other stage depends on all.
DATA_FIELDS = ("languages", "identify_corpus", "sentences", "attribution_sentences", "max_length", "batch_size",
               "methods")


class _Stages:
    """Stage results saved as JSON in the output folder, reused when their settings fingerprint matches."""

    def __init__(self, out: Path, settings: BenchmarkSettings, model: dict[str, Any]):
        self.out = out
        full = asdict(settings)
        data = {k: full[k] for k in DATA_FIELDS}
        self.fingerprints = {"data": _hash([data, model]), "all": _hash([full, model])}

    def _fingerprint(self, name: str) -> str:
        return self.fingerprints["data" if name == "data" else "all"]

    def get(self, name: str) -> Any | None:
        path = self.out / f"stage-{name}.json"
        if not path.exists():
            return None
        data = read_json(path)
        ok = isinstance(data, dict) and data.get("fingerprint") == self._fingerprint(name)
        return data.get("result") if ok else None

    def run(self, name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The stage's saved result, or ``make()``'s (with its wall time, ``seconds``), saved."""
        saved = self.get(name)
        if saved is not None:
            return saved
        started = time.time()
        result = make()
        result["seconds"] = round(time.time() - started, 3)
        return self.put(name, result)

    def put(self, name: str, result: Any) -> Any:
        write_json(self.out / f"stage-{name}.json", {"fingerprint": self._fingerprint(name), "result": result})
        return result


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def benchmark(
    loaded: LoadedModel, out: str | Path, settings: BenchmarkSettings | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Run every method through every test; write ``out``/benchmark.json and return it."""
    s = settings or BenchmarkSettings()
    s.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stages = _Stages(out, s, loaded.describe())
    components, ident = _identify_all(loaded, out, s, stages, progress)
    ppl = stages.run("ppl", lambda: _ppl_stage(loaded, components, s, progress))
    steer = stages.run("steer", lambda: _steer_stage(loaded, components, out, s, progress))
    trans = stages.run("translate", lambda: _translate_stage(loaded, components, s, progress))
    rows = {m: _summary(m, ident[m], ppl, steer, trans, s) for m in s.methods}
    result = {
        "format": BENCHMARK_FORMAT,
        "languages": s.languages,
        "source": s.source,
        "methods": s.methods,
        "summary": rows,
        **uncertainty(ppl, steer, trans, s),
        "identification": ident,
        "perplexity": ppl,
        "steering": steer,
        "translation": trans,
        "provenance": {
            **loaded.describe(),
            "settings": asdict(s),
            "identification_text": f"{s.identify_corpus}, first {s.sentences} sentences per language",
            "heldout_text": s.heldout_corpus,
            "controls": "neurons and heads: seeded random units, same count per layer, disjoint from every "
            "language's units; diffmean (both recipes): a seeded random direction of the same norm at the same "
            "layer(s)",
            "wall_seconds": round(time.time() - started, 3),
            "created": now(),
            **software(),
        },
    }
    write_json(out / "benchmark.json", result)
    return result


# ---- identification ---------------------------------------------------------------------------------
def _identify_all(loaded, out: Path, s: BenchmarkSettings, stages: _Stages, progress: bool):
    """Each method's component (NeuronSet or DirectionSet) and its size and timings."""
    corpus = load_corpus(s.identify_corpus, s.languages, s.sentences)
    timing = stages.get("data") or {}

    def data_pass(key: str, marker: Path, load: Callable[[], Any], make: Callable[[], Any]) -> Any:
        """A shared data pass: reused when it finished before (its time is in the data stage), else run and timed."""
        if key in timing and marker.exists():
            return load()
        started = time.time()
        result = make()
        timing[key] = round(time.time() - started, 3)
        stages.put("data", timing)
        return result

    run_dir, pooled_dir, attr_dir = out / "run", out / "pooled", out / "attribution"
    stats = data_pass("record_seconds", run_dir / "manifest.json", lambda: load_stats(run_dir),
                      lambda: record(loaded, corpus, run_dir, RecordSettings(max_length=s.max_length,
                                                                             batch_size=s.batch_size),
                                     overwrite=(run_dir / "manifest.json").exists(), progress=progress))  # fmt: skip
    pooled = None
    if any(m in POOLED_METHODS for m in s.methods):
        pooled = data_pass("pooled_seconds", pooled_dir / "pooled.json", lambda: load_pooled(pooled_dir),
                           lambda: record_pooled(loaded, corpus, pooled_dir, batch_size=s.batch_size,
                                                 max_length=s.max_length, progress=progress,
                                                 overwrite=True))  # fmt: skip
    attribution = None
    units = tuple(sorted({ATTRIBUTION_METHODS[m] for m in s.methods if m in ATTRIBUTION_METHODS}))
    if units:
        attribution = data_pass(
            "attribution_seconds", attr_dir / "attribution.json", lambda: load_attribution(attr_dir),
            lambda: attribute(loaded, load_corpus(s.identify_corpus, s.languages, s.attribution_sentences), attr_dir,
                              AttributionSettings(units=units, batch_size=8, max_length=s.max_length, seed=s.seed),
                              overwrite=True, progress=progress),
        )  # fmt: skip
    components: dict[str, NeuronSet | DirectionSet] = {}
    ident: dict[str, Any] = {}
    for method in s.methods:
        t = time.time()
        if method in DIRECTION_METHODS:
            comp: NeuronSet | DirectionSet = diffmean(stats)
            comp.save(out / "diffmean.json")
            data_key, data = "record_seconds", "recorded statistics (residual sums)"
        elif method in ATTRIBUTION_METHODS:
            comp = identify(attribution, "attribution", unit=ATTRIBUTION_METHODS[method],
                            **s.method_params.get(method, {}))  # fmt: skip
            comp.save(out / f"{method}.json")
            data_key, data = "attribution_seconds", f"attribution run ({s.attribution_sentences} sentences/language)"
        else:
            params = dict(s.method_params.get(method, {}))
            if method == "key-neurons" and "threshold" not in params:
                params["threshold"] = key_threshold(len(s.languages))
            comp = identify(pooled if method in POOLED_METHODS else stats, method, **params)
            comp.save(out / f"{method}.json")
            pooled_data = method in POOLED_METHODS
            data_key = "pooled_seconds" if pooled_data else "record_seconds"
            data = "pooled sentence vectors" if pooled_data else "recorded statistics"
        seconds = time.time() - t
        components[method] = comp
        ident[method] = {
            "identify_seconds": round(seconds, 3),
            "data_seconds": timing[data_key],
            "data": data,
            "size": _size(comp, s.languages, method),
            "file": "diffmean.json" if method in DIRECTION_METHODS else f"{method}.json",
            "params": {k: v for k, v in comp.params.items() if isinstance(v, (int, float, str, bool))},
        }
    return components, ident


def key_threshold(k: int) -> float:
    """Zeng et al.'s z > 2, unless it is unreachable: with K languages the largest z-score is sqrt(K − 1),
    so below 6 languages the benchmark uses 0.85 · sqrt(K − 1) (a named deviation, recorded in the file)."""
    return 2.0 if k >= 6 else round(0.85 * math.sqrt(k - 1), 4)


def _size(comp: NeuronSet | DirectionSet, langs: list[str], method: str) -> dict[str, Any]:
    if isinstance(comp, DirectionSet):
        note = ("steering adds one unit direction (target − source) after every layer of the chosen range"
                if method == "diffmean-clas"
                else "deactivation projects out one direction per layer; steering adds one at one layer")  # fmt: skip
        return {"unit": "residual directions", "per_language": dict.fromkeys(langs, comp.num_layers), "note": note}
    unit = "heads" if comp.site == HEADS else "neurons"
    return {"unit": unit, "per_language": {lang: comp.count(lang) for lang in langs}}


def _off(comp, lang: str, s: BenchmarkSettings, control: bool) -> list:
    """Switch ``lang``'s component off (or its matched random control)."""
    if isinstance(comp, DirectionSet):
        iv = ablate_direction(comp, lang)
        return [random_direction_control(iv, derive_seed(s.seed, comp.index(lang)))] if control else [iv]
    mask = matched_control(comp, lang, s.seed) if control else comp.mask(lang)
    return [deactivate(mask, site=comp.site or "act", label=lang)]


# ---- deactivation: perplexity -----------------------------------------------------------------------
def _ppl_stage(loaded, components, s: BenchmarkSettings, progress: bool) -> dict[str, Any]:
    """Per condition and language: the perplexity, and each sentence's summed NLL (for the bootstrap)."""
    from langneurons.progress import progress_bar

    texts = load_corpus(s.heldout_corpus, s.languages, s.eval_sentences)
    conds = [("none", None, None, False)] + [
        (f"{m}/{kind}:{lang}", m, lang, kind == "random")
        for m in s.switched_off
        for lang in s.languages
        for kind in ("off", "random")
    ]
    ppl: dict[str, dict[str, float]] = {}
    nll: dict[str, dict[str, list[float]]] = {}
    tokens: dict[str, list[int]] = {}
    bar = progress_bar(progress, "perplexities")
    # a random control is only compared on its own language: the other languages are not evaluated
    evals = {name: [lang] if control else s.languages for name, _, lang, control in conds}
    with bar:
        task = bar.add_task("perplexity", total=sum(len(v) for v in evals.values()))
        for name, method, lang, control in conds:
            ivs = [] if method is None else _off(components[method], lang, s, control)
            ppl[name], nll[name] = {}, {}
            for ev in evals[name]:
                bar.update(task, description=f"ppl {name} on {ev}")
                with intervene(loaded, ivs):
                    per, count = sentence_nll(loaded, texts.texts(ev), s.batch_size, s.max_length)
                ppl[name][ev] = math.exp(float(per.sum()) / max(int(count.sum()), 1))
                nll[name][ev] = [float(x) for x in per]
                tokens.setdefault(ev, [int(x) for x in count])
                bar.advance(task)
    return {"ppl": ppl, "sentence_nll": nll, "sentence_tokens": tokens, "sentences": s.eval_sentences,
            "texts_sha256": texts.sha256()}  # fmt: skip


# ---- steering -------------------------------------------------------------------------------------------
def _steer_settings(s: BenchmarkSettings, strengths: list[float], controls: bool, mode: str = "replace"):
    return SteerSettings(mode=mode, strengths=strengths, max_new_tokens=s.max_new_tokens, seed=s.seed,
                         batch_size=s.batch_size, controls=controls)  # fmt: skip


def _direction_layers(s: BenchmarkSettings, num_layers: int) -> list[int]:
    return default_layers(num_layers) if s.direction_layers is None else list(s.direction_layers)


def _clas_ranges(s: BenchmarkSettings, num_layers: int) -> list[tuple[int, int]]:
    if s.clas_ranges is None:
        return [tuple(r) for r in default_ranges(num_layers)]  # type: ignore[misc]
    return [(int(a), int(b)) for a, b in s.clas_ranges]


def _grid(method: str, comp, s: BenchmarkSettings) -> dict[str, tuple[float, Any]]:
    """Condition key → (strength, where) of each setting the dev sweep tries."""
    if method == "diffmean":
        return {direction_key(a, layer): (a, layer) for layer in _direction_layers(s, comp.num_layers)
                for a in s.direction_strengths}  # fmt: skip
    if method == "diffmean-clas":
        return {clas_key(b, first, last): (b, (first, last)) for first, last in _clas_ranges(s, comp.num_layers)
                for b in s.clas_strengths}  # fmt: skip
    strengths = s.head_strengths if method in HEAD_METHODS else s.strengths
    return {f"{a:g}": (a, None) for a in strengths}


def _builder(method: str, comp, stats, s: BenchmarkSettings, grid):
    if method == "diffmean":
        return direction_builder(comp, _steer_settings(s, [1.0], True), grid)
    if method == "diffmean-clas":
        return clas_builder(comp, s.source, _steer_settings(s, [1.0], True), grid)
    site = comp.site or "act"
    mode = "amplify" if method in HEAD_METHODS else "replace"
    data = None if method in HEAD_METHODS else stats

    def build(target: str, key: str, control: bool) -> list:
        st = _steer_settings(s, [grid[key][0]], True, mode)
        return steering_interventions(comp, data, s.source, target, grid[key][0], st, site, control=control)

    return build


def combined(success: float | None, fluent: float | None) -> float | None:
    """Harmonic mean of fluency-gated success and fluent share (0 when either is 0)."""
    if success is None or fluent is None:
        return None
    return 0.0 if success + fluent == 0 else 2 * success * fluent / (success + fluent)


def _score(entry: dict[str, Any], key: str, kind: str = "steered") -> dict[str, float | None]:
    row = entry["strengths"][key][kind]
    return {"success": row["success"], "fluent": row["fluent_rate"], "language_rate": row["language_rate"],
            "combined": combined(row["success"], row["fluent_rate"])}  # fmt: skip


def _steer_stage(loaded, components, out: Path, s: BenchmarkSettings, progress: bool) -> dict[str, Any]:
    dev, test = split_prompts(load_prompts(s.prompts_spec, s.source), s.dev_prompts, s.prompts)
    stats = load_stats(out / "run")
    result: dict[str, Any] = {"dev_prompts": dev, "test_prompts": test, "methods": {}}
    base_dev = base_test = None
    for method in s.methods:
        comp = components[method]
        grid = _grid(method, comp, s)
        build = _builder(method, comp, stats, s, grid)
        sweep, base_dev = run_steering(loaded, dev, s.targets, list(grid), build, _steer_settings(s, [], False),
                                       baseline=base_dev, progress=progress)  # fmt: skip
        mean_combined = {
            key: statistics.fmean(_score(sweep[t], key)["combined"] or 0.0 for t in s.targets) for key in grid
        }
        best = max(grid, key=lambda k: (mean_combined[k], -list(grid).index(k)))  # ties: the first (weakest)
        final, base_test = run_steering(loaded, test, s.targets, [best], build, _steer_settings(s, [], True),
                                        baseline=base_test, progress=progress)  # fmt: skip
        where = grid[best][1]
        result["methods"][method] = {
            "dev_sweep": {k: {t: _score(sweep[t], k) for t in s.targets} for k in grid},
            "dev_mean_combined": mean_combined,
            "best": best,
            "best_layer": where if isinstance(where, int) else None,
            "best_range": list(where) if isinstance(where, tuple) else None,
            "test": {
                t: {
                    "steered": _score(final[t], best),
                    "random": _score(final[t], best, "random"),
                    "baseline": final[t]["baseline"]["success"],
                }
                for t in s.targets
            },  # fmt: skip
            "test_results": final,
        }
    return result


# ---- translation ----------------------------------------------------------------------------------------
def _translate_stage(loaded, components, s: BenchmarkSettings, progress: bool) -> dict[str, Any]:
    texts = load_corpus(s.heldout_corpus, s.languages)
    conditions: dict[str, list] = {}
    only: dict[str, list[str]] = {}
    for method in s.switched_off:
        for lang in s.targets:
            conditions[f"{method}/off:{lang}"] = _off(components[method], lang, s, False)
            conditions[f"{method}/random:{lang}"] = _off(components[method], lang, s, True)
            only[f"{method}/random:{lang}"] = [f"{s.source}-{lang}"]
    ts = TranslateSettings(sentences=s.translate_sentences, shots=s.shots, max_new_tokens=s.translate_max_new_tokens,
                           batch_size=s.batch_size, bootstrap=s.bootstrap, seed=s.seed)  # fmt: skip
    pairs = [(s.source, t) for t in s.targets]
    return translate(loaded, texts, pairs, conditions, ts, only=only, progress=progress)


# ---- summary ----------------------------------------------------------------------------------------------
def _summary(method: str, ident: dict, ppl: dict, steer: dict, trans: dict, s: BenchmarkSettings):
    """One table row: the medians over languages of every test, each beside its control.

    Per language, the others are summarised by ``langneurons.summaries`` (median of the PPL ratios, geometric
    mean beside it; median of the chrF drops, mean beside it), the one definition ``ppl``, ``translate`` and the
    report use. A steering-only recipe has no deactivation cells (None)."""
    row: dict[str, Any] = dict.fromkeys(("ppl_own", "ppl_others", "ppl_others_geomean", "ppl_selectivity",
                                          "ppl_random_own", "ppl_vs_random", "chrf_drop_own", "chrf_drop_others",
                                          "chrf_drop_random_own"))  # fmt: skip
    if method in s.switched_off:
        p = ppl["ppl"]
        base = p["none"]
        own, others, others_geo, select, ctrl, vs_ctrl = [], [], [], [], [], []
        for lang in s.languages:
            off, rnd = p[f"{method}/off:{lang}"], p[f"{method}/random:{lang}"]
            factor_own = off[lang] / base[lang]
            ratios = [off[o] / base[o] for o in s.languages if o != lang]
            rest = summarise_ratios(ratios)
            factor_ctrl = rnd[lang] / base[lang]
            own.append(factor_own - 1)
            others.append(None if rest["median"] is None else rest["median"] - 1)
            others_geo.append(None if rest["geomean"] is None else rest["geomean"] - 1)
            select.append(selectivity(factor_own, ratios))
            ctrl.append(factor_ctrl - 1)
            vs_ctrl.append(factor_own / factor_ctrl)
        sc = trans["scores"]
        t_own, t_others, t_ctrl = [], [], []
        for lang in s.targets:
            cells = sc[f"{method}/off:{lang}"]
            t_own.append(cells[f"{s.source}-{lang}"]["drop"])
            drops = [v["drop"] for pair, v in cells.items() if pair != f"{s.source}-{lang}"]
            t_others.append(summarise_differences(drops)["median"])
            t_ctrl.append(sc[f"{method}/random:{lang}"][f"{s.source}-{lang}"]["drop"])
        row |= {"ppl_own": median(own), "ppl_others": median(others), "ppl_others_geomean": median(others_geo),
                "ppl_selectivity": median(select), "ppl_random_own": median(ctrl), "ppl_vs_random": median(vs_ctrl),
                "chrf_drop_own": median(t_own), "chrf_drop_others": median(t_others),
                "chrf_drop_random_own": median(t_ctrl)}  # fmt: skip
    st = steer["methods"][method]["test"]
    size = ident["size"]["per_language"]
    hits, n = steer_counts(steer["methods"][method], "steered")
    rhits, rn = steer_counts(steer["methods"][method], "random")
    return {
        "units_per_language": median(list(size.values())),
        "unit": ident["size"]["unit"],
        "identify_seconds": ident["identify_seconds"],
        "data_seconds": ident["data_seconds"],
        **row,
        "steer_setting": steer["methods"][method]["best"],
        "steer_success": median([st[t]["steered"]["success"] for t in s.targets]),
        "steer_success_pooled": hits / n if n else None,
        "steer_successes": [hits, n],
        "steer_fluent": median([st[t]["steered"]["fluent"] for t in s.targets]),
        "steer_combined": median([st[t]["steered"]["combined"] for t in s.targets]),
        "steer_language_rate": median([st[t]["steered"]["language_rate"] for t in s.targets]),
        "steer_random_success": median([st[t]["random"]["success"] for t in s.targets]),
        "steer_random_success_pooled": rhits / rn if rn else None,
        "steer_random_successes": [rhits, rn],
        "steer_random_combined": median([st[t]["random"]["combined"] for t in s.targets]),
    }


def steer_counts(entry: dict[str, Any], kind: str) -> tuple[int, int]:
    """Fluency-gated successes and generations of ``kind`` (steered | random) over every target's test prompts."""
    outcomes = [_successes(entry, target, kind) for target in entry["test_results"]]
    return int(sum(o.sum() for o in outcomes)), int(sum(o.size for o in outcomes))


# ---- intervals and paired tests -----------------------------------------------------------------------
def _successes(entry: dict[str, Any], target: str, kind: str) -> np.ndarray:
    row = entry["test_results"][target]["strengths"][entry["best"]][kind]
    label = to_label(target)
    return np.array([float(bool(g["fluent"]) and g["lang"] == label) for g in row["generations"]])


def uncertainty(ppl: dict, steer: dict, trans: dict, s: BenchmarkSettings) -> dict[str, Any]:
    """95 % intervals of every cell and paired bootstrap tests between methods (`evaluation/paired.py`).

    Resampled items: held-out sentences within each language (perplexity), test lines within each pair
    (translation), test prompts within each target (steering); every method is evaluated on the same
    resample. Steering rates also get Wilson intervals over the pooled generations (the table's)."""
    langs, targets, off = s.languages, s.targets, s.switched_off
    nll = {c: {lang: np.array(v) for lang, v in row.items()} for c, row in ppl["sentence_nll"].items()}
    tok = {lang: np.array(v, dtype=float) for lang, v in ppl["sentence_tokens"].items()}

    def perp(cond: str, lang: str, idx: np.ndarray) -> float:
        return math.exp(nll[cond][lang][idx].sum() / max(tok[lang][idx].sum(), 1.0))

    def ppl_stat(method: str, which: str):
        def stat(draw) -> float | None:
            idx = dict(zip(langs, draw, strict=True))
            base = {lang: perp("none", lang, idx[lang]) for lang in langs}
            values = []
            for lang in langs:
                cond = f"{method}/{'random' if which == 'random' else 'off'}:{lang}"
                own = perp(cond, lang, idx[lang]) / base[lang]
                if which in ("own", "random"):
                    values.append(own - 1)
                    continue
                ratios = [perp(cond, o, idx[o]) / base[o] for o in langs if o != lang]
                values.append(median(ratios) - 1 if which == "others" else selectivity(own, ratios))
            return median(values)

        return stat

    pairs = [f"{s.source}-{t}" for t in targets]
    hyps = trans["hypotheses"]
    chrf = {c: {p: chrf_stats(h, trans["references"][p]) for p, h in row.items()} for c, row in hyps.items()}

    def drop(cond: str, pair: str, idx: np.ndarray) -> float:
        return chrf_from_stats(chrf["none"][pair][idx]) - chrf_from_stats(chrf[cond][pair][idx])

    def chrf_stat(method: str, which: str):
        def stat(draw) -> float | None:
            idx = dict(zip(pairs, draw, strict=True))
            values = []
            for t in targets:
                own_pair = f"{s.source}-{t}"
                if which == "random":
                    values.append(drop(f"{method}/random:{t}", own_pair, idx[own_pair]))
                elif which == "own":
                    values.append(drop(f"{method}/off:{t}", own_pair, idx[own_pair]))
                else:
                    values.append(median([drop(f"{method}/off:{t}", p, idx[p]) for p in pairs if p != own_pair]))
            return median(values)

        return stat

    outcomes = {m: {k: [_successes(steer["methods"][m], t, k) for t in targets] for k in ("steered", "random")}
                for m in s.methods}  # fmt: skip

    def steer_stat(method: str, kind: str):
        def stat(draw) -> float | None:
            picked = np.concatenate([o[i] for o, i in zip(outcomes[method][kind], draw, strict=True)])
            return float(picked.mean()) if picked.size else None

        return stat

    n_sent = [len(tok[lang]) for lang in langs]
    n_lines = [len(hyps["none"][p]) for p in pairs]
    n_prompts = [len(o) for o in outcomes[s.methods[0]]["steered"]]
    measures = [Measure(key, n_sent, {m: ppl_stat(m, w) for m in off}) for key, w in (
        ("ppl_own", "own"), ("ppl_others", "others"), ("ppl_selectivity", "selectivity"), ("ppl_random_own", "random"))]
    measures += [Measure(key, n_lines, {m: chrf_stat(m, w) for m in off}) for key, w in (
        ("chrf_drop_own", "own"), ("chrf_drop_others", "others"), ("chrf_drop_random_own", "random"))]
    measures += [Measure("steer_success_pooled", n_prompts, {m: steer_stat(m, "steered") for m in s.methods}),
                 Measure("steer_random_success_pooled", n_prompts, {m: steer_stat(m, "random") for m in s.methods})]
    tests = {m.name: paired_bootstrap(m, s.bootstrap, s.seed) for m in measures if m.statistics}
    intervals: dict[str, dict[str, Any]] = {m: {} for m in s.methods}
    for name, test in tests.items():
        for method, cell in test["methods"].items():
            intervals[method][name] = cell["ci"]
    for method in s.methods:
        for key, kind in (("steer_success_pooled", "steered"), ("steer_random_success_pooled", "random")):
            hits = int(sum(o.sum() for o in outcomes[method][kind]))
            n = int(sum(o.size for o in outcomes[method][kind]))
            intervals[method][f"{key}_wilson"] = list(wilson(hits, n) or (None, None))
    headline = ("ppl_selectivity", "steer_success_pooled", "chrf_drop_own")
    return {
        "intervals": intervals,
        "paired": {name: tests[name] for name in headline if name in tests},
        "rule": "95 % percentile intervals of a bootstrap over items (sentences per language, lines per pair, "
        "prompts per target), every method on the same resample; a difference is significant when its "
        "interval excludes 0 (two-sided); steering rates also get Wilson intervals over pooled generations",
    }
