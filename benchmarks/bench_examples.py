"""The cost of `record --examples K`: what `record` runs per batch with and without the top-K example tracker,
interleaved in one process.

  A  counting: the Counter hooks + body forward (what `record` runs per batch)
  B  counting + examples: the same, plus the ExampleTracker keeping each neuron's top K per language

Each repetition runs A then B over the same batches; the ratio is B's tokens/s over A's (target ≥ 0.9).
Usage: python benchmarks/bench_examples.py --model embedded|llama|llama7b [--k 16] [--reps 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import LLAMA_7B, interleaved, llama_from_config, load, token_batches, write_result  # noqa: E402

from langneurons.recording.counter import Counter, batch_statistics  # noqa: E402
from langneurons.recording.examples import ExampleTracker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded", choices=["embedded", "llama", "llama7b"])
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default=None, help="results/<name>.json (default: examples_<model>)")
    args = ap.parse_args()

    if args.model == "llama7b":
        dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
        loaded, vocab = llama_from_config(LLAMA_7B, dtype=dtype, device=args.device)
    else:
        loaded, vocab = load(args.model)
    device = loaded.device
    batches = token_batches(loaded, vocab, args.batches, args.batch_size, args.seq, device=device)
    tokens = args.batches * args.batch_size * args.seq
    body = loaded.adapter.body()
    counted = torch.ones(args.batch_size, args.seq, dtype=torch.bool)
    counted[:, 0] = False  # BOS is not counted
    sentence = torch.arange(args.batch_size).view(-1, 1).expand(args.batch_size, args.seq)
    position = torch.arange(args.seq).expand(args.batch_size, args.seq)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def runner(k: int):
        def run():
            counter = Counter(loaded.adapter, "act", device, batch_statistics)
            tracker = ExampleTracker(loaded.adapter, "act", k, 1) if k else None
            with counter, tracker or _Null(), torch.inference_mode():
                for i, b in enumerate(batches):
                    counter.set_batch(counted)
                    if tracker is not None:
                        tracker.set_batch(0, counted, sentence + i * args.batch_size, position)
                    body(**b, use_cache=False)
            return counter.partial

        return run

    variants = {"record": runner(0), "record_examples": runner(args.k)}
    cpu: dict[str, list[float]] = {name: [] for name in variants}  # process CPU seconds: robust on a busy host

    def cpu_timed(name, fn):
        def run():
            start = time.process_time()
            out = fn()
            cpu[name].append(time.process_time() - start)
            return out

        return run

    res = interleaved({name: cpu_timed(name, fn) for name, fn in variants.items()}, args.reps, tokens, sync)
    for name in cpu:
        cpu[name] = cpu[name][1:]  # drop the warm-up
        res[name]["cpu_seconds"] = cpu[name]
    ratio = [b / a for a, b in zip(res["record"]["tok_s"], res["record_examples"]["tok_s"], strict=True)]
    cpu_ratio = [a / b for a, b in zip(cpu["record"], cpu["record_examples"], strict=True)]
    summary = {
        "model": loaded.name,
        "layers": loaded.adapter.num_layers,
        "neurons_per_layer": loaded.adapter.intermediate_size,
        "dtype": str(loaded.dtype),
        "device": str(device),
        "k": args.k,
        "batch": f"{args.batches} x {args.batch_size} x {args.seq} tokens",
        "reps": args.reps,
        "results": res,
        "ratio_median": statistics.median(ratio),  # examples / plain, per repetition
        "ratio_of_medians": res["record_examples"]["median_tok_s"] / res["record"]["median_tok_s"],
        "cpu_ratio_median": statistics.median(cpu_ratio),  # CPU seconds without / with, per repetition
    }
    print(f"{loaded.name}: record --examples {args.k} at {summary['ratio_median']:.3f} of record by wall time, "
          f"{summary['cpu_ratio_median']:.3f} by CPU time "
          f"({res['record']['median_tok_s']:.0f} vs {res['record_examples']['median_tok_s']:.0f} tok/s)")  # fmt: skip
    write_result(args.name or f"examples_{args.model}", summary)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


if __name__ == "__main__":
    main()
