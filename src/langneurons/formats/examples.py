"""The top-examples file: ``RUN_DIR/examples.safetensors`` (``record --examples K``; docs/formats.md).

Tensors (language order = the metadata's ``languages``; C = neurons per layer that were tracked):
  value    float32 [Lang, L, C, K]  the K largest activations of each neuron over that language's counted
                                    tokens, in order (NaN where the language has fewer than K tokens)
  sentence int32   [Lang, L, C, K]  index of the example's sentence among the language's counted sentences
                                    (corpus order; for a merged run, counting through the merged parts in
                                    order); −1 for an empty slot
  position int32   [Lang, L, C, K]  index of the token in the token ids the model saw (BOS = 0)
  columns  int64   [L, C]           only when not every neuron was tracked (a targeted pass): the neuron
                                    index of each column, −1 for padding
Metadata ``info`` (JSON): format, k, languages, site, order, sentences (per language), provenance.

Order: value descending, ties by (sentence, position) ascending: exact, so the lists are the same for any
batch size, shard, rank count, resumed run or ``merge``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import write_safetensors

EXAMPLES_FILE = "examples.safetensors"
EXAMPLES_FORMAT = "langneurons-examples/1"
ORDER = "value descending, then sentence ascending, then position ascending"
POSITION_BITS = 20
EMPTY_KEY = torch.iinfo(torch.int64).max


def merge_topk(values: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` rows along dim 0 of candidates ``values``/``keys`` [M, ...] in the total order
    (value ↓, key ↑); ``key = sentence · 2**20 + position``, EMPTY_KEY for an empty slot."""
    order = torch.argsort(keys, dim=0, stable=True)
    values, keys = values.gather(0, order), keys.gather(0, order)
    filled = torch.where(keys == EMPTY_KEY, float("-inf"), values.nan_to_num(nan=float("-inf")))
    order = torch.argsort(filled, dim=0, descending=True, stable=True)[:k]
    return values.gather(0, order), keys.gather(0, order)


@dataclass
class Examples:
    """Top activating examples of a run (or of a targeted pass over some neurons)."""

    value: torch.Tensor
    sentence: torch.Tensor
    position: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    columns: torch.Tensor | None = None  # [L, C] neuron of each column; None: column c is neuron c

    @property
    def k(self) -> int:
        return int(self.value.shape[-1])

    @property
    def languages(self) -> list[str]:
        return list(self.info["languages"])

    def column(self, layer: int, neuron: int) -> int | None:
        """The column holding ``neuron`` of ``layer`` (None: not tracked)."""
        if self.columns is None:
            return neuron if 0 <= neuron < self.value.shape[2] else None
        hit = (self.columns[layer] == neuron).nonzero()
        return int(hit[0, 0]) if hit.numel() else None

    def top(self, lang: str, layer: int, neuron: int) -> list[tuple[float, int, int]] | None:
        """``(value, sentence, position)`` of ``neuron``'s examples on ``lang``, best first (None: not kept)."""
        col = self.column(layer, neuron)
        if col is None or lang not in self.languages:
            return None
        k = self.languages.index(lang)
        out = []
        for v, s, p in zip(self.value[k, layer, col].tolist(), self.sentence[k, layer, col].tolist(),
                           self.position[k, layer, col].tolist(), strict=True):  # fmt: skip
            if s >= 0:
                out.append((float(v), int(s), int(p)))
        return out

    def keys(self) -> torch.Tensor:
        empty = self.sentence < 0
        keys = (self.sentence.to(torch.int64) << POSITION_BITS) + self.position.to(torch.int64)
        return torch.where(empty, EMPTY_KEY, keys)


def from_keys(values: torch.Tensor, keys: torch.Tensor, info: dict[str, Any], columns=None) -> Examples:
    """An :class:`Examples` from float32 values and int64 keys [..., K] (EMPTY_KEY: empty)."""
    empty = keys == EMPTY_KEY
    values = torch.where(empty, float("nan"), values.to(torch.float32))
    sentence = torch.where(empty, -1, keys >> POSITION_BITS).to(torch.int32)
    position = torch.where(empty, -1, keys & ((1 << POSITION_BITS) - 1)).to(torch.int32)
    return Examples(values, sentence, position, info, columns)


def save_examples(path: str | Path, examples: Examples) -> Path:
    """Write ``examples`` atomically (a run folder gets ``examples.safetensors``)."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / EXAMPLES_FILE
    info = {"format": EXAMPLES_FORMAT, "order": ORDER, **examples.info, "k": examples.k}
    tensors = {"value": examples.value.contiguous(), "sentence": examples.sentence.contiguous(),
               "position": examples.position.contiguous()}  # fmt: skip
    if examples.columns is not None:
        tensors["columns"] = examples.columns.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, tensors, metadata={"info": json.dumps(info)})
    return path


def load_examples(path: str | Path) -> Examples:
    """Read an examples file (or ``RUN_DIR/examples.safetensors``); a one-line error if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / EXAMPLES_FILE
    if not path.is_file():
        raise LangneuronsError(f"{path} does not exist (record with --examples K to keep top examples)")
    try:
        with safe_open(str(path), "pt") as fh:
            info = json.loads(fh.metadata()["info"])
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise LangneuronsError(f"{path} is not a readable examples file ({exc.__class__.__name__})") from None
    if info.get("format") != EXAMPLES_FORMAT:
        raise LangneuronsError(f"{path} is not an examples file (format {info.get('format')!r})")
    return Examples(tensors["value"], tensors["sentence"], tensors["position"], info, tensors.get("columns"))


def merge_examples(parts: list[tuple[Examples, dict[str, int]]], languages: list[str]) -> Examples:
    """Merge the examples of runs being merged (each with its counted sentences per language): a sentence
    index counts on through the parts in order, so the result equals one run over all the text."""
    if len({part.k for part, _ in parts}) > 1:
        raise LangneuronsError("cannot merge examples kept with different --examples K")
    k = parts[0][0].k
    first = parts[0][0]
    if any(p.columns is not None for p, _ in parts):
        raise LangneuronsError("cannot merge examples of a targeted pass (record --examples keeps every neuron)")
    shape = (len(languages), *first.value.shape[1:3], 0)
    values = [torch.empty(shape, dtype=torch.float32)]
    keys = [torch.empty(shape, dtype=torch.int64)]
    offsets = dict.fromkeys(languages, 0)
    for part, sentences in parts:
        v = torch.full((len(languages), *part.value.shape[1:]), float("nan"))
        kk = torch.full((len(languages), *part.value.shape[1:]), EMPTY_KEY, dtype=torch.int64)
        own = part.keys()
        for i, lang in enumerate(part.languages):
            j = languages.index(lang)
            shifted = own[i] + (offsets[lang] << POSITION_BITS)
            kk[j] = torch.where(own[i] == EMPTY_KEY, EMPTY_KEY, shifted)
            v[j] = part.value[i]
            offsets[lang] += int(sentences.get(lang, 0))
        values.append(v)
        keys.append(kk)
    merged_v, merged_k = merge_topk(torch.cat(values, -1).movedim(-1, 0), torch.cat(keys, -1).movedim(-1, 0), k)
    info = {key: val for key, val in first.info.items() if key not in ("format", "order", "k")}
    info |= {"languages": languages, "sentences": {lang: offsets[lang] for lang in languages}, "merged": len(parts)}
    return from_keys(merged_v.movedim(0, -1), merged_k.movedim(0, -1), info)


__all__ = ["EXAMPLES_FILE", "EXAMPLES_FORMAT", "Examples", "from_keys", "load_examples", "merge_examples",
           "merge_topk", "save_examples"]  # fmt: skip
