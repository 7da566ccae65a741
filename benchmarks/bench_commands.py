"""Throughput of each command's inner loop on the embedded model, and which part of the model bounds it.

One process, one model, the same NTREX sentences for every variant, interleaved repetitions, medians:

  record      `record`'s per-batch path (Counter hooks + body forward)          counted tokens / s
  similarity  `similarity`'s pooling (record_pooled, no file)                     counted tokens / s
  ppl_pass    one row of `ppl` (text_nll: full causal LM, log-softmax)            predicted tokens / s
  generate    `steer`'s generation (batch 8, greedy, KV cache, no intervention)   new tokens / s

and the split that says what bounds them: the body forward alone over the ppl batches, the output layer
(+ log-softmax) alone on the body's hidden states, and the output layer alone for the generation's
one-token steps (8 rows × max_new_tokens calls).

Usage: python benchmarks/bench_commands.py [--sentences 16] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402

from langneurons.data import load_corpus  # noqa: E402
from langneurons.data.prompts import load_prompts  # noqa: E402
from langneurons.evaluation.nll import text_nll  # noqa: E402
from langneurons.evaluation.steer import SteerSettings, generate  # noqa: E402
from langneurons.models.loading import load_model  # noqa: E402
from langneurons.recording.counter import Counter  # noqa: E402
from langneurons.recording.plan import encode, plan_units, unit_batches  # noqa: E402
from langneurons.recording.pooled import record_pooled  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--languages", default="en,fr,ru,zh")
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--name", default="commands")
    args = ap.parse_args()

    loaded = load_model("embedded", device="cpu")
    corpus = load_corpus("ntrex:dev", args.languages.split(","), args.sentences)
    tok = loaded.tokenizer
    body = loaded.adapter.body()
    units = plan_units(corpus, tok, batch_size=8, chunk_batches=8, max_length=512, count_bos=False)
    rec_batches = [
        b
        for u in units
        for b in unit_batches(corpus.texts(corpus.languages[u.lang])[u.start : u.stop], tok, 8, 512, False)
    ]
    counted = sum(int(b.counted.sum()) for b in rec_batches)
    ppl_batches = []  # the batches text_nll forms (max_length 256, as `ppl`)
    for lang in corpus.languages:
        texts = corpus.texts(lang)
        order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
        for i in range(0, len(order), 8):
            ppl_batches.append(encode(tok, [texts[j] for j in order[i : i + 8]], 256, False))
    predicted = sum(int(b.counted[:, 1:].sum()) for b in ppl_batches)
    prompts = load_prompts(None, "en")[:8]
    settings = SteerSettings(max_new_tokens=args.new_tokens)
    counter = Counter(loaded.adapter, "act", loaded.device)
    head = loaded.model.get_output_embeddings()
    hidden = []
    with torch.inference_mode():
        for b in ppl_batches:
            hidden.append(body(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)[0])
    step_hidden = torch.randn(8, 1, hidden[0].shape[-1])
    generated = {"tokens": 0}

    def record() -> int:
        with counter, torch.inference_mode():
            counter.reset()
            for b in rec_batches:
                counter.set_batch(b.counted)
                body(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)
        return counted

    def similarity() -> int:
        record_pooled(loaded, corpus, None, progress=False)
        return counted

    def ppl_pass() -> int:
        for lang in corpus.languages:
            text_nll(loaded, corpus.texts(lang), 8, 256)
        return predicted

    def body_only() -> int:
        with torch.inference_mode():
            for b in ppl_batches:
                body(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)
        return predicted

    def head_only() -> int:
        with torch.inference_mode():
            for h in hidden:
                logits = head(h)[:, :-1].float()
                torch.logsumexp(logits, dim=-1)
        return predicted

    def gen() -> int:
        with torch.inference_mode():
            out = generate(loaded, prompts, [], settings)
        generated["tokens"] = sum(len(g["ids"]) for g in out)
        return generated["tokens"]

    def head_steps() -> int:
        with torch.inference_mode():
            for _ in range(args.new_tokens):
                head(step_hidden)
        return 8 * args.new_tokens

    variants = {"record": record, "similarity": similarity, "ppl_pass": ppl_pass, "body_only": body_only,
                "head_only": head_only, "generate": gen, "head_steps": head_steps}  # fmt: skip
    for fn in variants.values():  # warm-up
        fn()
    rates: dict[str, list[float]] = {name: [] for name in variants}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(args.reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            units_done = fn()
            dt = time.perf_counter() - start
            seconds[name].append(dt)
            rates[name].append(units_done / dt)
        print(f"rep {rep}: " + "  ".join(f"{n} {rates[n][-1]:.1f}/s" for n in variants), flush=True)
    med = {name: statistics.median(v) for name, v in seconds.items()}
    summary = {
        "model": loaded.name,
        "corpus": f"ntrex:dev, {args.languages}, first {args.sentences} sentences each",
        "counted_tokens": counted,
        "predicted_tokens": predicted,
        "generation": f"8 default English prompts, greedy, {args.new_tokens} new tokens, batch 8",
        "reps": args.reps,
        "threads": torch.get_num_threads(),
        "tokens_per_s": {name: statistics.median(v) for name, v in rates.items()},
        "seconds": seconds,
        "ppl_share_body": med["body_only"] / med["ppl_pass"],
        "ppl_share_output_layer": med["head_only"] / med["ppl_pass"],
        "generate_share_output_layer": med["head_steps"] / med["generate"],
    }
    for name, r in summary["tokens_per_s"].items():
        print(f"{name:12s} {r:9.1f} tokens/s (median of {args.reps})")
    print({k: round(v, 3) for k, v in summary.items() if k.endswith(("_body", "_layer"))})
    write_result(args.name, summary)


if __name__ == "__main__":
    main()
