"""The Python API: the pipeline's verbs as plain functions (``import langneurons as ln; ln.record(...)``).

Each verb is a thin layer over the package's own functions, with notebook-friendly defaults: language
lists may be given as ``"en,fr"``, paths or loaded objects are both accepted, models may be loaded by
you (``ln.load_model(hf_model, tokenizer)``), results print as one short line and turn into tidy
``pandas`` frames (``.to_pandas()``), and they are still the dicts the command line writes as JSON.
Errors name the function's arguments (``stats=``), not command-line flags.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langneurons.data import Corpus, parse_languages
from langneurons.data import load_corpus as corpus_from_spec
from langneurons.errors import LangneuronsError
from langneurons.evaluation.ppl import PPLSettings
from langneurons.evaluation.steer import SteerSettings
from langneurons.formats.atomic import read_json, write_json
from langneurons.formats.attribution import Attribution, is_attribution_run
from langneurons.formats.attribution import load_attribution as load_attribution_run
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.pooled import Pooled, load_pooled
from langneurons.formats.stats import Stats, load_stats
from langneurons.intervention import activate, deactivate, intervene
from langneurons.models import loading
from langneurons.models.loading import LoadedModel, from_transformers
from langneurons.recording import RecordSettings

__all__ = [
    "Result",
    "activate",
    "answer",
    "attribute",
    "deactivate",
    "explain",
    "identify",
    "intervene",
    "lens",
    "lens_train",
    "load_corpus",
    "load_attribution",
    "load_model",
    "load_neurons",
    "load_pooled",
    "load_result",
    "load_stats",
    "ppl",
    "ppl_matrix",
    "record",
    "report",
    "similarity",
    "steer",
]

F = TypeVar("F", bound=Callable[..., Any])
# command-line flags whose API argument is spelled differently
_FLAG_ARGUMENTS = {"from": "source", "out": "out", "lambda": "lam", "no-controls": "controls=0"}


def _setting(key: str) -> tuple[str | None, float | str]:
    """A steer result's condition key as (mode, strength): ``"1.5"`` → (None, 1.5), a calibrated run's ``"add 2"`` →
    ("add", 2.0); any other key (a direction sweep's ``"0.1 @ layer 4"``) stays the text it is."""
    mode, _, value = key.rpartition(" ")
    try:
        return (mode or None), float(value)
    except ValueError:
        return None, key


def api_message(message: str) -> str:
    """A command-line error message with its flags spelled as this module's arguments
    (``--batch-size`` → ``batch_size=``, ``--overwrite`` → ``overwrite=True``)."""

    def argument(match: re.Match) -> str:
        flag = match.group(1)
        name = _FLAG_ARGUMENTS.get(flag, flag.replace("-", "_"))
        if name in ("overwrite", "any_site", "trust_remote_code"):
            return f"{name}=True"
        return name if "=" in name else f"{name}="

    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", argument, message)


def _api_errors(fn: F) -> F:
    """Re-raise the package's one-line errors with API argument names (the signature is kept)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LangneuronsError as exc:
            raise LangneuronsError(api_message(str(exc))) from None

    return wrapper  # type: ignore[return-value]


class Result(dict):
    """A result (``ppl``, ``steer`` or ``similarity``): the dict the CLI writes, with a one-line repr and
    a tidy ``pandas`` view."""

    def __repr__(self) -> str:
        return f"Result({describe_result(self)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython
        printer.text(repr(self))

    @property
    def kind(self) -> str:
        """``ppl``, ``steer``, ``similarity``, … (from the file's format)."""
        return str(self.get("format", "")).removeprefix("langneurons-").split("/")[0]

    def deactivated(self, lang: str) -> dict[str, float]:
        """A ``ppl`` result's row with ``lang``'s neurons switched off: evaluated language → perplexity."""
        return self._ppl_row(f"neurons:{lang}", lang)

    def control(self, lang: str) -> dict[str, float]:
        """A ``ppl`` result's row with ``lang``'s matched random control switched off."""
        return self._ppl_row(f"random:{lang}", lang)

    def _ppl_row(self, row: str, lang: str) -> dict[str, float]:
        if self.kind != "ppl":
            raise LangneuronsError(f"a {self.kind or 'non-ppl'} result has no perplexity rows")
        if row not in self["ppl"]:
            have = sorted({r.split(":", 1)[1] for r in self["ppl"] if ":" in r})
            raise LangneuronsError(f"no row for language {lang!r} (have: {', '.join(have)})")
        return dict(self["ppl"][row])

    def to_pandas(self) -> Any:
        """A tidy frame: ppl → one row per (intervention, language); steer → per (target, strength,
        condition); similarity → per layer."""
        import pandas as pd

        if self.kind == "ppl":
            rows = []
            for name, per_lang in self["ppl"].items():
                kind, _, of = name.partition(":")
                for lang, value in per_lang.items():
                    rows.append({"intervention": kind, "of": of or None, "language": lang, "ppl": value,
                                 "delta_relative": self["delta_relative"][name][lang]})  # fmt: skip
            return pd.DataFrame(rows)
        if self.kind == "steer":
            rows = []
            for target, entry in self["results"].items():
                for strength, row in entry["strengths"].items():
                    for condition, judged in row.items():
                        if isinstance(judged, dict) and "success" in judged and not condition.startswith("null#"):
                            keep = ("success", "language_rate", "fluent_rate", "distinct_2", "n")
                            mode, value = _setting(strength)
                            rows.append({"target": target, **({"mode": mode} if mode else {}), "strength": value,
                                         "condition": condition, **{k: judged.get(k) for k in keep}})  # fmt: skip
            return pd.DataFrame(rows)
        if self.kind == "similarity":
            per_layer = self["per_layer"]
            return pd.DataFrame({"layer": range(len(next(iter(per_layer.values())))), **per_layer})
        raise LangneuronsError(f"no tidy view for a {self.kind or 'unknown'} result")

    def save(self, path: str | Path) -> Path:
        """Write the result as the CLI does (JSON, atomically; NaN as null)."""
        from langneurons.analysis.similarity import save_similarity

        path = Path(path)
        if self.kind == "similarity":
            save_similarity(path, dict(self))
        else:
            write_json(path, dict(self))
        return path


def describe_result(data: dict[str, Any]) -> str:
    """One line for a ppl / steer / similarity result: what, on which languages, the headline numbers."""
    fmt = str(data.get("format", ""))
    if fmt.startswith("langneurons-ppl"):
        own = {k: v.get("self") for k, v in (data.get("summary") or {}).items()}
        shown = ", ".join(f"{k} {_pct(v)}" for k, v in list(own.items())[:8])
        return (
            f"ppl: {len(data.get('interventions', []))} interventions × {len(data.get('languages', []))} "
            f"languages; ΔPPL on own language: {shown}"
        )
    if fmt.startswith("langneurons-steer"):
        parts = []
        for target, entry in (data.get("results") or {}).items():
            for strength, row in entry.get("strengths", {}).items():
                parts.append(f"→{target} s={strength} {row['steered']['success']:.0%}")
        return f"steer from {data.get('source')}: " + ", ".join(parts[:8]) + (" …" if len(parts) > 8 else "")
    if fmt.startswith("langneurons-similarity"):
        peaks = data.get("peaks") or {}
        return (
            f"similarity: {len(data.get('languages', []))} languages, {data.get('num_layers')} layers; "
            f"peak LRDS layer {(peaks.get('lrds') or {}).get('layer')}, "
            f"peak SADS layer {(peaks.get('sads') or {}).get('layer')}"
        )
    if fmt.startswith("langneurons-lens"):
        if data.get("task") == "text":
            shares = data.get("share") or {}
            last = ", ".join(f"{lang} {per['own'][-1]:.0%}" for lang, per in list(shares.items())[:6])
            return f"lens ({data.get('lens')}) on text: own-language top-1 share at the last layer {last}"
        peaks = data.get("peaks") or {}
        shown = ", ".join(f"p_{k} {v['value']:.2f}@{v['layer']}" for k, v in peaks.items())
        words = data.get("words") or {}
        return (f"lens ({data.get('lens')}) {data.get('task')} {data.get('from')}→{data.get('to')}, "
                f"{words.get('prompts')} prompts, {data.get('num_layers')} layers; peaks {shown}")  # fmt: skip
    return f"{fmt or 'unknown format'}, {len(data)} fields"


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.0%}" if abs(value) < 10 else f"×{value + 1:.0f}"


def _languages(languages: str | Sequence[str] | None) -> list[str] | None:
    if languages is None or isinstance(languages, list):
        return languages
    if isinstance(languages, str):
        return parse_languages(languages)
    return list(languages)


def _neurons(neurons: NeuronSet | str | Path) -> tuple[NeuronSet, str | None]:
    if isinstance(neurons, NeuronSet):
        return neurons, None
    return NeuronSet.load(neurons), str(neurons)


# ---- loaders -----------------------------------------------------------------------------------------
@_api_errors
def load_model(
    model: Any = "embedded",
    tokenizer: Any = None,
    *,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> LoadedModel:
    """A model ready for recording and interventions.

    ``model`` is a spec (``"embedded"``, a hub id, a folder, a ``.gguf`` file) or a ``transformers`` model
    you already loaded (a ``...ForCausalLM``, also quantised, ``device_map``-dispatched or PEFT-wrapped),
    then with its ``tokenizer``. ``revision``/``device``/``dtype``/``device_map`` apply to specs only.
    """
    if isinstance(model, (str, Path)):
        return loading.load_model(str(model), revision=revision, device=device, dtype=dtype,
                               trust_remote_code=trust_remote_code, device_map=device_map)  # fmt: skip
    return from_transformers(model, tokenizer)


@_api_errors
def load_corpus(
    spec: str = "ntrex", languages: str | Sequence[str] | None = None, sentences: int | None = None
) -> Corpus:
    """Texts per language (``ntrex``, ``ntrex:dev``, a ``<lang>.txt`` folder, a ``.jsonl``, ``hf:NAME``)."""
    return corpus_from_spec(spec, _languages(languages), sentences)


@_api_errors
def load_neurons(path: str | Path) -> NeuronSet:
    """A neuron-set file (from ``identify``), validated."""
    return NeuronSet.load(path)


@_api_errors
def load_result(path: str | Path) -> Result:
    """A ``ppl``, ``steer`` or ``similarity`` result file, as a :class:`Result`."""
    data = read_json(Path(path))
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("langneurons-"):
        raise LangneuronsError(f"{path} is not a langneurons result file")
    return Result(data)


# ---- verbs -------------------------------------------------------------------------------------------
@_api_errors
def record(
    model: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    *,
    site: str = "act",
    batch_size: int = 8,
    max_length: int = 512,
    tokens: int | None = None,
    shards: int | None = None,
    residual: bool = True,
    count: str = "all",
    chat_template: bool = False,
    settings: RecordSettings | None = None,
    reuse: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> Stats:
    """Count how each neuron fires on each language's text: per language, layer and neuron the count of
    activation > 0, sum and sum of squares (the statistics every method works on).

    ``out=None`` records in memory; with ``out``, a finished run of the same model, corpus and settings
    there is returned as it is (``reuse``). ``settings`` (a :class:`RecordSettings`) replaces the keyword
    settings when given. ``max_length`` is capped at the model's own maximum.

    A prompt/response corpus (docs/responses.md) counts ``count``'s tokens: ``"all"``, ``"response"`` (Zhang
    et al.'s full − prefix) or ``"prompt"``; ``chat_template=True`` formats each record with the model's chat
    template first (the template's own tokens never count as prompt or response).
    """
    from langneurons.recording import record as record_run

    if chat_template:
        from langneurons.recording.spans import apply_chat_template

        corpus = apply_chat_template(corpus, model.tokenizer)
    if settings is None:
        settings = RecordSettings(site=site, batch_size=batch_size, max_length=max_length, tokens=tokens,
                                  shards=shards, residual=residual, count=count)  # fmt: skip
    settings = dataclasses.replace(settings, max_length=min(settings.max_length, model.max_length))
    return record_run(model, corpus, out, settings, overwrite=overwrite, reuse=reuse, progress=progress)


@_api_errors
def attribute(
    model: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    *,
    units: str | Sequence[str] = "neurons,heads",
    method: str = "patching",
    steps: int | None = None,
    site: str = "act",
    validate: int = 0,
    batch_size: int = 8,
    max_length: int = 512,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> Attribution:
    """Causal scores: per language, the estimated increase of its mean NLL (nats per token) when each unit
    (``neurons``, ``heads``, MoE ``experts``) is zero- or mean-ablated, by attribution patching (``method="ig"``:
    integrated gradients with ``steps``, default 4). ``validate`` N: N sampled units per type ablated exactly
    beside their estimates. Saved to ``out`` when given (resumable)."""
    from langneurons.recording.attribute import attribute as attribute_run
    from langneurons.recording.attribution import AttributionSettings

    names = [u.strip() for u in units.split(",")] if isinstance(units, str) else list(units)
    settings = AttributionSettings(
        units=tuple(u for u in names if u), method=method, steps=steps if steps is not None else
        (4 if method == "ig" else 1), site=site, batch_size=batch_size, max_length=min(max_length, model.max_length),
        validate=validate, seed=seed,
    )  # fmt: skip
    return attribute_run(model, corpus, out, settings, overwrite=overwrite, progress=progress)


@_api_errors
def load_attribution(path: str | Path) -> Attribution:
    """An `attribute` run (its folder), with ``.score(unit, lang)`` and ``.scores(unit)``."""
    return load_attribution_run(path)


@_api_errors
def answer(
    model: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    chat_template: bool = False,
    progress: bool = True,
) -> Corpus:
    """The model's own greedy answers to a corpus of prompts (``load_corpus("tasks")``, or ``.jsonl`` records
    with ``prompt``): the same corpus with each response replaced by the answer, ready for
    ``record(..., count="response")``. With ``out``, the answers are saved there as ``answers.jsonl`` (and
    ``answers.json``) and read back by a later call with the same model, prompts and settings."""
    from langneurons.recording.answers import answer as answer_prompts

    return answer_prompts(model, corpus, out, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          chat_template=chat_template, progress=progress)  # fmt: skip


@_api_errors
def identify(
    stats: Stats | Attribution | str | Path,
    method: str = "lape",
    *,
    languages: str | Sequence[str] | None = None,
    out: str | Path | None = None,
    **params: Any,
) -> NeuronSet:
    """Language neurons from statistics (a :class:`Stats` or a run folder) by ``method`` (``lape``,
    ``entropy-lambda``; ``params`` are the method's, e.g. ``top_rate=0.01``, ``lam="auto"``); saved to
    ``out`` when given. From an `attribute` run: ``method="attribution"``, ``unit="neurons"|"heads"|"experts"``
    (a head or expert set), ``ablation``, ``top_rate`` or ``per_language``."""
    from langneurons.identification import identify as identify_neurons

    if isinstance(stats, Attribution) or (not isinstance(stats, Stats) and is_attribution_run(stats)):
        attr = stats if isinstance(stats, Attribution) else load_attribution_run(stats)
        if languages is not None:
            params["languages"] = _languages(languages)
        from langneurons.identification.attribution import attribution_set

        ns = attribution_set(attr, **params)
        if attr.path:
            ns.source["run"] = str(Path(attr.path).resolve())
        if out is not None:
            ns.save(out)
        return ns
    if not isinstance(stats, Stats):
        stats = load_stats(stats)
    ns = identify_neurons(stats, method, languages=_languages(languages), **params)
    if stats.path:
        ns.source["run"] = str(Path(stats.path).resolve())
    if out is not None:
        ns.save(out)
    return ns


@_api_errors
def ppl(
    model: LoadedModel,
    neurons: NeuronSet | str | Path,
    corpus: Corpus,
    *,
    controls: int = 1,
    strength: float = 0.0,
    languages: str | Sequence[str] | None = None,
    batch_size: int = 8,
    max_length: int = 512,
    seed: int = 0,
    site: str | None = None,
    settings: PPLSettings | None = None,
    progress: bool = True,
) -> Result:
    """Perplexity of each language of ``corpus`` with each language's neurons switched off (x ← strength·x),
    beside ``controls`` matched random sets (≥ 2: p-values against that many)."""
    from langneurons.evaluation.ppl import ppl_matrix as ppl_result

    ns, path = _neurons(neurons)
    if settings is None:
        settings = PPLSettings(site=site, strength=strength, controls=int(controls), seed=seed,
                               batch_size=batch_size, max_length=min(max_length, model.max_length),
                               languages=_languages(languages))  # fmt: skip
    return Result(ppl_result(model, ns, corpus, settings, neurons_path=path, progress=progress))


ppl_matrix = ppl  # the earlier name


@_api_errors
def steer(
    model: LoadedModel,
    neurons: NeuronSet | str | Path,
    to: str | Sequence[str],
    *,
    source: str | None = "en",
    prompts: str | Sequence[str] = "default",
    stats: Stats | str | Path | None = None,
    mode: str = "replace",
    strength: float | Sequence[float] = 1.0,
    max_new_tokens: int = 32,
    controls: int = 1,
    batch_size: int = 16,
    settings: SteerSettings | None = None,
    progress: bool = True,
    calibrate: bool = False,
    dev_prompts: int = 10,
    grid: Sequence[tuple[str, float]] | None = None,
) -> Result:
    """Generate with ``source``'s neurons off and each target's on (``mode``), and judge the output
    language and fluency. Mean activations come from ``stats``, else from the run the set came from.

    ``calibrate=True`` (the command line's default without --strength/--mode): each target's (mode, strength)
    is chosen from ``grid`` (default replace × 0.5, 1, 1.5, 2 and add × 0.5, 0.75, 1, 2) on the first ``dev_prompts``
    prompts, then measured on the rest; ``mode``/``strength`` are then ignored (docs/evaluation.md)."""
    from langneurons.data.prompts import load_prompts
    from langneurons.evaluation.steer import steer as steer_run

    ns, path = _neurons(neurons)
    if stats is None and ns.source.get("run") and Path(ns.source["run"]).is_dir():
        try:
            stats = load_stats(ns.source["run"])
        except LangneuronsError:
            stats = None
    if stats is not None and not isinstance(stats, Stats):
        stats = load_stats(stats)
    prompt_list = load_prompts(prompts, source or "en") if isinstance(prompts, str) else list(prompts)
    if settings is None:
        strengths = [float(strength)] if isinstance(strength, (int, float)) else [float(x) for x in strength]
        settings = SteerSettings(mode=mode, strengths=strengths, max_new_tokens=max_new_tokens,
                                 controls=int(controls), batch_size=batch_size)  # fmt: skip
    where = dict(neurons_path=path, stats_path=stats.path if stats is not None else None,
                 prompts_spec=prompts if isinstance(prompts, str) else None, progress=progress)  # fmt: skip
    if calibrate:
        from langneurons.evaluation.calibrate import DEFAULT_GRID, steer_calibrated

        grid = [(str(m), float(st)) for m, st in (grid or DEFAULT_GRID)]
        result = steer_calibrated(model, ns, stats, prompt_list, source, _languages(to) or [], settings,
                                  dev_prompts=dev_prompts, grid=grid, **where)  # fmt: skip
    else:
        result = steer_run(model, ns, stats, prompt_list, source, _languages(to) or [], settings, **where)
    return Result(result)


@_api_errors
def similarity(
    data: Pooled | LoadedModel | str | Path,
    corpus: Corpus | None = None,
    out: str | Path | None = None,
    *,
    site: str = "act",
    batch_size: int = 8,
    max_length: int = 512,
    progress: bool = True,
) -> Result:
    """LRDS / SADS per layer: from pooled vectors (a :class:`Pooled` or a folder holding them), or pool
    ``corpus`` through a model first."""
    from langneurons.analysis.similarity import SIMILARITY_FILE
    from langneurons.analysis.similarity import similarity as similarity_result
    from langneurons.recording.pooled import record_pooled

    if isinstance(data, LoadedModel):
        if corpus is None:
            raise LangneuronsError("similarity(model, corpus): give the corpus to pool")
        pooled = record_pooled(data, corpus, out, site=site, batch_size=batch_size,
                               max_length=min(max_length, data.max_length), progress=progress)  # fmt: skip
    elif isinstance(data, Pooled):
        pooled = data
    else:
        pooled = load_pooled(data)
    assert pooled is not None  # one process: never None
    result = Result(similarity_result(pooled, progress=progress))
    if out is not None:
        result.save(Path(out) / SIMILARITY_FILE)
    return result


@_api_errors
def explain(
    run: Stats | str | Path,
    neuron: str | tuple[int, int] | NeuronSet | Path | None = None,
    *,
    language: str | Sequence[str] | None = None,
    top: int = 20,
    model: LoadedModel | str | None = None,
    examples: int = 8,
    tokens: int = 20,
    corpus: str | None = None,
    targeted: bool | None = None,
    out: str | Path | None = None,
) -> Any:
    """What a neuron does: ``explain(run, "17:1234")`` gives its :class:`~langneurons.formats.card.Card`
    (activation probability and top examples per language, promoted and suppressed tokens, language share of
    what it writes; HTML in Jupyter). ``neuron`` may also be a neuron set (or its path): then a dict with the
    cards of each ``language``'s ``top`` most active neurons, every neuron ranked, and ``writes_by_layer``.
    ``model`` defaults to the run's; examples come from ``record --examples K`` or a targeted pass."""
    from langneurons.analysis.explain import explain_neurons, explain_set, model_spec, run_corpus
    from langneurons.formats.card import parse_neuron, save_cards

    stats = run if isinstance(run, Stats) else load_stats(run)
    if stats.path is None:
        raise LangneuronsError("explain(run=...): give a run folder (its corpus is read again for the examples)")
    m = stats.manifest
    if isinstance(model, LoadedModel):
        loaded = model
    else:
        loaded = loading.load_model(str(model or model_spec(m)), revision=m.get("revision") if model is None else None)
    text = run_corpus(m, corpus)
    if isinstance(neuron, (NeuronSet, Path)) or (isinstance(neuron, str) and neuron.endswith(".json")):
        ns, _ = _neurons(neuron)
        langs = _languages(language) or list(ns.languages)
        result = explain_set(loaded, stats, ns, langs, top=top, corpus=text, k=examples, tokens=tokens,
                             targeted=targeted)  # fmt: skip
        if out is not None:
            save_cards(out, {**result, "run": stats.path})
        return result
    if neuron is None:
        raise LangneuronsError("explain(run, neuron=...): give 'LAYER:NEURON' or a neuron set")
    text_id = neuron if isinstance(neuron, str) else f"{neuron[0]}:{neuron[1]}"
    pair = parse_neuron(text_id, stats.num_layers, stats.intermediate_size)
    cards, _, _ = explain_neurons(loaded, stats, [pair], corpus=text, k=examples, tokens=tokens, targeted=targeted)
    if out is not None:
        cards[0].save(out)
    return cards[0]


@_api_errors
def lens(
    model: LoadedModel,
    task: str = "translation",
    *,
    source: str | None = None,
    to: str | None = None,
    words: str | Path | None = None,
    corpus: Corpus | None = None,
    tuned: str | Path | None = None,
    shots: int = 4,
    prompts: int | None = None,
    batch_size: int = 8,
    max_length: int = 64,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> Result:
    """Where the model thinks in which language (docs/methods.md §16). Word tasks (``translation``,
    ``repetition``, ``cloze``): per layer the lens probability of the ``to`` word, its English translation
    and the ``source`` word, with bootstrap intervals (``words``: a JSONL list, default the built-in
    nouns). ``task="text"``: per layer and language of ``corpus``, the language share of the lens's top-1
    tokens. ``tuned``: a tuned-lens file from :func:`lens_train`."""
    from langneurons.analysis.lens import WORD_TASKS, LensSettings, word_task
    from langneurons.analysis.lens_text import text_task
    from langneurons.data.words import load_words
    from langneurons.formats.tuned_lens import TunedLens

    lens_maps = TunedLens.load(tuned) if tuned is not None else None
    path = str(tuned) if tuned is not None else None
    if task in WORD_TASKS:
        settings = LensSettings(task=task, source=source, target=to, shots=shots, prompts=prompts,
                                batch_size=batch_size, bootstrap=bootstrap, seed=seed)  # fmt: skip
        result = word_task(model, load_words(words), settings, tuned=lens_maps, tuned_path=path, progress=progress)
    elif task == "text":
        if corpus is None:
            raise LangneuronsError('lens(model, "text", corpus=...): give the texts (ln.load_corpus("ntrex:dev", ...))')
        result = text_task(model, corpus, batch_size=batch_size, max_length=min(max_length, model.max_length),
                           tuned=lens_maps, tuned_path=path, progress=progress)  # fmt: skip
    else:
        raise LangneuronsError(f"unknown task {task!r}; choose one of {', '.join((*WORD_TASKS, 'text'))}")
    return Result(result)


@_api_errors
def lens_train(
    model: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    *,
    steps: int = 250,
    seed: int = 0,
    progress: bool = True,
) -> Any:
    """Fit a tuned lens (per-layer affine maps, §16) on ``corpus`` (every 5th sentence per language held out
    for the reported KL); saved to ``out`` (``.safetensors``) when given, resuming from ``out.partial``."""
    from langneurons.analysis.tuned_lens import TunedLensSettings, train_tuned_lens

    return train_tuned_lens(model, corpus, TunedLensSettings(steps=steps, seed=seed), out=out, progress=progress)


@_api_errors
def report(run_dir: str | Path, out: str | Path | None = None, format: str = "html") -> Path:
    """Write the run folder's report (default ``RUN_DIR/report.html``; ``format="png"``: a folder of
    figures) and return its path."""
    from langneurons.reporting import write_report

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / ("figures" if format == "png" else "report.html")
    write_report(run_dir, out, format)
    return out
