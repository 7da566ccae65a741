"""The recording loop: units → counted batches → partials → totals, with checkpoints and ranks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import write_safetensors
from langneurons.formats.provenance import now, software
from langneurons.formats.shards import SHARD_RULE, SHARDS_FILE, Shards, save_shards, shard_of_sentences
from langneurons.formats.stats import MANIFEST_FILE, STATS_FILE, Stats, id_ranges, save_stats
from langneurons.models import SITES
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.recording.counter import Counter, Partial, batch_statistics, compiled_statistics, describe_update
from langneurons.recording.distributed import (
    World,
    any_rank,
    barrier,
    broadcast_flag,
    broadcast_object,
    gather_partials,
    gather_to_main,
    init_world,
)
from langneurons.recording.examples import ExampleTracker, batch_positions
from langneurons.recording.plan import Unit, packed_batches, plan_units, unit_batches
from langneurons.recording.spans import check_spans, counted_description, span_batches

CHECKPOINT_FILE = "checkpoint.safetensors"
# Seconds to sleep after each unit: lets tests interrupt a real run at a known point. Not for users.
UNIT_DELAY_ENV = "LANGNEURONS_TEST_UNIT_DELAY"


@dataclass(frozen=True)
class RecordSettings:
    """Everything besides model and corpus that decides the recorded numbers (all go in the manifest)."""

    site: str = "act"
    batch_size: int = 8
    max_length: int = 512
    count_bos: bool = False
    tokens: int | None = None  # per-language budget of counted tokens (whole sentences)
    chunk_batches: int = 8  # batches per unit of work (checkpoint / rank grain)
    checkpoint_minutes: float = 5.0
    checkpoint_every_units: int | None = None  # also checkpoint after this many units (None: time only)
    # torch.compile the counting update (same counts; sums equal to rounding); None: on CUDA only, where it pays
    compile: bool | None = None
    packing: bool = False  # join a unit's texts into full max_length rows (changes each token's context)
    shards: int | None = None  # also keep per-shard counts (formats/shards.py); None: no shards
    residual: bool = True  # also sum the residual stream after each decoder layer (DiffMean, docs/methods.md)
    examples: int = 0  # also keep each neuron's top-K activating examples per language (recording/examples.py)
    count: str = "all"  # all / response / prompt tokens of a prompt/response corpus (recording/spans.py)

    def validate(self) -> None:
        """Refuse impossible settings with a one-line error (callable before any model is loaded)."""
        if self.site not in SITES:
            raise LangneuronsError(f"unknown site {self.site!r}; choose {' or '.join(SITES)}")
        if self.batch_size <= 0 or self.chunk_batches <= 0:
            raise LangneuronsError("--batch-size and --chunk-batches must be positive")
        if self.max_length <= 0:
            raise LangneuronsError(f"--max-length must be positive, got {self.max_length}")
        if self.tokens is not None and self.tokens <= 0:
            raise LangneuronsError(f"--tokens must be positive, got {self.tokens}")
        if self.checkpoint_minutes <= 0:
            raise LangneuronsError("--checkpoint-minutes must be positive")
        if self.checkpoint_every_units is not None and self.checkpoint_every_units <= 0:
            raise LangneuronsError("--checkpoint-every-units must be positive")
        if self.shards is not None and self.shards < 2:
            raise LangneuronsError(f"--shards must be at least 2, got {self.shards}")
        if self.examples < 0:
            raise LangneuronsError(f"--examples must be positive (0: none), got {self.examples}")
        if self.examples and self.packing:
            raise LangneuronsError("--examples needs unpacked sentences (a token's position is within its sentence); "
                                   "drop --packing")
        if self.count not in ("all", "response", "prompt"):
            raise LangneuronsError(f"--count must be all, response or prompt, got {self.count!r}")


# Settings that change when/how fast work is saved, never the recorded numbers (kept out of the
# fingerprint, so a resumed run may use other values).
_SCHEDULE_ONLY = ("checkpoint_minutes", "checkpoint_every_units")


def record(
    loaded: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    settings: RecordSettings = RecordSettings(),
    *,
    overwrite: bool = False,
    reuse: bool = False,
    progress: bool = True,
    world: World | None = None,
) -> Stats:
    """Record ``corpus`` through ``loaded`` at ``settings.site`` into ``out`` (stats + manifest).

    ``out=None`` records in memory (no checkpoint, no file). ``reuse=True`` returns the finished run
    already in ``out`` when it was made from the same model, corpus and settings (same fingerprint).
    """
    out = None if out is None else Path(out)
    world = world or init_world()
    if reuse and out is not None and not overwrite and (out / MANIFEST_FILE).exists():
        settings.validate()
        units = _plan(corpus, loaded, settings)
        finished = _reusable(out, _manifest(loaded, corpus, settings, units, world))
        if finished is not None:
            return finished
    if out is None:
        settings.validate()
        _check_max_length(loaded, settings)
    else:
        _check(loaded, settings, out, overwrite, world)
    check_spans(corpus, settings)
    units = _plan(corpus, loaded, settings)
    manifest = _manifest(loaded, corpus, settings, units, world)
    per_language = _check_shards(corpus, settings, manifest)
    fingerprint = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    shape = (len(corpus.languages), loaded.adapter.num_layers, loaded.adapter.intermediate_size)
    extra = _extra_shapes(loaded, settings)
    if out is None:
        totals, next_unit = _zeros(shape, extra, settings.shards), 0
    else:
        totals, next_unit = _resume(out, fingerprint, shape, overwrite, world, extra, settings.shards)
    rows = _per_language(totals, sorted(extra), bool(settings.shards))
    n_fixed = 6 if settings.shards else 4  # count, sum, sum_sq, n_tokens (+ the two shard tensors)
    started, last_save, saved_unit = time.time(), time.time(), next_unit
    fused = settings.compile if settings.compile is not None else loaded.device.type == "cuda"
    update = compiled_statistics() if fused else batch_statistics
    counter = Counter(loaded.adapter, settings.site, loaded.device, update, settings.shards,
                      residual=settings.residual)  # fmt: skip
    body = loaded.adapter.body()
    examples = _examples_tracker(loaded, corpus, settings, out, next_unit, world)
    bar = progress_bar(progress and world.is_main, "sentences")
    counted_before = int(totals[3].sum())
    done_before = _sentences_done(units, next_unit)
    delay = float(os.environ.get(UNIT_DELAY_ENV, "0") or 0)
    try:
        where = "saving a checkpoint" if out is not None else "stopping (in memory: nothing is saved)"
        note = (f"Ctrl-C: finishing the current unit of work ({settings.chunk_batches} batches at most), then {where}; "
                "press Ctrl-C again to stop now") if world.is_main else None  # fmt: skip
        with (_StopOnSigint(note) as stop, bar, counter, examples or contextlib.nullcontext(),
              torch.inference_mode()):  # fmt: skip
            task = bar.add_task(
                _describe(corpus, units, next_unit),
                total=_sentences_done(units, len(units)),
                completed=done_before,
                tokens=counted_before,
                tokens_start=counted_before,
            )
            for first in range(next_unit, len(units), world.size):
                mine = first + world.rank
                counter.reset()
                if mine < len(units):
                    at = _sentences_done(units, mine)
                    on_batch = None if world.size > 1 else (lambda n, at=at: bar.update(task, completed=at + n))
                    _run_unit(units[mine], corpus, loaded, body, counter, settings, per_language, on_batch, examples)
                new_rows = list(rows)  # new tensors, swapped in by one assignment: Ctrl-C never half-adds
                for offset, partial in enumerate(gather_partials(counter.partial, world)):
                    if first + offset < len(units):
                        lang = units[first + offset].lang
                        new_rows[lang] = _add(new_rows[lang], partial.to("cpu"))
                rows, next_unit = new_rows, min(first + world.size, len(units))
                counted = sum(int(r.n_tokens) for r in rows)
                desc = _describe(corpus, units, next_unit)
                bar.update(task, completed=_sentences_done(units, next_unit), description=desc, tokens=counted)
                due = time.time() - last_save > 60 * settings.checkpoint_minutes
                every = settings.checkpoint_every_units
                due = due or (every is not None and next_unit - saved_unit >= every)
                kept = _gathered(examples, world) if due and next_unit < len(units) else None
                if out is not None and world.is_main and due and next_unit < len(units):
                    _save_checkpoint(out, _stack(rows), next_unit, fingerprint, bool(settings.shards), kept)
                    last_save, saved_unit = time.time(), next_unit
                if delay:
                    time.sleep(delay)
                if any_rank(stop.requested, world) and next_unit < len(units):  # finished counting is written
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if out is not None and world.is_main and next_unit > saved_unit:
            kept = _gathered(examples, world) if world.size == 1 else None
            if examples is None or kept is not None:  # ranks cannot meet here: their examples are not saved
                _save_checkpoint(out, _stack(rows), next_unit, fingerprint, bool(settings.shards), kept)
        raise
    totals = _stack(rows)
    manifest["wall_seconds"] = round(time.time() - started, 3)
    manifest["counting_update"] = describe_update(update)
    manifest["created"] = now()
    stats = Stats(*totals[:4], manifest=manifest, extra=dict(zip(sorted(extra), totals[n_fixed:], strict=True)),
                  path=None if out is None else str(out))  # fmt: skip
    kept = _gathered(examples, world)
    if kept is not None:
        stats.examples = kept.result(_examples_info(manifest, settings))
    if out is not None and world.is_main:
        if settings.shards:  # before the manifest, whose presence marks a finished run
            save_shards(out, Shards(totals[4].transpose(0, 1), totals[5].transpose(0, 1)))
        if kept is not None:
            from langneurons.formats.examples import save_examples

            save_examples(out, stats.examples)
        save_stats(out, stats)
        (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    barrier(world)
    return stats


class _StopOnSigint:
    """First Ctrl-C: finish the unit in progress, checkpoint, stop. A second one interrupts at once.

    Stopping between units (never inside a forward or a finaliser, where Python may swallow a
    KeyboardInterrupt) is what makes an interrupted run always resumable.
    """

    def __init__(self, note: str | None = None) -> None:
        self.requested = False
        self._previous = None
        self.note = note  # said at the first press, at once


    def __enter__(self) -> _StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.note:
            print(f"\n{self.note}", file=sys.stderr, flush=True)


def _run_unit(
    unit: Unit, corpus: Corpus, loaded: LoadedModel, body, counter: Counter, s: RecordSettings, per_language,
    on_batch=None,
    examples=None,
):
    """Count one unit; ``on_batch(n)`` after each batch with the unit's texts done so far (the progress bar)."""
    texts = corpus.texts(corpus.languages[unit.lang])[unit.start : unit.stop]
    batches = packed_batches if s.packing else unit_batches
    if corpus.spans is not None:  # prompt/response texts: count s.count's tokens (recording/spans.py)
        batches = span_batches(corpus.spans[corpus.languages[unit.lang]][unit.start : unit.stop], s.count,
                               corpus.templated)  # fmt: skip
    shard_of_text = None
    if s.shards:
        shard_of_text = shard_of_sentences(per_language[unit.lang], s.shards, unit.start, unit.stop)
    done = 0
    for batch in batches(texts, loaded.tokenizer, s.batch_size, s.max_length, s.count_bos):
        counter.set_batch(batch.counted, None if shard_of_text is None else shard_of_text[batch.text])
        if examples is not None:
            examples.set_batch(unit.lang, batch.counted, *batch_positions(batch.counted, batch.text, unit.start))
        body(
            input_ids=batch.input_ids.to(loaded.device),
            attention_mask=batch.attention_mask.to(loaded.device),
            use_cache=False,
        )
        if not counter.checked:
            counter.check_fired()
        if on_batch is not None:  # a packed row holds several texts: the last one it reaches counts as done
            done = int(batch.text.max()) + 1 if s.packing and batch.text is not None else done + len(batch.input_ids)
            on_batch(min(done, len(texts)))


def _add(row: Partial, partial: Partial) -> Partial:
    """A new row (no in-place change, so the previous totals stay valid until swapped)."""
    return row.with_tensors([a + b for a, b in zip(row.tensors(), partial.tensors(), strict=True)])


def _per_language(totals: list[torch.Tensor], extra_names: list[str], shards: bool = False) -> list[Partial]:
    count, total, total_sq, n_tokens, *rest = totals  # rest: shards [K, S, L, F] and [K, S], then extra
    shard_totals, extra = (rest[:2], rest[2:]) if shards else ([], rest)
    return [
        Partial(count[k], total[k], total_sq[k], n_tokens[k : k + 1],
                {n: t[k] for n, t in zip(extra_names, extra, strict=True)},
                *(t[k] for t in shard_totals))  # fmt: skip
        for k in range(len(n_tokens))
    ]


def _stack(rows: list[Partial]) -> list[torch.Tensor]:
    """Per-language rows back into the [K, L, F] / [K] tensors of the stats file, then (with shards) the
    [K, S, L, F] / [K, S] shard counts, then the extra [K, ...] tensors (the order of Partial.tensors)."""
    columns = list(zip(*(r.tensors() for r in rows), strict=True))
    return [torch.cat(col) if i == 3 else torch.stack(col) for i, col in enumerate(columns)]


def _check_shards(corpus: Corpus, s: RecordSettings, manifest: dict) -> list[int]:
    """Counted sentences per language; with shards, each must have at least one sentence per shard."""
    counted = [int(manifest["sentences"][lang]) for lang in corpus.languages]
    if s.shards:
        short = [f"{lang} ({n})" for lang, n in zip(corpus.languages, counted, strict=True) if n < s.shards]
        if short:
            raise LangneuronsError(f"--shards {s.shards} needs at least {s.shards} sentences per language: "
                                   f"{', '.join(short)}")  # fmt: skip
        manifest["shards"] = {"count": s.shards, "file": SHARDS_FILE, "rule": SHARD_RULE}
    return counted


def _extra_shapes(loaded: LoadedModel, s: RecordSettings) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-language tensors besides count/sum/sum_sq: an MoE model's routing statistics and the residual
    sums DiffMean needs (recording/residual.py)."""
    out = {}
    if loaded.adapter.is_moe:
        shape = (loaded.adapter.num_layers, loaded.adapter.num_experts)
        out |= {"routed_tokens": (shape, torch.int64), "router_probability": (shape, torch.float64)}
    if s.residual:
        from langneurons.recording.residual import residual_shapes

        out |= residual_shapes(loaded.adapter)
    return out


def _plan(corpus: Corpus, loaded: LoadedModel, s: RecordSettings) -> list[Unit]:
    return plan_units(corpus, loaded.tokenizer, batch_size=s.batch_size, chunk_batches=s.chunk_batches,
                      max_length=s.max_length, count_bos=s.count_bos, tokens=s.tokens)  # fmt: skip


def _sentences_done(units: list[Unit], next_unit: int) -> int:
    return sum(u.stop - u.start for u in units[:next_unit])


def _zeros(shape: tuple[int, int, int], extra: dict | None = None, shards: int | None = None) -> list[torch.Tensor]:
    """Empty totals: count, sum, sum_sq [K, L, F], n_tokens [K], with ``shards`` the [K, S, L, F] / [K, S]
    shard counts, then the extra tensors in name order."""
    extra = extra or {}
    k, n_layers, width = shape
    totals = [
        torch.zeros(shape, dtype=torch.int64),
        torch.zeros(shape, dtype=torch.float64),
        torch.zeros(shape, dtype=torch.float64),
        torch.zeros(k, dtype=torch.int64),
    ]
    if shards:
        totals += [
            torch.zeros((k, shards, n_layers, width), dtype=torch.int64),
            torch.zeros((k, shards), dtype=torch.int64),
        ]
    return totals + [torch.zeros((k, *extra[n][0]), dtype=extra[n][1]) for n in sorted(extra)]


def _checkpoint_names(n_totals: int, shards: bool) -> list[str]:
    fixed = list(_CHECKPOINT_NAMES if shards else _CHECKPOINT_NAMES[:4])
    return fixed + [f"extra.{i}" for i in range(n_totals - len(fixed))]


# Manifest fields a finished run adds after recording (not part of what was asked for).
_AFTER_THE_FACT = ("format", "wall_seconds", "created", "counting_update")


def _reusable(out: Path, manifest: dict) -> Stats:
    """The finished run in ``out`` if its manifest describes the same job; another job's run is refused, naming
    the first differences (model, corpus, settings, ...)."""
    from langneurons.formats.difference import describe_difference
    from langneurons.formats.stats import load_stats

    finished = load_stats(out)
    theirs = {k: v for k, v in finished.manifest.items() if k not in _AFTER_THE_FACT}
    mine = json.loads(json.dumps(manifest))
    if theirs == mine:
        return finished
    raise LangneuronsError(f"{out} holds a finished run of other inputs: {describe_difference(theirs, mine)}; "
                           "pass --overwrite to replace it, or -o another folder")  # fmt: skip


def _check_max_length(loaded: LoadedModel, s: RecordSettings) -> None:
    if s.max_length > loaded.max_length:
        raise LangneuronsError(f"--max-length must be in 1..{loaded.max_length} for this model, got {s.max_length}")


def _check(loaded: LoadedModel, s: RecordSettings, out: Path, overwrite: bool, world: World) -> None:
    s.validate()
    _check_max_length(loaded, s)
    finished = broadcast_flag((out / MANIFEST_FILE).exists(), world)
    if finished and not overwrite:
        raise LangneuronsError(f"{out} already holds a finished run; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise LangneuronsError(f"{out} exists and is not a directory")


def _resume(
    out: Path,
    fingerprint: str,
    shape: tuple[int, int, int],
    overwrite: bool,
    world: World,
    extra=None,
    shards: int | None = None,
):
    """Totals and next unit from a checkpoint of the same configuration, else zeros (rank 0 decides)."""
    result = _read_checkpoint(out, fingerprint, shape, overwrite, extra or {}, shards) if world.is_main else None
    result = broadcast_object(result, world)
    if isinstance(result, str):
        raise LangneuronsError(result)
    return result


def _read_checkpoint(
    out: Path, fingerprint: str, shape: tuple[int, int, int], overwrite: bool, extra: dict, shards: int | None = None
):
    totals = _zeros(shape, extra, shards)
    names = _checkpoint_names(len(totals), bool(shards))
    path = out / CHECKPOINT_FILE
    if overwrite:  # the old run goes first: a crash later must not leave it beside a new checkpoint
        for name in (MANIFEST_FILE, STATS_FILE, CHECKPOINT_FILE, SHARDS_FILE):
            (out / name).unlink(missing_ok=True)
    if not path.exists():
        return totals, 0
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as fh:
            state = json.loads(fh.metadata()["state"])
        resumed = [tensors[name] for name in names]
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError, TypeError):
        return f"{path} is corrupt; delete it to start over"
    if state.get("fingerprint") != fingerprint:
        return f"{path} comes from a different model, corpus or settings; delete it or pass --overwrite"
    if [tuple(t.shape) for t in resumed] != [tuple(t.shape) for t in totals]:
        return f"{path} has the wrong shape for this run; delete it to start over"
    return resumed, int(state["next_unit"])


def _save_checkpoint(
    out: Path, totals: list[torch.Tensor], next_unit: int, fingerprint: str, shards: bool = False, examples=None
) -> None:
    """One atomic file holds the totals (and kept examples) and the unit to resume at, so they never disagree."""
    state = json.dumps({"fingerprint": fingerprint, "next_unit": next_unit})
    names = _checkpoint_names(len(totals), shards)
    tensors = dict(zip(names, totals, strict=True))
    if examples is not None:
        tensors |= {f"examples.{name}": t for name, t in examples.tensors().items()}
    write_safetensors(out / CHECKPOINT_FILE, tensors, metadata={"state": state})


def _examples_tracker(loaded: LoadedModel, corpus: Corpus, s: RecordSettings, out: Path | None, next_unit: int,
                      world: World):  # fmt: skip
    """With ``--examples K``: the tracker of top examples, holding a resumed checkpoint's (rank 0)."""
    if not s.examples:
        return None
    tracker = ExampleTracker(loaded.adapter, s.site, s.examples, len(corpus.languages))
    if out is not None and next_unit > 0 and world.is_main:
        saved = load_file(str(out / CHECKPOINT_FILE))
        tracker.load({name.removeprefix("examples."): t for name, t in saved.items() if name.startswith("examples.")})
    return tracker


def _gathered(examples, world: World):
    """Every rank's examples merged into one tracker on rank 0 (the live trackers are left as they are)."""
    if examples is None:
        return None
    parts = gather_to_main(examples.tensors(), world)
    if parts is None:
        return None
    merged = ExampleTracker(examples.adapter, examples.site, examples.k, examples.n_languages)
    for part in parts:
        merged.load(part)
    return merged


def _examples_info(manifest: dict, s: RecordSettings) -> dict:
    return {"languages": manifest["languages"], "site": s.site, "sentences": manifest["sentences"],
            "model": manifest.get("model"), "corpus": manifest.get("corpus"), "created": now(), **software()}


_CHECKPOINT_NAMES = ("count", "sum", "sum_sq", "n_tokens", "count_shards", "n_tokens_shards")


def _manifest(loaded: LoadedModel, corpus: Corpus, s: RecordSettings, units: list[Unit], world: World) -> dict:
    sentences = {lang: 0 for lang in corpus.languages}
    for unit in units:
        sentences[corpus.languages[unit.lang]] += unit.stop - unit.start
    return {
        "languages": corpus.languages,
        **loaded.describe(),
        "site": s.site,
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256(),
        "corpus_sha256_by_language": {
            lang: _counted_sha256(corpus, lang, n) for lang, n in sentences.items()
        },
        "sentences": sentences,
        "sentence_ranges": {lang: id_ranges(corpus.ids(lang)[:n]) for lang, n in sentences.items()},
        "sentence_hashes": {lang: corpus.sentence_hashes(lang, n) for lang, n in sentences.items()},
        "counted": counted_description(s.count, corpus.templated)
        or "every real text token" + (" and BOS" if s.count_bos else "; BOS, EOS and padding excluded"),
        "settings": _settings(s),
        **({"filters": corpus.filters} if corpus.filters else {}),
        **software(),
    }


def _settings(s: RecordSettings) -> dict:
    """The manifest's settings; ``count`` only when not ``all`` (older runs, without it, stay reusable)."""
    out = asdict(s) | dict.fromkeys(_SCHEDULE_ONLY)
    if s.count == "all":
        del out["count"]
    return out


def _counted_sha256(corpus: Corpus, lang: str, n: int) -> str:
    """Hash of the first ``n`` sentences of ``lang`` (the ones the units count)."""
    return Corpus(corpus.name, {lang: corpus.items[lang][:n]}).language_sha256(lang)


def _describe(corpus: Corpus, units: list[Unit], next_unit: int) -> str:
    lang = corpus.languages[units[min(next_unit, len(units) - 1)].lang] if units else "-"
    return f"recording {lang}"

