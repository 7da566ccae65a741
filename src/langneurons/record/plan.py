"""Split a corpus into a fixed, deterministic list of work units (chunks of batches of one language).

Units are the grain of everything after: each is counted into its own partial statistics, the
partials are added to the totals in unit order (so 1 or N processes give bit-identical sums),
checkpoints fall between units, and ranks take units round-robin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError


@dataclass(frozen=True)
class Unit:
    """Sentences [start, stop) of language index ``lang`` (in corpus order)."""

    lang: int
    start: int
    stop: int


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    counted: torch.Tensor  # [B, T] bool: tokens whose activations are counted


def encode(tokenizer, texts: list[str], max_length: int, count_bos: bool) -> Batch:
    """Tokenize (right padding, truncation) and mark counted tokens: real text, BOS only if asked."""
    enc = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    counted = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
    if count_bos and tokenizer.bos_token_id is not None:
        counted |= enc["input_ids"].eq(tokenizer.bos_token_id) & enc["attention_mask"].bool()
    return Batch(enc["input_ids"], enc["attention_mask"], counted)


def counted_lengths(tokenizer, texts: list[str], max_length: int, count_bos: bool) -> list[int]:
    """Counted tokens per text, without keeping any token ids (for token budgets)."""
    lengths: list[int] = []
    for i in range(0, len(texts), 1024):
        enc = encode(tokenizer, texts[i : i + 1024], max_length, count_bos)
        lengths += enc.counted.sum(1).tolist()
    return lengths


def plan_units(
    corpus: Corpus,
    tokenizer,
    *,
    batch_size: int,
    chunk_batches: int,
    max_length: int,
    count_bos: bool,
    tokens: int | None = None,
) -> list[Unit]:
    """Units of ``batch_size * chunk_batches`` sentences; a token budget cuts each language early."""
    if batch_size <= 0 or chunk_batches <= 0:
        raise LangneuronsError("--batch-size and --chunk-batches must be positive")
    if tokens is not None and tokens <= 0:
        raise LangneuronsError(f"--tokens must be positive, got {tokens}")
    units = []
    per_unit = batch_size * chunk_batches
    for k, lang in enumerate(corpus.languages):
        n = len(corpus.items[lang])
        if tokens is not None:
            lengths = counted_lengths(tokenizer, corpus.texts(lang), max_length, count_bos)
            total, n = 0, 0
            while n < len(lengths) and total < tokens:
                total, n = total + lengths[n], n + 1
        units += [Unit(k, s, min(s + per_unit, n)) for s in range(0, n, per_unit)]
    return units


def unit_batches(texts: list[str], tokenizer, batch_size: int, max_length: int, count_bos: bool):
    """A unit's batches, texts sorted by length (less padding); the order is deterministic."""
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    for i in range(0, len(order), batch_size):
        yield encode(tokenizer, [texts[j] for j in order[i : i + batch_size]], max_length, count_bos)
