"""Shared bits of the benchmarks: models, token batches, timing, JSON results (none of this is a test)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"

# A LLaMA shape small enough for a shared 2-core CPU, big enough that the MLP dominates like in real models.
LLAMA_CPU = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                 num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048)  # fmt: skip
LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)  # fmt: skip


def llama_from_config(shape: dict, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """A LLaMA with random weights (no download); returns (LoadedModel, vocab_size)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from langneurons.models.loading import wrap_model

    config = AutoConfig.for_model("llama", **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return wrap_model(model, _DummyTokenizer(), f"llama-config-{shape['hidden_size']}"), shape["vocab_size"]


class _DummyTokenizer:
    """Enough of a tokenizer for wrap_model: benchmarks feed token ids directly."""

    padding_side = "right"
    pad_token_id = 0
    pad_token = "<pad>"
    bos_token_id = 1
    eos_token = "</s>"
    unk_token = "<unk>"


def load(name: str):
    """``embedded`` (the GGUF Gemma, if its loader is there) or ``llama`` (config, random weights)."""
    if name == "embedded":
        from langneurons.models.loading import load_model

        loaded = load_model("embedded", device="cpu")
        return loaded, len(loaded.tokenizer)
    return llama_from_config(LLAMA_CPU)


def token_batches(loaded, vocab: int, n: int, batch_size: int, seq: int, device="cpu") -> list[dict]:
    """``n`` full batches of ``batch_size × seq`` tokens: real NTREX text when the model has a tokenizer."""
    gen = torch.Generator().manual_seed(0)
    ids = None
    if not isinstance(loaded.tokenizer, _DummyTokenizer):
        from langneurons.data import load_corpus

        corpus = load_corpus("ntrex", ["en", "fr", "ru", "zh", "de", "ja"], 200)
        text = " ".join(t for lang in corpus.languages for t in corpus.texts(lang))
        stream = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        need = n * batch_size * seq
        ids = torch.tensor((stream * (need // len(stream) + 1))[:need]).view(n, batch_size, seq)
    if ids is None:
        ids = torch.randint(100, vocab, (n, batch_size, seq), generator=gen)
    return [
        {
            "input_ids": ids[i].to(device),
            "attention_mask": torch.ones(batch_size, seq, dtype=torch.long, device=device),
        }
        for i in range(n)
    ]


def counting_runner(loaded, batches: list[dict], counted: torch.Tensor, site: str, update, residual: bool = False):
    """What `record` runs per batch (Counter hooks + body forward) over ``batches``; returns the partial."""
    from langneurons.recording.counter import Counter

    counter = Counter(loaded.adapter, site, loaded.device, update, residual=residual)
    body = loaded.adapter.body()

    def run():
        counter.reset()
        with counter, torch.inference_mode():
            for b in batches:
                counter.set_batch(counted)
                body(**b, use_cache=False)
        return counter.partial

    return run


def timed(fn, sync=None) -> float:
    if sync:
        sync()
    start = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - start


def interleaved(variants: dict, reps: int, tokens: int, sync=None) -> dict:
    """Run each variant once per repetition (A B C A B C ...); tokens/s per repetition and the median."""
    for fn in variants.values():  # warm-up
        fn()
    runs = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            runs[name].append(tokens / timed(fn, sync))
    return {name: {"median_tok_s": statistics.median(v), "tok_s": v} for name, v in runs.items()}


def machine() -> dict:
    import transformers

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_result(name: str | Path, data: dict, load_before: tuple[float, ...] | None = None) -> Path:
    """Write ``data`` and the machine it ran on to ``results/<name>.json`` (or to the path ``name``); with
    ``load_before`` also the load average before and after the run (a busy machine skews timings)."""
    path = name if isinstance(name, Path) else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    info = machine()
    if load_before is not None:
        info["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
    path.write_text(json.dumps(data | {"machine": info}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path
