"""End to end: `ln.record` through the API against the plain loop a user would write (issue 25).

  A  plain loop over the batches `record` forms (each language's sentences sorted by length, batches of 8,
     right padding): tokenise, body forward under inference_mode, nothing else  — the bar
  B  ``ln.record(model, corpus, out)`` with the defaults (residual sums on): planning, tokenising, counting,
     checkpointing and writing the run folder included                         — what a user pays
  N  (for the record) the naive loop: sentences in corpus order, batches of 8 — more padding than `record`

The same NTREX sentences (6 languages × 48 by default, batch 8). Each repetition runs A, B and N (the order
alternates between repetitions), B into a fresh folder. The ratio is the median of the per-repetition ratios
time(A) / time(B), i.e. B's throughput as a share of A's (target ≥ 0.95); against N, record is faster
because sorting by length saves padding, which is not langneurons' overhead and so not the target.

Usage: python benchmarks/bench_record_api.py [--sentences 48] [--reps 5] [--model embedded]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402

import langneurons as ln  # noqa: E402
from langneurons.recording import RecordSettings  # noqa: E402
from langneurons.recording.plan import plan_units, unit_batches  # noqa: E402

LANGUAGES = "en,fr,de,ru,zh,ja"


def sorted_loop(loaded, corpus, settings) -> int:
    """The batches `record` forms, tokenised and run through the body with nothing else; returns tokens."""
    units = plan_units(corpus, loaded.tokenizer, batch_size=settings.batch_size,
                       chunk_batches=settings.chunk_batches, max_length=settings.max_length,
                       count_bos=settings.count_bos)  # fmt: skip
    body, tokens = loaded.adapter.body(), 0
    with torch.inference_mode():
        for unit in units:
            texts = corpus.texts(corpus.languages[unit.lang])[unit.start : unit.stop]
            for batch in unit_batches(texts, loaded.tokenizer, settings.batch_size, settings.max_length,
                                      settings.count_bos):  # fmt: skip
                body(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
                tokens += int(batch.attention_mask.sum())
    return tokens


def plain_loop(loaded, corpus, batch_size: int, max_length: int) -> int:
    """What a user writes without langneurons, in corpus order; returns the tokens it ran."""
    tok, body, tokens = loaded.tokenizer, loaded.adapter.body(), 0
    with torch.inference_mode():
        for lang in corpus.languages:
            texts = corpus.texts(lang)
            for i in range(0, len(texts), batch_size):
                enc = tok(texts[i : i + batch_size], return_tensors="pt", padding=True, truncation=True,
                          max_length=max_length)  # fmt: skip
                body(**enc, use_cache=False)
                tokens += int(enc["attention_mask"].sum())
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--languages", default=LANGUAGES)
    ap.add_argument("--sentences", type=int, default=48)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/record_api.json)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    loaded = ln.load_model(args.model)
    corpus = ln.load_corpus("ntrex", args.languages, sentences=args.sentences)
    tmp = Path(tempfile.mkdtemp(prefix="bench-record-api-"))

    settings = RecordSettings(batch_size=args.batch_size, max_length=min(512, loaded.max_length))

    def run_sorted() -> float:
        start = time.perf_counter()
        sorted_loop(loaded, corpus, settings)
        return time.perf_counter() - start

    def run_plain() -> float:
        start = time.perf_counter()
        plain_loop(loaded, corpus, args.batch_size, settings.max_length)
        return time.perf_counter() - start

    def run_record(i: int) -> float:
        out = tmp / f"run{i}"
        start = time.perf_counter()
        ln.record(loaded, corpus, out, batch_size=args.batch_size, progress=False, reuse=False)
        took = time.perf_counter() - start
        shutil.rmtree(out)
        return took

    tokens = sorted_loop(loaded, corpus, settings)  # warm-up (and the token count)
    naive_tokens = plain_loop(loaded, corpus, args.batch_size, settings.max_length)
    run_record(-1)
    plain, api, naive, ratios, naive_ratios = [], [], [], [], []
    for rep in range(args.reps):
        if rep % 2 == 0:
            a, b, n = run_sorted(), run_record(rep), run_plain()
        else:
            n, b, a = run_plain(), run_record(rep), run_sorted()
        plain.append(a)
        api.append(b)
        naive.append(n)
        ratios.append(a / b)
        naive_ratios.append(n / b)
        print(f"rep {rep}: same batches {a:.2f} s, record {b:.2f} s, ratio {a / b:.3f} "
              f"(naive loop {n:.2f} s, {n / b:.3f})", flush=True)  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "what": "ln.record (API, defaults, residual sums on, run folder written) vs a plain tokenise + body "
        "forward loop over the same batches; ratio = time(plain) / time(record), median of per-rep ratios",
        "model": args.model,
        "dtype": str(next(loaded.model.parameters()).dtype),
        "corpus": f"ntrex, {args.languages}, first {args.sentences} sentences each",
        "batch_size": args.batch_size,
        "tokens": tokens,
        "naive_loop_tokens": naive_tokens,
        "reps": args.reps,
        "plain_seconds": plain,
        "record_seconds": api,
        "naive_loop_seconds": naive,
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "ratio_vs_naive_loop": statistics.median(naive_ratios),
        "target": 0.95,
    }
    path = write_result(args.out or "record_api", result, load_before)
    print(f"ratio {result['ratio']:.3f} (target >= 0.95) -> {path}")


if __name__ == "__main__":
    main()
