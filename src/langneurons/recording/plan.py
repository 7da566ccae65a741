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
    text: torch.Tensor | None = None  # [B, T] int64: index of the unit's text each position belongs to


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
        batch = encode(tokenizer, [texts[j] for j in order[i : i + batch_size]], max_length, count_bos)
        batch.text = torch.tensor(order[i : i + batch_size]).view(-1, 1).expand_as(batch.counted)
        yield batch


def packed_batches(texts: list[str], tokenizer, batch_size: int, max_length: int, count_bos: bool):
    """A unit's texts as one token stream cut into full rows of ``max_length`` (``--packing``).

    Texts are joined with EOS (never counted); each row starts with BOS when the tokenizer has one.
    No text is truncated and only the unit's last row is padded, but a token's context now includes
    earlier texts of the same language: the statistics differ from unpacked recording.
    """
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    stream: list[int] = []
    real: list[bool] = []
    source: list[int] = []  # which text each stream token comes from (EOS: the text it follows)
    for t, ids in enumerate(tokenizer(texts, add_special_tokens=False)["input_ids"]):
        if stream and eos is not None:
            stream.append(eos)
            real.append(False)
            source.append(t - 1)
        stream += ids
        real += [True] * len(ids)
        source += [t] * len(ids)
    width = max_length - (bos is not None)
    if width <= 0:
        raise LangneuronsError("--max-length is too small for packing")
    starts = list(range(0, len(stream), width))
    for i in range(0, len(starts), batch_size):
        rows = starts[i : i + batch_size]
        length = max(min(width, len(stream) - s) for s in rows) + (bos is not None)
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        counted = torch.zeros((len(rows), length), dtype=torch.bool)
        text = torch.zeros((len(rows), length), dtype=torch.long)
        for r, s in enumerate(rows):
            chunk, mask = stream[s : s + width], real[s : s + width]
            offset = 0
            if bos is not None:
                input_ids[r, 0], attention[r, 0], counted[r, 0], offset = bos, 1, count_bos, 1
            input_ids[r, offset : offset + len(chunk)] = torch.tensor(chunk, dtype=torch.long)
            attention[r, offset : offset + len(chunk)] = 1
            counted[r, offset : offset + len(chunk)] = torch.tensor(mask, dtype=torch.bool)
            text[r, offset : offset + len(chunk)] = torch.tensor(source[s : s + width], dtype=torch.long)
        yield Batch(input_ids, attention, counted, text)
