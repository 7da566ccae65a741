"""Peak memory of `record` vs corpus size (1×, 2×, 4× sentences): each size in a fresh process.

The model is a small LLaMA from a config (random weights) with the tests' word tokenizer, so the
curve shows what the recorder itself keeps, not the model. Target: flat (activations are reduced
per batch; only the [K, L, F] totals and the corpus text stay in memory).
Usage: python benchmarks/bench_memory.py [--base 2000] [--factors 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


def child(model_dir: str, corpus_dir: str, out: str) -> None:
    from langneurons.data import load_corpus
    from langneurons.models.loading import load_model
    from langneurons.recording import RecordSettings, record

    start = time.time()
    loaded = load_model(model_dir, device="cpu")
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = record(loaded, load_corpus(corpus_dir), out, RecordSettings(batch_size=16, max_length=64),
                   progress=False)  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mib": peak / 1024, "after_model_load_rss_mib": after_load / 1024,
                      "tokens": int(stats.n_tokens.sum()), "seconds": time.time() - start}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=2000, help="sentences per language at 1×")
    ap.add_argument("--factors", default="1,2,4")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)

    from common import write_result
    from tiny import COMMON, WORDS, word_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    tmp = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    config = AutoConfig.for_model("llama", **COMMON, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                  num_attention_heads=4, max_position_embeddings=512)  # fmt: skip
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp / "model")
    word_tokenizer().save_pretrained(tmp / "model")
    rows = []
    for factor in [int(f) for f in args.factors.split(",")]:
        corpus = tmp / f"corpus{factor}"
        corpus.mkdir()
        rng = random.Random(0)
        for lang in ("aa", "bb"):
            words = WORDS[lang] + WORDS["shared"]
            lines = [" ".join(rng.choices(words, k=rng.randint(5, 40))) for _ in range(args.base * factor)]
            (corpus / f"{lang}.txt").write_text("\n".join(lines) + "\n")
        proc = subprocess.run([sys.executable, __file__, "--child", str(tmp / "model"), str(corpus),
                               str(tmp / f"run{factor}")], capture_output=True, text=True, check=True,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})  # fmt: skip
        row = {
            "factor": factor,
            "sentences_per_language": args.base * factor,
            **json.loads(proc.stdout.splitlines()[-1]),
        }
        print(row)
        rows.append(row)
    growth = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    write_result("memory", {"model": "llama-config h256 L4 F1024 (random weights), word tokenizer",
                            "batch_size": 16, "max_length": 64, "rows": rows, "threads": 1,
                            "peak_growth_largest_vs_smallest": growth})  # fmt: skip


if __name__ == "__main__":
    main()
