"""The recording loop: units → counted batches → partials → totals, with checkpoints and ranks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
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
from langneurons.formats.stats import MANIFEST_FILE, STATS_FILE, Stats, id_ranges, save_stats
from langneurons.models import SITES
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.record.counter import Counter, Partial, batch_statistics, compiled_statistics
from langneurons.record.distributed import (
    World,
    any_rank,
    barrier,
    broadcast_flag,
    broadcast_object,
    gather_partials,
    gather_tensor,
    init_world,
)
from langneurons.record.plan import Unit, packed_batches, plan_units, unit_batches
from langneurons.record.residual import ResidualCounter, split_residual

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
    compile: bool = False  # torch.compile the counting update (same counts; sums equal to rounding)
    packing: bool = False  # join a unit's texts into full max_length rows (changes each token's context)
    residual: bool = True  # also sum the residual stream after each decoder layer (DiffMean, METHODS.md §11)

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


# Settings that change when/how fast work is saved, never the recorded numbers (kept out of the
# fingerprint, so a resumed run may use other values).
_SCHEDULE_ONLY = ("checkpoint_minutes", "checkpoint_every_units")


def record(
    loaded: LoadedModel,
    corpus: Corpus,
    out: str | Path,
    settings: RecordSettings = RecordSettings(),
    *,
    overwrite: bool = False,
    progress: bool = True,
    world: World | None = None,
) -> Stats:
    """Record ``corpus`` through ``loaded`` at ``settings.site`` into ``out`` (stats + manifest)."""
    out = Path(out)
    world = world or init_world()
    _check(loaded, settings, out, overwrite, world)
    units = plan_units(
        corpus,
        loaded.tokenizer,
        batch_size=settings.batch_size,
        chunk_batches=settings.chunk_batches,
        max_length=settings.max_length,
        count_bos=settings.count_bos,
        tokens=settings.tokens,
    )
    manifest = _manifest(loaded, corpus, settings, units, world)
    fingerprint = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    shape = (len(corpus.languages), loaded.adapter.num_layers, loaded.adapter.intermediate_size)
    resid_shape = (shape[0], shape[1], loaded.adapter.hidden_size + 1) if settings.residual else None
    totals, next_unit, resid = _resume(out, fingerprint, shape, overwrite, world, resid_shape)
    rows = _per_language(totals)
    started, last_save, saved_unit = time.time(), time.time(), next_unit
    update = compiled_statistics() if settings.compile else batch_statistics
    counter = Counter(loaded.adapter, settings.site, loaded.device, update)
    residual = ResidualCounter(loaded.adapter, counter) if settings.residual else contextlib.nullcontext()
    body = loaded.adapter.body()
    bar = progress_bar(progress and world.is_main, "units {task.fields[rate]}")
    counted_before = int(totals[3].sum())
    delay = float(os.environ.get(UNIT_DELAY_ENV, "0") or 0)
    try:
        with _StopOnSigint() as stop, bar, counter, residual, torch.inference_mode():
            task = bar.add_task("recording", total=len(units), completed=next_unit, rate="")
            for first in range(next_unit, len(units), world.size):
                mine = first + world.rank
                counter.reset()
                if settings.residual:
                    residual.reset()
                if mine < len(units):
                    _run_unit(units[mine], corpus, loaded, body, counter, settings)
                new_rows = list(rows)  # new tensors, swapped in by one assignment: Ctrl-C never half-adds
                for offset, partial in enumerate(gather_partials(counter.partial, world)):
                    if first + offset < len(units):
                        lang = units[first + offset].lang
                        new_rows[lang] = _add(new_rows[lang], partial.to("cpu"))
                if settings.residual:
                    new_resid = resid.clone()  # like the rows: swapped in whole, never half-added
                    for offset, part in enumerate(gather_tensor(residual.partial(loaded.device), world)):
                        if first + offset < len(units):
                            new_resid[units[first + offset].lang] += part.to("cpu")
                    resid = new_resid
                rows, next_unit = new_rows, min(first + world.size, len(units))
                counted = sum(int(r.n_tokens) for r in rows)
                rate = (counted - counted_before) / max(time.time() - started, 1e-9)
                desc = _describe(corpus, units, next_unit)
                bar.update(task, completed=next_unit, description=desc, rate=f"{rate:,.0f} tok/s")
                due = time.time() - last_save > 60 * settings.checkpoint_minutes
                every = settings.checkpoint_every_units
                due = due or (every is not None and next_unit - saved_unit >= every)
                if world.is_main and due and next_unit < len(units):
                    _save_checkpoint(out, _stack(rows), next_unit, fingerprint, resid)
                    last_save, saved_unit = time.time(), next_unit
                if delay:
                    time.sleep(delay)
                if any_rank(stop.requested, world):
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if world.is_main and next_unit > saved_unit:
            _save_checkpoint(out, _stack(rows), next_unit, fingerprint, resid)
        raise
    totals = _stack(rows)
    manifest["wall_seconds"] = round(time.time() - started, 3)
    manifest["created"] = now()
    stats = Stats(*totals, manifest=manifest)
    if resid is not None:
        stats.resid_sum, stats.resid_norm_sum = split_residual(resid)
    if world.is_main:
        save_stats(out, stats)
        (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    barrier(world)
    return stats


class _StopOnSigint:
    """First Ctrl-C: finish the unit in progress, checkpoint, stop. A second one interrupts at once.

    Stopping between units (never inside a forward or a finaliser, where Python may swallow a
    KeyboardInterrupt) is what makes an interrupted run always resumable.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

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


def _run_unit(unit: Unit, corpus: Corpus, loaded: LoadedModel, body, counter: Counter, s: RecordSettings):
    texts = corpus.texts(corpus.languages[unit.lang])[unit.start : unit.stop]
    batches = packed_batches if s.packing else unit_batches
    for batch in batches(texts, loaded.tokenizer, s.batch_size, s.max_length, s.count_bos):
        counter.set_batch(batch.counted)
        body(
            input_ids=batch.input_ids.to(loaded.device),
            attention_mask=batch.attention_mask.to(loaded.device),
            use_cache=False,
        )
        if not counter.checked:
            counter.check_fired()


def _add(row: Partial, partial: Partial) -> Partial:
    """A new row (no in-place change, so the previous totals stay valid until swapped)."""
    return Partial(*(a + b for a, b in zip(row.tensors(), partial.tensors(), strict=True)))


def _per_language(totals: list[torch.Tensor]) -> list[Partial]:
    count, total, total_sq, n_tokens = totals
    return [Partial(count[k], total[k], total_sq[k], n_tokens[k : k + 1]) for k in range(len(n_tokens))]


def _stack(rows: list[Partial]) -> list[torch.Tensor]:
    """Per-language rows back into the [K, L, F] / [K] tensors of the stats file."""
    return [torch.stack([getattr(r, name) for r in rows]) for name in ("count", "sum", "sum_sq")] + [
        torch.cat([r.n_tokens for r in rows])
    ]


def _check(loaded: LoadedModel, s: RecordSettings, out: Path, overwrite: bool, world: World) -> None:
    s.validate()
    if s.max_length > loaded.max_length:
        raise LangneuronsError(f"--max-length must be in 1..{loaded.max_length} for this model, got {s.max_length}")
    finished = broadcast_flag((out / MANIFEST_FILE).exists(), world)
    if finished and not overwrite:
        raise LangneuronsError(f"{out} already holds a finished run; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise LangneuronsError(f"{out} exists and is not a directory")


def _resume(out: Path, fingerprint: str, shape: tuple[int, int, int], overwrite: bool, world: World,
            resid_shape: tuple[int, int, int] | None = None):  # fmt: skip
    """Totals, next unit and residual sums (None when not recorded) from a checkpoint of the same
    configuration, else zeros (rank 0 decides)."""
    result = _read_checkpoint(out, fingerprint, shape, overwrite, resid_shape) if world.is_main else None
    result = broadcast_object(result, world)
    if isinstance(result, str):
        raise LangneuronsError(result)
    return result


def _read_checkpoint(out: Path, fingerprint: str, shape: tuple[int, int, int], overwrite: bool,
                     resid_shape: tuple[int, int, int] | None = None):  # fmt: skip
    k, n_layers, width = shape
    resid = None if resid_shape is None else torch.zeros(resid_shape, dtype=torch.float64)
    totals = [
        torch.zeros(shape, dtype=torch.int64),
        torch.zeros(shape, dtype=torch.float64),
        torch.zeros(shape, dtype=torch.float64),
        torch.zeros(k, dtype=torch.int64),
    ]
    path = out / CHECKPOINT_FILE
    if overwrite:  # the old run goes first: a crash later must not leave it beside a new checkpoint
        for name in (MANIFEST_FILE, STATS_FILE, CHECKPOINT_FILE):
            (out / name).unlink(missing_ok=True)
    if not path.exists():
        return totals, 0, resid
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as fh:
            state = json.loads(fh.metadata()["state"])
        resumed = [tensors[name] for name in ("count", "sum", "sum_sq", "n_tokens")]
        if resid is not None:
            resumed.append(tensors["resid"])
            totals.append(resid)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError, TypeError):
        return f"{path} is corrupt; delete it to start over"
    if state.get("fingerprint") != fingerprint:
        return f"{path} comes from a different model, corpus or settings; delete it or pass --overwrite"
    if [tuple(t.shape) for t in resumed] != [tuple(t.shape) for t in totals]:
        return f"{path} has the wrong shape for this run; delete it to start over"
    if resid is not None:
        return resumed[:4], int(state["next_unit"]), resumed[4]
    return resumed, int(state["next_unit"]), None


def _save_checkpoint(out: Path, totals: list[torch.Tensor], next_unit: int, fingerprint: str,
                     resid: torch.Tensor | None = None) -> None:  # fmt: skip
    """One atomic file holds the totals and the unit to resume at, so they can never disagree."""
    state = json.dumps({"fingerprint": fingerprint, "next_unit": next_unit})
    names = ("count", "sum", "sum_sq", "n_tokens")
    tensors = dict(zip(names, totals, strict=True)) | ({} if resid is None else {"resid": resid})
    write_safetensors(out / CHECKPOINT_FILE, tensors, metadata={"state": state})


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
        "counted": "every real text token" + (" and BOS" if s.count_bos else "; BOS, EOS and padding excluded"),
        "settings": asdict(s) | dict.fromkeys(_SCHEDULE_ONLY),
        **software(),
    }


def _counted_sha256(corpus: Corpus, lang: str, n: int) -> str:
    """Hash of the first ``n`` sentences of ``lang`` (the ones the units count)."""
    return Corpus(corpus.name, {lang: corpus.items[lang][:n]}).language_sha256(lang)


def _describe(corpus: Corpus, units: list[Unit], next_unit: int) -> str:
    lang = corpus.languages[units[min(next_unit, len(units) - 1)].lang] if units else "-"
    return f"recording [bold]{lang}[/]"

