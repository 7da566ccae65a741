"""The notebook API: the pipeline's verbs as plain functions (``import langneurons as ln; ln.record(...)``).

Each verb is a thin layer over the package's own functions, with notebook-friendly defaults:
language lists may be given as ``"en,fr"``, paths or loaded objects are both accepted, results
print as one short line (``repr``) and are still plain dicts that ``save`` as the CLI's JSON files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langneurons.data import Corpus, parse_languages
from langneurons.data import load_corpus as _load_corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, write_json
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import Stats, load_stats
from langneurons.intervene import activate, deactivate, intervene
from langneurons.models.loading import LoadedModel
from langneurons.models.loading import load_model as _load_model
from langneurons.record.pooled import Pooled, load_pooled

__all__ = [
    "Result",
    "activate",
    "deactivate",
    "identify",
    "intervene",
    "load_corpus",
    "load_model",
    "load_neurons",
    "load_pooled",
    "load_result",
    "load_stats",
    "ppl_matrix",
    "record",
    "report",
    "similarity",
    "steer",
]


class Result(dict):
    """A result (``ppl``, ``steer`` or ``similarity``): the dict the CLI writes, with a one-line repr."""

    def __repr__(self) -> str:
        return f"Result({describe_result(self)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython
        printer.text(repr(self))

    def save(self, path: str | Path) -> Path:
        """Write the result as the CLI does (JSON, atomically; NaN as null)."""
        from langneurons.analyze.similarity import save_similarity

        path = Path(path)
        if str(self.get("format", "")).startswith("langneurons-similarity"):
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


# ---- loaders -----------------------------------------------------------------------------------------
def load_model(
    spec: str = "embedded",
    *,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> LoadedModel:
    """A model ready for recording and interventions: ``embedded``, a hub id, a folder or a ``.gguf``."""
    return _load_model(spec, revision=revision, device=device, dtype=dtype,
                       trust_remote_code=trust_remote_code, device_map=device_map)  # fmt: skip


def load_corpus(
    spec: str = "ntrex", languages: str | Sequence[str] | None = None, sentences: int | None = None
) -> Corpus:
    """Texts per language (``ntrex``, ``ntrex:dev``, a ``<lang>.txt`` folder, a ``.jsonl``, ``hf:NAME``)."""
    return _load_corpus(spec, _languages(languages), sentences)


def load_neurons(path: str | Path) -> NeuronSet:
    """A neuron-set file (from ``identify``), validated."""
    return NeuronSet.load(path)


def load_result(path: str | Path) -> Result:
    """A ``ppl``, ``steer`` or ``similarity`` result file, as a :class:`Result`."""
    data = read_json(Path(path))
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("langneurons-"):
        raise LangneuronsError(f"{path} is not a langneurons result file")
    return Result(data)


# ---- verbs -------------------------------------------------------------------------------------------
def record(
    model: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    settings: Any = None,
    *,
    reuse: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> Stats:
    """Count how each neuron fires on each language's text (``options``: ``RecordSettings`` fields,
    e.g. ``site="down_in"``, ``batch_size=4``). ``out=None`` records in memory; with ``out``, a finished
    run of the same model, corpus and settings there is returned as it is (``reuse``)."""
    from langneurons.record import RecordSettings
    from langneurons.record import record as _record

    if settings is None:
        settings = RecordSettings(**options)
    elif options:
        raise LangneuronsError("give either settings or keyword options, not both")
    # --max-length is capped at the model's own maximum, as on the command line
    settings = dataclasses.replace(settings, max_length=min(settings.max_length, model.max_length))
    return _record(model, corpus, out, settings, overwrite=overwrite, reuse=reuse, progress=progress)


def identify(
    stats: Stats | str | Path,
    method: str = "lape",
    *,
    languages: str | Sequence[str] | None = None,
    out: str | Path | None = None,
    **params: Any,
) -> NeuronSet:
    """Language neurons from statistics (a :class:`Stats` or a run folder); ``method`` lape or
    entropy-lambda (``params``: ``top_rate``, ``lam``, …); saved to ``out`` when given."""
    from langneurons.identify import identify as _identify

    if not isinstance(stats, Stats):
        stats = load_stats(stats)
    ns = _identify(stats, method, languages=_languages(languages), **params)
    if stats.path:
        ns.source["run"] = str(Path(stats.path).resolve())
    if out is not None:
        ns.save(out)
    return ns


def ppl_matrix(
    model: LoadedModel,
    neurons: NeuronSet | str | Path,
    corpus: Corpus,
    settings: Any = None,
    *,
    progress: bool = True,
    **options: Any,
) -> Result:
    """Perplexity of each language with each language's neurons (and random controls) switched off
    (``options``: ``PPLSettings`` fields, e.g. ``controls=False``, ``batch_size=4``)."""
    from langneurons.evaluate.ppl import PPLSettings
    from langneurons.evaluate.ppl import ppl_matrix as _ppl

    path = None if isinstance(neurons, NeuronSet) else str(neurons)
    ns = neurons if isinstance(neurons, NeuronSet) else NeuronSet.load(neurons)
    settings = settings or PPLSettings(**options)
    return Result(_ppl(model, ns, corpus, settings, neurons_path=path, progress=progress))


def steer(
    model: LoadedModel,
    neurons: NeuronSet | str | Path,
    to: str | Sequence[str],
    *,
    source: str | None = "en",
    prompts: str | Sequence[str] = "default",
    stats: Stats | str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> Result:
    """Generate with ``source``'s neurons off and each target's on; judge the output language
    (``options``: ``SteerSettings`` fields). Mean activations: ``stats``, else the run the set came from."""
    from langneurons.data.prompts import load_prompts
    from langneurons.evaluate.steer import SteerSettings
    from langneurons.evaluate.steer import steer as _steer

    ns = neurons if isinstance(neurons, NeuronSet) else NeuronSet.load(neurons)
    if stats is None and ns.source.get("run") and Path(ns.source["run"]).is_dir():
        try:
            stats = load_stats(ns.source["run"])
        except LangneuronsError:
            stats = None
    if stats is not None and not isinstance(stats, Stats):
        stats = load_stats(stats)
    prompt_list = load_prompts(prompts, source or "en") if isinstance(prompts, str) else list(prompts)
    targets = _languages(to) or []
    if "strength" in options:
        options["strengths"] = [float(options.pop("strength"))]
    result = _steer(model, ns, stats, prompt_list, source, targets, SteerSettings(**options),
                    neurons_path=None if isinstance(neurons, NeuronSet) else str(neurons),
                    stats_path=stats.path if stats is not None else None,
                    prompts_spec=prompts if isinstance(prompts, str) else None, progress=progress)  # fmt: skip
    return Result(result)


def similarity(
    data: Pooled | LoadedModel | str | Path,
    corpus: Corpus | None = None,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    **options: Any,
) -> Result:
    """LRDS / SADS per layer: from pooled vectors (a :class:`Pooled` or a folder holding them), or pool
    ``corpus`` through a model first (``options``: ``site``, ``batch_size``, ``max_length``, …)."""
    from langneurons.analyze.similarity import similarity as _similarity
    from langneurons.record.pooled import record_pooled

    if isinstance(data, LoadedModel):
        if corpus is None:
            raise LangneuronsError("similarity(model, corpus): give the corpus to pool")
        options["max_length"] = min(options.get("max_length", 512), data.max_length)
        pooled = record_pooled(data, corpus, out, progress=progress, **options)
    elif isinstance(data, Pooled):
        pooled = data
    else:
        pooled = load_pooled(data)
    assert pooled is not None  # one process: never None
    result = Result(_similarity(pooled, progress=progress))
    if out is not None:
        from langneurons.analyze.similarity import SIMILARITY_FILE

        result.save(Path(out) / SIMILARITY_FILE)
    return result


def report(run_dir: str | Path, out: str | Path | None = None, format: str = "html") -> Path:
    """Write the run folder's report (default ``RUN_DIR/report.html``) and return its path."""
    from langneurons.report import write_report

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / ("figures" if format == "png" else "report.html")
    write_report(run_dir, out, format)
    return out
