"""Base vs aligned, offline: Zhang et al.'s experiment end to end at a tiny scale.

1. Fine-tune the model with LoRA (peft) on question-translation data built from NTREX: "Translate into X."
   prompts for a few languages (``--train``), answers = the NTREX reference lines (identification split,
   lines 0–999), loss on the answer's tokens only.
2. Save the adapter (``OUT/adapter``; ``--model OUT/adapter`` loads the base with it merged).
3. Record the base and the tuned model on the same held-out prompt/response pairs (dev split, every
   ``--eval`` language, ``--count response``), identify LAPE neurons in both, and ``compare`` them: per
   layer the class moves (specific ↔ related ↔ agnostic) and, for the languages *not* in the fine-tuning
   data, whether they moved too ("spontaneous multilingual alignment").

    python examples/alignment.py --out runs/alignment                       # embedded Gemma, ~minutes on CPU
    python examples/alignment.py --out runs/a --steps 200 --train fr,de --eval en,fr,de,es,ru,zh

``--train-file`` / ``--eval-file`` (prompt/response ``.jsonl``) replace the NTREX-built data (the tests
use them with a tiny model). The scale is tiny — a few hundred LoRA steps on one small model — so read
what moves as an illustration of the workflow, not as a replication.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import langneurons as ln
from langneurons.data.ntrex import ntrex_lines
from langneurons.data.tasks import NAMES
from langneurons.recording.spans import token_spans


def translation_pairs(langs: list[str], split: str, n: int, longest: int = 160) -> list[dict]:
    """"Translate into X." records from NTREX: English source, the X reference as the response."""
    english = ntrex_lines("en", split)
    out = []
    for lang in langs:
        target = ntrex_lines(lang, split)
        kept = [i for i, (_, e) in enumerate(english) if len(e) <= longest and len(target[i][1]) <= longest][:n]
        for i in kept:
            prompt = f"Translate into {NAMES[lang]}.\nEnglish: {english[i][1]}\n{NAMES[lang]}:"
            out.append({"lang": lang, "id": english[i][0], "prompt": prompt, "response": " " + target[i][1]})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def train_lora(model, records: list[dict], steps: int, batch_size: int, lr: float, rank: int, seed: int):
    """LoRA on every linear layer; cross-entropy on the response's tokens (the prompt's are masked)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    tok = model.tokenizer
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")  # fmt: skip
    peft_model = get_peft_model(model.model, config)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    examples = []
    for r in records:
        text = r["prompt"] + r["response"]
        ids = tok(text)["input_ids"][:256]
        _, (start, stop) = token_spans(tok, text, (0, len(r["prompt"]), len(r["prompt"]), len(text)), False)
        labels = [t if start <= i < stop else -100 for i, t in enumerate(ids)]
        examples.append((ids, labels))
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    losses = []
    peft_model.train()
    for step in range(steps):
        chosen = [examples[order[(step * batch_size + j) % len(order)]] for j in range(batch_size)]
        width = max(len(ids) for ids, _ in chosen)
        pad = tok.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in chosen])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in chosen])
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in chosen])
        loss = peft_model(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device),
                          labels=labels.to(model.device)).loss  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"  step {step + 1}/{steps}: loss {losses[-1]:.3f}", flush=True)
    peft_model.eval()
    return peft_model, losses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--train", default="fr,de", help="languages of the fine-tuning data")
    parser.add_argument("--eval", default="en,fr,de,es,ru,zh", help="languages recorded and compared")
    parser.add_argument("--train-sentences", type=int, default=200)
    parser.add_argument("--eval-sentences", type=int, default=40)
    parser.add_argument("--train-file", type=Path, default=None)
    parser.add_argument("--eval-file", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--top-rate", type=float, default=0.01, help="LAPE's top rate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    train_langs, eval_langs = args.train.split(","), args.eval.split(",")
    started = time.time()

    if args.train_file is None:
        train = translation_pairs(train_langs, "identify", args.train_sentences)
    else:
        train = [json.loads(line) for line in args.train_file.read_text(encoding="utf-8").splitlines() if line]
    eval_file = args.eval_file or write_jsonl(out / "eval.jsonl", translation_pairs(eval_langs, "dev",
                                                                                   args.eval_sentences))
    write_jsonl(out / "train.jsonl", train)
    print(f"fine-tuning data: {len(train)} pairs ({','.join(sorted({r['lang'] for r in train}))})", flush=True)

    base = ln.load_model(args.model, device="cpu", dtype="float32")
    eval_corpus = ln.load_corpus(str(eval_file))
    base_stats = ln.record(base, eval_corpus, out / "base", count="response", residual=False, overwrite=True,
                           reuse=False, progress=False)  # fmt: skip
    ln.identify(base_stats, "lape", out=out / "base" / "lape.json", top_rate=args.top_rate)

    t0 = time.time()
    peft_model, losses = train_lora(base, train, args.steps, args.batch_size, args.lr, args.rank, args.seed)
    train_seconds = time.time() - t0
    peft_model.save_pretrained(str(out / "adapter"))
    config_path = out / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = args.model  # the spec langneurons loads the base from
    config_path.write_text(json.dumps(config, indent=2))
    del peft_model, base

    aligned = ln.load_model(str(out / "adapter"), device="cpu", dtype="float32")
    aligned_stats = ln.record(aligned, eval_corpus, out / "aligned", count="response", residual=False,
                              overwrite=True, reuse=False, progress=False)  # fmt: skip
    ln.identify(aligned_stats, "lape", out=out / "aligned" / "lape.json", top_rate=args.top_rate)
    cmd = [sys.executable, "-m", "langneurons", "compare", str(out / "base"), str(out / "aligned"),
           "-o", str(out / "compare"), "--overwrite"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    summary = summarise(out, train_langs, losses, train_seconds, time.time() - started)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


def summarise(out: Path, train_langs: list[str], losses: list[float], train_seconds: float, wall: float) -> dict:
    """Per language: LAPE pairs before/after, kept share (overlap), and whether it was in the training data."""
    base = ln.load_neurons(out / "base" / "lape.json")
    aligned = ln.load_neurons(out / "aligned" / "lape.json")
    compare = json.loads((out / "compare" / "compare.json").read_text())

    def pairs(ns, lang: str) -> set[tuple[int, int]]:
        return set(ns.pairs(lang))

    per_language = {}
    for lang in base.languages:
        a, b = pairs(base, lang), pairs(aligned, lang)
        per_language[lang] = {
            "in_fine_tuning": lang in train_langs,
            "base": len(a),
            "aligned": len(b),
            "kept": len(a & b),
            "jaccard": round(len(a & b) / max(1, len(a | b)), 3),
        }
    versus = next(iter(next(iter(compare["sets"].values()))["versus_baseline"].values()))
    return {
        "loss_first": round(losses[0], 3),
        "loss_last": round(sum(losses[-5:]) / len(losses[-5:]), 3),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "per_language": per_language,
        "class_transitions": versus.get("class_transitions"),
        "depth_shift": versus.get("depth_shift"),
    }


if __name__ == "__main__":
    main()
