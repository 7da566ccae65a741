"""Recording on real sentences, as the README's main command runs it, against a plain body forward.

  A  bare body forward over `record`'s own batches (NTREX sentences of each unit sorted by length,
     batch size 8, right padding), no hooks                                  — the bar
  B  `record`'s per-batch path over the same batches: Counter hooks, ``set_batch`` and the body
     forward, one counter reset and partial per unit                          — what `record` pays
  C  (``--previous``) B with the counting update as it was before this benchmark existed (bool mask,
     then ``.to(float32)``), to show the change side by side                  — for the record

Short sentences make small batches (~30 tokens × 8), where fixed per-batch and per-layer costs
weigh more than in ``bench_record.py``'s 4 × 256-token batches. The batches are tokenized once,
before timing, for both variants. Each repetition runs A then B (the order alternates between
repetitions); figures are medians, and the ratio is the median of the per-repetition ratios.
``--profile`` runs B once under torch.profiler and prints where its time goes.

Usage: python benchmarks/bench_record_sentences.py [--sentences 40] [--reps 9] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402

from langneurons.data import load_corpus  # noqa: E402
from langneurons.models.loading import load_model  # noqa: E402
from langneurons.recording.counter import Counter  # noqa: E402
from langneurons.recording.plan import plan_units, unit_batches  # noqa: E402
from langneurons.recording.recorder import RecordSettings  # noqa: E402

README_LANGUAGES = "en,fr,de,es,ru,zh,ja,ar,hi,vi"


def record_batches(loaded, corpus, settings: RecordSettings) -> list[list]:
    """The batches `record` forms, grouped by unit (same planning, same sorting, same padding)."""
    units = plan_units(
        corpus,
        loaded.tokenizer,
        batch_size=settings.batch_size,
        chunk_batches=settings.chunk_batches,
        max_length=settings.max_length,
        count_bos=settings.count_bos,
    )
    out = []
    for unit in units:
        texts = corpus.texts(corpus.languages[unit.lang])[unit.start : unit.stop]
        args = (loaded.tokenizer, settings.batch_size, settings.max_length, settings.count_bos)
        out.append(list(unit_batches(texts, *args)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--languages", default=README_LANGUAGES)
    ap.add_argument("--sentences", type=int, default=40, help="per language (the README records 200)")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--site", default="act")
    ap.add_argument("--profile", action="store_true", help="profile one run of B and print the top ops")
    ap.add_argument("--previous", action="store_true", help="also time the previous counting update (C)")
    ap.add_argument("--name", default="record_sentences", help="results/<name>.json")
    args = ap.parse_args()

    loaded = load_model("embedded", device="cpu")
    corpus = load_corpus("ntrex", args.languages.split(","), args.sentences)
    settings = RecordSettings(site=args.site, batch_size=args.batch_size)
    units = record_batches(loaded, corpus, settings)
    batches = [b for unit in units for b in unit]
    tokens = sum(int(b.counted.sum()) for b in batches)
    padded = sum(b.input_ids.numel() for b in batches)
    body = loaded.adapter.body()
    counter = Counter(loaded.adapter, settings.site, loaded.device)
    previous = Counter(loaded.adapter, settings.site, loaded.device, previous_statistics)

    def bare() -> None:
        with torch.inference_mode():
            for b in batches:
                body(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    def record_path(c: Counter):
        def run() -> None:
            with c, torch.inference_mode():
                for unit in units:
                    c.reset()
                    for b in unit:
                        c.set_batch(b.counted)
                        body(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)
                    c.partial  # noqa: B018 — `record` collects each unit's partial

        return run

    def totals(c: Counter) -> list[torch.Tensor]:
        c.reset()
        with c, torch.inference_mode():
            for b in batches:
                c.set_batch(b.counted)
                body(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)
        return c.partial.tensors()

    recording = record_path(counter)
    variants = {"bare_body": bare, "record_path": recording}
    if args.previous:
        variants["record_path_previous"] = record_path(previous)
    for fn in variants.values():  # warm-up
        fn()
    if args.previous:  # the change must not move a single recorded number
        same = [torch.equal(a, b) for a, b in zip(totals(counter), totals(previous), strict=True)]
        assert all(same), f"previous and current updates differ: {same}"
        print("current and previous updates agree exactly (count, sum, sum_sq, n_tokens)")
    if args.profile:
        profile(recording, counter)
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}  # process CPU time: robust to waiting
    if args.reps <= 0:
        return
    load_before = os.getloadavg()
    for rep in range(args.reps):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            variants[name]()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
        print(f"rep {rep}: " + "  ".join(f"{n} {tokens / times[n][-1]:.1f} tok/s" for n in variants), flush=True)
    ratios = [a / b for a, b in zip(times["bare_body"], times["record_path"], strict=True)]
    per_rep = {
        name: [a / b for a, b in zip(times["bare_body"], t, strict=True)]
        for name, t in times.items()
        if name != "bare_body"
    }
    res = {name: {"median_tok_s": tokens / statistics.median(t), "tok_s": [tokens / x for x in t]}
           for name, t in times.items()}  # fmt: skip
    summary = {
        "model": loaded.name,
        "layers": loaded.adapter.num_layers,
        "neurons_per_layer": loaded.adapter.intermediate_size,
        "dtype": str(loaded.dtype),
        "site": args.site,
        "corpus": f"ntrex, {args.languages}, first {args.sentences} sentences each",
        "batches": len(batches),
        "batch_size": args.batch_size,
        "counted_tokens": tokens,
        "padded_tokens": padded,
        "mean_tokens_per_batch": padded / len(batches),
        "reps": args.reps,
        "results": res,
        "ratio_per_rep": ratios,
        "ratio_median_per_variant": {name: statistics.median(r) for name, r in per_rep.items()},
        "cpu_seconds": cpu,
        "cpu_ratio_median_per_variant": {
            name: statistics.median(a / b for a, b in zip(cpu["bare_body"], t, strict=True))
            for name, t in cpu.items()
            if name != "bare_body"
        },
        "load_average_before": load_before,
        "overhead_ratio_median": statistics.median(ratios),  # record path / bare, per repetition
        "overhead_ratio_of_medians": res["record_path"]["median_tok_s"] / res["bare_body"]["median_tok_s"],
        "threads": torch.get_num_threads(),
    }
    for name, r in res.items():
        print(f"{name:14s} {r['median_tok_s']:9.1f} tok/s (median of {args.reps})")
    for name, r in per_rep.items():
        print(f"ratio {name}/bare: median {statistics.median(r):.3f} (wall), "
              f"{summary['cpu_ratio_median_per_variant'][name]:.3f} (CPU time)")  # fmt: skip
    print(f"ratio record/bare: median {summary['overhead_ratio_median']:.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}")  # fmt: skip
    write_result(args.name, summary)


def previous_statistics(x: torch.Tensor, index: torch.Tensor | None):
    """The counting update before this benchmark: a bool mask converted with ``.to(float32)`` (same numbers)."""
    xs = x if index is None else x.index_select(0, index)
    n = xs.shape[0]
    count = (xs.new_ones(1, n, dtype=torch.float32) @ (xs > 0).to(torch.float32))[0].to(torch.int64)
    x64 = xs.to(torch.float64)
    ones64 = x64.new_ones(1, n)
    return count, (ones64 @ x64)[0], (ones64 @ (x64 * x64))[0]


def profile(fn, counter: Counter) -> None:
    """One run under torch.profiler, the counting update and ``set_batch`` labelled: where the time goes."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    update, set_batch = counter.update, counter.set_batch

    def labelled_update(x, rows):
        with record_function("counter.update"):
            return update(x, rows)

    def labelled_set_batch(counted):
        with record_function("counter.set_batch"):
            return set_batch(counted)

    counter.update, counter.set_batch = labelled_update, labelled_set_batch
    try:
        with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            with record_function("record_path"):
                fn()
    finally:
        counter.update, counter.set_batch = update, set_batch
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30))


if __name__ == "__main__":
    main()
