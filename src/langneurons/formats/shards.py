"""Per-shard counts of a recording (``record --shards S``): `RUN_DIR/shards.safetensors`.

Tensors (language order = the run's ``manifest["languages"]``):
  count_shards    int32 [S, K, L, F]  tokens of shard s of language k where the neuron's activation is > 0
  n_tokens_shards int64 [S, K]        counted tokens of shard s of language k

Shard rule (fixed, so 1 process = N processes = a resumed run, bit for bit): sentence i (0-based, among
the n sentences of its language that the recording counted) belongs to shard ``floor(i · S / n)``, i.e.
S contiguous blocks of sentences whose sizes differ by at most one. Summed over shards the counts equal
the run's ``count`` and ``n_tokens`` exactly; `load_shards` checks that, so a stale file is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_safetensors, write_safetensors
from langneurons.formats.stats import Stats

SHARDS_FILE = "shards.safetensors"
SHARDS_FORMAT = "langneurons-shards/1"
SHARD_RULE = "sentence i of the n counted sentences of a language is in shard floor(i*S/n) (contiguous blocks)"
INT32_MAX = 2**31 - 1


def shard_of_sentences(n: int, shards: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Shard of sentences ``start..stop-1`` (int64) of a language with ``n`` counted sentences."""
    stop = n if stop is None else stop
    return torch.arange(start, stop, dtype=torch.int64).mul_(shards).div_(n, rounding_mode="floor")


@dataclass
class Shards:
    """Per-shard activation counts and token totals of one recording."""

    count: torch.Tensor  # [S, K, L, F] int32 (int64 accepted)
    n_tokens: torch.Tensor  # [S, K] int64

    @property
    def num_shards(self) -> int:
        return int(self.count.shape[0])

    def check_against(self, stats: Stats, where: str = "shards") -> None:
        """The shards must add up to the run's totals exactly (else they belong to another recording)."""
        s, k = self.n_tokens.shape if self.n_tokens.dim() == 2 else (None, None)
        if s is None or tuple(self.count.shape) != (s, *stats.count.shape) or k != stats.count.shape[0]:
            raise LangneuronsError(f"{where}: shapes {tuple(self.count.shape)} do not fit the run's statistics")
        if not torch.equal(self.n_tokens.sum(0), stats.n_tokens):
            raise LangneuronsError(f"{where}: shard token totals differ from the run's n_tokens (a stale file?)")
        if not torch.equal(self.count.sum(0, dtype=torch.int64), stats.count):
            raise LangneuronsError(f"{where}: shard counts do not add up to the run's counts (a stale file?)")


def save_shards(run_dir: str | Path, shards: Shards) -> None:
    """Write the shard tensors (counts as int32; a shard over 2**31 - 1 tokens cannot happen silently)."""
    if shards.n_tokens.numel() and int(shards.n_tokens.max()) > INT32_MAX:
        raise LangneuronsError("a shard holds more than 2**31 - 1 tokens: record with more --shards")
    tensors = {"count_shards": shards.count.to(torch.int32), "n_tokens_shards": shards.n_tokens.to(torch.int64)}
    meta = {"format": SHARDS_FORMAT, "rule": SHARD_RULE}
    write_safetensors(Path(run_dir) / SHARDS_FILE, tensors, metadata=meta)


def has_shards(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SHARDS_FILE).is_file()


def load_shards(run_dir: str | Path, stats: Stats) -> Shards:
    """Read ``RUN_DIR/shards.safetensors`` and check it against ``stats``; one-line errors otherwise."""
    path = Path(run_dir) / SHARDS_FILE
    if not path.is_file():
        raise LangneuronsError(f"{run_dir} has no per-shard counts ({SHARDS_FILE}): record it with --shards S")
    tensors = read_safetensors(path)
    if {"count_shards", "n_tokens_shards"} - tensors.keys():
        raise LangneuronsError(f"{path} lacks count_shards / n_tokens_shards")
    shards = Shards(tensors["count_shards"], tensors["n_tokens_shards"])
    if shards.count.dtype not in (torch.int32, torch.int64) or shards.n_tokens.dtype != torch.int64:
        raise LangneuronsError(f"{path}: count_shards must be int32/int64 and n_tokens_shards int64")
    shards.check_against(stats, str(path))
    return shards


__all__ = ["SHARDS_FILE", "SHARD_RULE", "Shards", "has_shards", "load_shards", "save_shards", "shard_of_sentences"]
