"""Cost of the residual-stream sums that `record` adds for DiffMean, interleaved in one process.

  A  langneurons counting as before: Counter hooks + body forward
  B  the same plus the ResidualCounter (Σ h and Σ‖h‖ after every decoder layer)

Each repetition runs A B once over the same batches; the figure is the median ratio B/A of time.
Usage: python benchmarks/bench_residual.py --model llama|embedded [--reps 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import counting_runner, interleaved, load, token_batches, write_result  # noqa: E402

from langneurons.recording.counter import batch_statistics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama", choices=["llama", "embedded"])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    loaded, vocab = load(args.model)
    batches = token_batches(loaded, vocab, args.batches, args.batch_size, args.seq)
    counted = torch.ones(args.batch_size, args.seq, dtype=torch.bool)
    counted[:, 0] = False
    tokens = args.batches * args.batch_size * args.seq
    res = interleaved(
        {
            "counting": counting_runner(loaded, batches, counted, "act", batch_statistics),
            "counting+residual": counting_runner(loaded, batches, counted, "act", batch_statistics, residual=True),
        },
        args.reps,
        tokens,
    )
    ratios = [a / b for a, b in zip(res["counting"]["tok_s"], res["counting+residual"]["tok_s"], strict=True)]
    res["time_ratio_residual_over_counting"] = {"median": statistics.median(ratios), "per_rep": ratios}
    print(f"residual sums: time × {statistics.median(ratios):.4f} (median of {args.reps} interleaved pairs)")
    write_result(f"residual_{args.model}", {"model": args.model, "tokens_per_rep": tokens, **res})


if __name__ == "__main__":
    main()
