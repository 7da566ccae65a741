"""One benchmark that ranks every method on the same causal tests (issue 11; docs/methods.md §9, §13, §14, §16).

Methods: LAPE, entropy−λ (AutoSweep), AP (Kojima), key neurons (Zeng) and DiffMean residual directions,
each with its matched random control, on the same model, languages, identification text (NTREX lines
0–999) and held-out text (lines 1000–1996). Tests:

- deactivation: PPL of each language with each language's component off (neurons zeroed; DiffMean:
  its direction projected out at every layer); selectivity = PPL factor on the own language / median PPL
  factor on the others (``langneurons.summaries``; median over languages), beside the random control's factor
  on the own language;
- steering English → each other language: fluency-gated success, fluent share and their harmonic mean
  (CLaS-Bench's combination), at each method's best strength (DiffMean: strength and layer) from a sweep
  on dev prompts, measured on other (test) prompts, with the random control at the same setting;
- translation en → X: chrF drop with X's component off on en→X vs on en→Y, and the control's on en→X;
- size (units per language) and identification time.

Each stage's raw result is saved in the output folder as it finishes (with the settings it was made
with), so an interrupted benchmark resumes from the last finished stage.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langneurons.data import load_corpus
from langneurons.data.prompts import load_prompts
from langneurons.errors import LangneuronsError
from langneurons.evaluation.nll import text_nll
from langneurons.evaluation.steer import SteerSettings, steering_interventions
from langneurons.evaluation.steer_directions import (
    DIRECTION_STRENGTHS,
    default_layers,
    direction_builder,
    direction_key,
    run_steering,
)
from langneurons.evaluation.translate import TranslateSettings, translate
from langneurons.formats.atomic import read_json, write_json
from langneurons.formats.directions import DirectionSet
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.pooled import load_pooled
from langneurons.formats.provenance import now, software
from langneurons.formats.stats import load_stats
from langneurons.identification import identify
from langneurons.identification.diffmean import diffmean
from langneurons.intervention import (
    ablate_direction,
    deactivate,
    intervene,
    random_control,
    random_direction_control,
)
from langneurons.intervention.controls import derive_seed
from langneurons.models.loading import LoadedModel
from langneurons.recording import RecordSettings, record
from langneurons.recording.pooled import record_pooled
from langneurons.summaries import median, selectivity, summarise_differences, summarise_ratios

BENCHMARK_FORMAT = "langneurons-benchmark/1"
NEURON_METHODS = ("lape", "entropy-lambda", "ap", "key-neurons")
METHODS = (*NEURON_METHODS, "diffmean")
POOLED_METHODS = ("ap", "key-neurons")


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
    eval_sentences: int = 8  # held-out sentences per language for perplexity
    prompts: int = 8  # steering prompts: the first half is the dev split, the second the test split
    prompts_spec: str = "default"
    strengths: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # neuron replace strengths
    direction_strengths: list[float] = field(default_factory=lambda: list(DIRECTION_STRENGTHS))
    direction_layers: list[int] | None = None  # None: layers at 1/4, 1/2 and 3/4 of the depth
    translate_sentences: int = 6
    shots: int = 3
    max_new_tokens: int = 24
    translate_max_new_tokens: int = 48
    batch_size: int = 16
    max_length: int = 256
    bootstrap: int = 200
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
                     "bootstrap", "translate_max_new_tokens", "max_length"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise LangneuronsError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.prompts < 2:
            raise LangneuronsError(f"--prompts must be at least 2 (a dev and a test half), got {self.prompts}")
        if not self.strengths or not self.direction_strengths:
            raise LangneuronsError("--strengths needs at least one value")

    @property
    def targets(self) -> list[str]:
        return [lang for lang in self.languages if lang != self.source]


FULL = dict(sentences=1000, eval_sentences=100, prompts=40, translate_sentences=50, max_new_tokens=32,
            strengths=[0.5, 1.0, 1.5, 2.0, 3.0], direction_strengths=[0.25, 0.5, 1.0, 2.0, 4.0],
            bootstrap=1000, shots=5)  # fmt: skip


# Settings that decide the identification data (the "data" stage); every other stage depends on all.
DATA_FIELDS = ("languages", "identify_corpus", "sentences", "max_length", "batch_size", "methods")


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
    ppl = stages.get("ppl") or stages.put("ppl", _ppl_stage(loaded, components, s, progress))
    steer = stages.get("steer") or stages.put("steer", _steer_stage(loaded, components, out, s, progress))
    trans = stages.get("translate") or stages.put("translate", _translate_stage(loaded, components, s, progress))
    rows = {m: _summary(m, components[m], ident[m], ppl, steer, trans, s) for m in s.methods}
    result = {
        "format": BENCHMARK_FORMAT,
        "languages": s.languages,
        "source": s.source,
        "methods": s.methods,
        "summary": rows,
        "identification": ident,
        "perplexity": ppl,
        "steering": steer,
        "translation": trans,
        "provenance": {
            **loaded.describe(),
            "settings": asdict(s),
            "identification_text": f"{s.identify_corpus}, first {s.sentences} sentences per language",
            "heldout_text": s.heldout_corpus,
            "controls": "neurons: seeded random neurons, same count per layer, disjoint from every language's "
            "neurons; diffmean: a seeded random direction of the same norm at the same layer(s)",
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
    run_dir = out / "run"
    if "record_seconds" in timing and (run_dir / "manifest.json").exists():
        stats = load_stats(run_dir)
    else:
        t = time.time()
        stats = record(loaded, corpus, run_dir, RecordSettings(max_length=s.max_length, batch_size=s.batch_size),
                       overwrite=(run_dir / "manifest.json").exists(), progress=progress)  # fmt: skip
        timing["record_seconds"] = round(time.time() - t, 3)
        stages.put("data", timing)
    pooled = None
    if any(m in POOLED_METHODS for m in s.methods):
        pooled_dir = out / "pooled"
        if "pooled_seconds" in timing and (pooled_dir / "pooled.json").exists():
            pooled = load_pooled(pooled_dir)
        else:
            t = time.time()
            pooled = record_pooled(loaded, corpus, pooled_dir, batch_size=s.batch_size, max_length=s.max_length,
                                   progress=progress, overwrite=True)  # fmt: skip
            timing["pooled_seconds"] = round(time.time() - t, 3)
            stages.put("data", timing)
    components: dict[str, NeuronSet | DirectionSet] = {}
    ident: dict[str, Any] = {}
    for method in s.methods:
        t = time.time()
        if method == "diffmean":
            comp: NeuronSet | DirectionSet = diffmean(stats)
            comp.save(out / "diffmean.json")
        else:
            params = dict(s.method_params.get(method, {}))
            if method == "key-neurons" and "threshold" not in params:
                params["threshold"] = key_threshold(len(s.languages))
            comp = identify(pooled if method in POOLED_METHODS else stats, method, **params)
            comp.save(out / f"{method}.json")
        seconds = time.time() - t
        data_key = "pooled_seconds" if method in POOLED_METHODS else "record_seconds"
        components[method] = comp
        ident[method] = {
            "identify_seconds": round(seconds, 3),
            "data_seconds": timing[data_key],
            "data": "pooled sentence vectors" if method in POOLED_METHODS else "recorded statistics",
            "size": _size(comp, s.languages),
            "file": f"{method}.json",
            "params": {k: v for k, v in comp.params.items() if isinstance(v, (int, float, str, bool))},
        }
    return components, ident


def key_threshold(k: int) -> float:
    """Zeng et al.'s z > 2, unless it is unreachable: with K languages the largest z-score is sqrt(K − 1),
    so below 6 languages the benchmark uses 0.85 · sqrt(K − 1) (a named deviation, recorded in the file)."""
    return 2.0 if k >= 6 else round(0.85 * math.sqrt(k - 1), 4)


def _size(comp: NeuronSet | DirectionSet, langs: list[str]) -> dict[str, Any]:
    if isinstance(comp, DirectionSet):
        note = "deactivation projects out one direction per layer; steering adds one at one layer"
        return {"unit": "residual directions", "per_language": dict.fromkeys(langs, comp.num_layers), "note": note}
    return {"unit": "neurons", "per_language": {lang: comp.count(lang) for lang in langs}}


def _off(comp, lang: str, s: BenchmarkSettings, control: bool) -> list:
    """Switch ``lang``'s component off (or its matched random control)."""
    if isinstance(comp, DirectionSet):
        iv = ablate_direction(comp, lang)
        return [random_direction_control(iv, derive_seed(s.seed, comp.index(lang)))] if control else [iv]
    mask = random_control(comp, lang, s.seed) if control else comp.mask(lang)
    return [deactivate(mask, site=comp.site or "act", label=lang)]


# ---- deactivation: perplexity -----------------------------------------------------------------------
def _ppl_stage(loaded, components, s: BenchmarkSettings, progress: bool) -> dict[str, Any]:
    from langneurons.progress import progress_bar

    texts = load_corpus(s.heldout_corpus, s.languages, s.eval_sentences)
    conds = [("none", None, None, False)] + [
        (f"{m}/{kind}:{lang}", m, lang, kind == "random")
        for m in s.methods
        for lang in s.languages
        for kind in ("off", "random")
    ]
    ppl: dict[str, dict[str, float]] = {}
    bar = progress_bar(progress, "perplexities")
    # a random control is only compared on its own language: the other languages are not evaluated
    evals = {name: [lang] if control else s.languages for name, _, lang, control in conds}
    with bar:
        task = bar.add_task("perplexity", total=sum(len(v) for v in evals.values()))
        for name, method, lang, control in conds:
            ivs = [] if method is None else _off(components[method], lang, s, control)
            ppl[name] = {}
            for ev in evals[name]:
                bar.update(task, description=f"ppl {name} on {ev}")
                with intervene(loaded, ivs):
                    total, count = text_nll(loaded, texts.texts(ev), s.batch_size, s.max_length)
                ppl[name][ev] = math.exp(total / max(count, 1))
                bar.advance(task)
    return {"ppl": ppl, "sentences": s.eval_sentences, "texts_sha256": texts.sha256()}


# ---- steering -------------------------------------------------------------------------------------------
def _steer_settings(s: BenchmarkSettings, strengths: list[float], controls: bool) -> SteerSettings:
    return SteerSettings(mode="replace", strengths=strengths, max_new_tokens=s.max_new_tokens, seed=s.seed,
                         batch_size=s.batch_size, controls=controls)  # fmt: skip


def _direction_layers(s: BenchmarkSettings, num_layers: int) -> list[int]:
    return default_layers(num_layers) if s.direction_layers is None else list(s.direction_layers)


def _grid(method: str, comp, s: BenchmarkSettings) -> dict[str, tuple[float, int | None]]:
    if method == "diffmean":
        return {direction_key(a, layer): (a, layer) for layer in _direction_layers(s, comp.num_layers)
                for a in s.direction_strengths}  # fmt: skip
    return {f"{a:g}": (a, None) for a in s.strengths}


def _builder(method: str, comp, stats, s: BenchmarkSettings, grid):
    if method == "diffmean":
        return direction_builder(comp, _steer_settings(s, [1.0], True), grid)
    site = comp.site or "act"

    def build(target: str, key: str, control: bool) -> list:
        st = _steer_settings(s, [grid[key][0]], True)
        return steering_interventions(comp, stats, s.source, target, grid[key][0], st, site, control=control)

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
    prompts = load_prompts(s.prompts_spec, s.source)[: s.prompts]
    if len(prompts) < 2:
        raise LangneuronsError(f"need at least 2 steering prompts, have {len(prompts)}")
    half = len(prompts) // 2
    dev, test = prompts[:half], prompts[half:]
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
        result["methods"][method] = {
            "dev_sweep": {k: {t: _score(sweep[t], k) for t in s.targets} for k in grid},
            "dev_mean_combined": mean_combined,
            "best": best,
            "best_layer": grid[best][1],
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
    for method in s.methods:
        for lang in s.targets:
            conditions[f"{method}/off:{lang}"] = _off(components[method], lang, s, False)
            conditions[f"{method}/random:{lang}"] = _off(components[method], lang, s, True)
            only[f"{method}/random:{lang}"] = [f"{s.source}-{lang}"]
    ts = TranslateSettings(sentences=s.translate_sentences, shots=s.shots, max_new_tokens=s.translate_max_new_tokens,
                           batch_size=s.batch_size, bootstrap=s.bootstrap, seed=s.seed)  # fmt: skip
    pairs = [(s.source, t) for t in s.targets]
    return translate(loaded, texts, pairs, conditions, ts, only=only, progress=progress)


# ---- summary ----------------------------------------------------------------------------------------------
def _summary(method: str, comp, ident: dict, ppl: dict, steer: dict, trans: dict, s: BenchmarkSettings):
    """One table row: the medians over languages of every test, each beside its control.

    Per language, the others are summarised by ``langneurons.summaries`` (median of the PPL ratios, geometric
    mean beside it; median of the chrF drops, mean beside it), the one definition ``ppl``, ``translate`` and the
    report use."""
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
    st = steer["methods"][method]["test"]
    sc = trans["scores"]
    t_own, t_others, t_ctrl = [], [], []
    for lang in s.targets:
        row = sc[f"{method}/off:{lang}"]
        t_own.append(row[f"{s.source}-{lang}"]["drop"])
        drops = [v["drop"] for pair, v in row.items() if pair != f"{s.source}-{lang}"]
        t_others.append(summarise_differences(drops)["median"])
        t_ctrl.append(sc[f"{method}/random:{lang}"][f"{s.source}-{lang}"]["drop"])
    size = ident["size"]["per_language"]
    return {
        "units_per_language": median(list(size.values())),
        "unit": ident["size"]["unit"],
        "identify_seconds": ident["identify_seconds"],
        "data_seconds": ident["data_seconds"],
        "ppl_own": median(own),
        "ppl_others": median(others),
        "ppl_others_geomean": median(others_geo),
        "ppl_selectivity": median(select),
        "ppl_random_own": median(ctrl),
        "ppl_vs_random": median(vs_ctrl),
        "steer_setting": steer["methods"][method]["best"],
        "steer_success": median([st[t]["steered"]["success"] for t in s.targets]),
        "steer_fluent": median([st[t]["steered"]["fluent"] for t in s.targets]),
        "steer_combined": median([st[t]["steered"]["combined"] for t in s.targets]),
        "steer_language_rate": median([st[t]["steered"]["language_rate"] for t in s.targets]),
        "steer_random_success": median([st[t]["random"]["success"] for t in s.targets]),
        "steer_random_combined": median([st[t]["random"]["combined"] for t in s.targets]),
        "chrf_drop_own": median(t_own),
        "chrf_drop_others": median(t_others),
        "chrf_drop_random_own": median(t_ctrl),
    }
