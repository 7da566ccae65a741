"""Sentence-level recording: one mean-pooled activation vector per sentence and layer (docs/methods.md §7).

File pair in a run directory (the JSON is written last; its presence marks a finished file):
  pooled.safetensors  ``pooled`` float32/float16 [N, L, F]: mean over the sentence's counted tokens
                      (real text; no padding, no BOS/EOS unless asked) at the capture site; ``n_tokens``
                      int64 [N]: counted tokens per sentence (0 → a zero vector)
  pooled.json         row order (``ids``, ``row_languages``), languages, model, revision, site, corpus and
                      its sha256, settings, versions: row i of ``pooled`` is sentence ``ids[i]`` of
                      language ``row_languages[i]``, so parallel data keeps its alignment.

One pooling rule (mean) for every family; the reference code sums for LLaMA and averages for BLOOM.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.pooled import POOLED_FILE, POOLED_MANIFEST, Pooled, load_pooled, save_pooled
from langneurons.formats.provenance import now, software
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.recording.distributed import World, gather_to_main, share
from langneurons.recording.plan import encode
from langneurons.recording.spans import check_count, counted_description, encode_spans

STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def record_pooled(
    loaded: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    *,
    site: str = "act",
    batch_size: int = 8,
    max_length: int = 512,
    count_bos: bool = False,
    store_dtype: str = "float32",
    progress: bool = True,
    overwrite: bool = False,
    world: World | None = None,
    count: str = "all",
) -> Pooled | None:
    """Mean-pool every sentence of ``corpus`` at ``site`` per layer; write ``out``/pooled.* when given.

    ``count`` (prompt/response corpora, docs/responses.md): pool over all, the response's or the prompt's
    tokens only.

    Under torchrun (``world`` of several processes) the batches are shared out round-robin and rank 0
    gathers the rows, writes the file and returns it (the other ranks return None); every batch is
    the same as in one process, so the file is identical.
    """
    world = world or World()
    if batch_size <= 0:
        raise LangneuronsError("--batch-size must be positive")
    if max_length <= 0 or max_length > loaded.max_length:
        raise LangneuronsError(
            f"--max-length must be in 1..{loaded.max_length} for this model, got {max_length}"
        )
    if store_dtype not in STORE_DTYPES:
        raise LangneuronsError(f"unknown storage dtype {store_dtype!r} (use float32 or float16)")
    if out is not None:
        out = Path(out)
        if (out / POOLED_MANIFEST).exists() and not overwrite:
            raise LangneuronsError(
                f"{out} already holds pooled activations; pass --overwrite to replace them"
            )
        if out.exists() and not out.is_dir():
            raise LangneuronsError(f"{out} exists and is not a directory")
    check_count(corpus, count)
    adapter = loaded.adapter
    rows = [(lang, sid, text) for lang in corpus.languages for sid, text in corpus.items[lang]]
    row_spans = None if corpus.spans is None else [span for lang in corpus.languages for span in corpus.spans[lang]]
    n, n_layers, width = len(rows), adapter.num_layers, adapter.intermediate_size
    pooled = torch.zeros(n, n_layers, width, dtype=STORE_DTYPES[store_dtype])
    n_tokens = torch.zeros(n, dtype=torch.int64)
    token_lengths = [
        len(ids)
        for ids in loaded.tokenizer([r[2] for r in rows], truncation=True, max_length=max_length)["input_ids"]
    ]
    order = sorted(range(n), key=lambda i: (-token_lengths[i], i))  # longest first, by tokens: least padding
    state: dict[str, Any] = {}

    def observe(layer: int, act: torch.Tensor) -> None:
        weights = state["weights"]  # [B, T] float32: 1/n on counted tokens, else 0
        weights = weights if weights.device == act.device else weights.to(act.device)
        x = act.reshape(*weights.shape, act.shape[-1]).to(torch.float32)
        state["out"][:, layer] = torch.einsum("bt,btf->bf", weights, x).to("cpu", pooled.dtype)
        return None

    def observe_block(layer: int, x: torch.Tensor, where) -> None:
        """MoE: a block of routed rows (or a shared expert / dense layer) into its columns of the mean."""
        if where.tokens is None:
            return observe_dense_block(layer, x, where.start)
        weights = state["weights"].to(x.device).reshape(-1)
        batch, g = state["weights"].shape[0], where.n_groups
        rows = (where.tokens // state["weights"].shape[1]) * g + where.groups  # (sentence, expert) pairs
        acc = torch.zeros(batch * g, x.shape[1], dtype=torch.float32, device=x.device)
        acc.index_add_(0, rows, x.to(torch.float32) * weights.index_select(0, where.tokens).unsqueeze(1))
        width = g * x.shape[1]
        state["out"][:, layer, where.start : where.start + width] += acc.reshape(batch, width).to("cpu", pooled.dtype)
        return None

    def observe_dense_block(layer: int, x: torch.Tensor, start: int) -> None:
        weights = state["weights"]
        weights = weights if weights.device == x.device else weights.to(x.device)
        mean = torch.einsum("bt,btf->bf", weights, x.reshape(*weights.shape, x.shape[-1]).to(torch.float32))
        state["out"][:, layer, start : start + x.shape[1]] += mean.to("cpu", pooled.dtype)
        return None

    started = time.time()
    body = adapter.body()
    handles = adapter.hook_blocks(site, observe_block) if adapter.is_moe else adapter.hook(site, observe)
    bar = progress_bar(progress and world.is_main, "sentences")
    starts = [range(0, n, batch_size)[i] for i in share(len(range(0, n, batch_size)), world)]
    mine: list[int] = []
    seen_tokens = 0
    try:
        with bar, torch.inference_mode():
            task = bar.add_task("pooling sentences", total=sum(len(order[b : b + batch_size]) for b in starts),
                                tokens=0)  # fmt: skip
            for start in starts:
                chunk = order[start : start + batch_size]
                mine += chunk
                if row_spans is None:
                    batch = encode(loaded.tokenizer, [rows[i][2] for i in chunk], max_length, count_bos)
                else:
                    batch = encode_spans(loaded.tokenizer, [rows[i][2] for i in chunk], [row_spans[i] for i in chunk],
                                         count, corpus.templated, max_length, count_bos)  # fmt: skip
                counted = batch.counted.to(torch.float32)
                lengths = counted.sum(1)
                state["weights"] = (counted / lengths.clamp_min(1).unsqueeze(1)).to(loaded.device)
                state["out"] = torch.zeros(len(chunk), n_layers, width, dtype=pooled.dtype)
                body(
                    input_ids=batch.input_ids.to(loaded.device),
                    attention_mask=batch.attention_mask.to(loaded.device),
                    use_cache=False,
                )
                index = torch.tensor(chunk, dtype=torch.long)
                pooled[index] = state["out"]
                n_tokens[index] = lengths.to(torch.int64)
                seen_tokens += int(lengths.sum())
                bar.update(task, advance=len(chunk), tokens=seen_tokens)
    finally:
        for handle in handles:
            handle.remove()
    if world.size > 1:
        index = torch.tensor(mine, dtype=torch.long)
        parts = gather_to_main((index, pooled[index], n_tokens[index]), world)
        if parts is None:
            return None
        for index, rows_, counts in parts:
            pooled[index], n_tokens[index] = rows_, counts
    manifest = _manifest(loaded, corpus, site, batch_size, max_length, count_bos, store_dtype)
    if corpus.spans is not None:
        manifest["counted"] = counted_description(count, corpus.templated) or manifest["counted"]
        manifest["settings"]["count"] = count
    manifest["wall_seconds"] = round(time.time() - started, 3)
    manifest["processes"] = world.size
    manifest["empty_sentences"] = int((n_tokens == 0).sum())
    result = Pooled(pooled, [r[1] for r in rows], [r[0] for r in rows], n_tokens, manifest)
    if out is not None:
        save_pooled(out, result)
    return result


def _manifest(loaded, corpus, site, batch_size, max_length, count_bos, store_dtype) -> dict[str, Any]:
    return {
        "languages": corpus.languages,
        **loaded.describe(),
        "site": site,
        "pooling": "mean over counted tokens (every family)",
        "counted": "every real text token" + (" and BOS" if count_bos else "; BOS, EOS and padding excluded"),
        "store_dtype": store_dtype,
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256(),
        "id_source": corpus.id_source,
        "sentences": {lang: len(corpus.items[lang]) for lang in corpus.languages},
        "settings": {"batch_size": batch_size, "max_length": max_length, "count_bos": count_bos},
        "created": now(),
        **software(),
    }



__all__ = ["POOLED_FILE", "POOLED_MANIFEST", "Pooled", "load_pooled", "record_pooled", "save_pooled"]
