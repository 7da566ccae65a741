"""Top activating examples (docs/methods.md §15): per language, layer and neuron the K largest activations
over counted tokens, with each one's sentence and token position.

The order is total and exact: value descending, then sentence index ascending, then position ascending
(``key = sentence · 2**20 + position``, lower first). Top-K of a union is the top-K of the parts' top-Ks, so
batches, units, ranks, resumed runs and ``merge`` all give the same lists. Each batch contributes its own
exact top-K: the K largest values plus, for the K-th value, the tied tokens with the lowest keys (a plain
``topk`` picks among equal values arbitrarily; tokens of the same word in the same context tie exactly).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_safetensors, write_safetensors
from langneurons.formats.examples import EMPTY_KEY, POSITION_BITS, Examples, from_keys, merge_topk
from langneurons.models import Adapter, Rows


def block_topk(x: torch.Tensor, row_keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` candidates of a block ``x [N, C]`` whose rows have keys ``row_keys [N]``: float32
    values and int64 keys ``[2k, C]`` (empty slots: −inf / EMPTY_KEY); no host sync."""
    k1 = min(k, x.shape[0])
    top, index = torch.topk(x, k1, dim=0)
    edge = top[-1:]  # the k-th value of each column
    above = top > edge
    v1 = torch.where(above, top.float(), float("-inf"))
    k1_keys = torch.where(above, row_keys[index], EMPTY_KEY)
    tie_keys = torch.where(x == edge, row_keys[:, None], EMPTY_KEY)
    k2_keys = torch.topk(tie_keys, k1, dim=0, largest=False).values
    v2 = torch.where(k2_keys != EMPTY_KEY, edge.float().expand_as(k2_keys), float("-inf"))
    return torch.cat([v1, v2]), torch.cat([k1_keys, k2_keys])


def threshold_merge(
    block: torch.Tensor, keys: torch.Tensor, old_v: torch.Tensor, old_k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge a block ``[N, C]`` (row keys ``[N]``) into the lists ``old_v``/``old_k`` ``[k, C]``, exactly: only
    entries ≥ a column's k-th value can enter (ties included), so after the first batches a few hundred
    candidates are sorted (by column, value ↓, key ↑) instead of the whole block; each candidate's place in its
    column is its rank among the candidates plus the list entries that beat it, each list entry moves down
    by the candidates that beat it, and whatever passes place k falls off."""
    k, c = old_v.shape
    floor = old_v[-1]
    empty = bool(torch.isneginf(floor).any())  # a list not yet full: its column would take every token
    flat = None if empty else (block >= floor.to(block.dtype)).reshape(-1).nonzero().squeeze(1)
    if flat is None or flat.numel() > block.numel() // 8:  # early: raise the floor by a half-sample's k-th value
        step = 2 if block.shape[0] >= 8 * k else 1  # (a lower bound of the block's k-th: still exact)
        if step < 2:
            values, cand_keys = block_topk(block, keys, k)
            return merge_topk(torch.cat([old_v, values]), torch.cat([old_k, cand_keys]), k)
        sample = torch.topk(block[::step], k, dim=0).values[-1].to(torch.float32)
        flat = (block >= torch.maximum(floor, sample).to(block.dtype)).reshape(-1).nonzero().squeeze(1)
    m = int(flat.numel())
    if m == 0:
        return old_v, old_k
    rows, cols = flat // c, flat % c
    cand_v, cand_k = block.reshape(-1)[flat].to(torch.float32), keys[rows]
    bits = cand_v.view(torch.int32).to(torch.int64)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # float order as integers (no NaN here)
    order = torch.argsort(cand_k, stable=True)  # candidates by (column ↑, value ↓, key ↑)
    order = order[torch.argsort(((cols << 32) | (2**31 - 1 - ordered))[order], stable=True)]
    cols, cand_v, cand_k = cols[order], cand_v[order], cand_k[order]
    counts = torch.bincount(cols, minlength=c)
    among = torch.arange(m) - (torch.cumsum(counts, 0) - counts)[cols]  # rank among its column's candidates
    state_v, state_k = old_v[:, cols], old_k[:, cols]  # [k, m]: each candidate's column of the lists
    state_wins = (state_v > cand_v) | ((state_v == cand_v) & (state_k < cand_k))  # keys never repeat
    place = state_wins.sum(0) + among  # the candidate's place in the merged column
    shift = torch.zeros(k, c, dtype=torch.long).index_add_(1, cols, (~state_wins).long())
    moved = torch.arange(k)[:, None] + shift  # each list entry's place after the candidates that beat it
    new_v = torch.empty((k + 1, c), dtype=old_v.dtype)  # row k takes whatever falls off the lists
    new_k = torch.empty((k + 1, c), dtype=old_k.dtype)
    moved = moved.clamp_(max=k)
    new_v.scatter_(0, moved, old_v)
    new_k.scatter_(0, moved, old_k)
    place = place.clamp_(max=k)
    new_v.index_put_((place, cols), cand_v)
    new_k.index_put_((place, cols), cand_k)
    return new_v[:k].clone(), new_k[:k].clone()


class ExampleTracker:
    """Hooks at a site that keep, per language, layer and tracked neuron, the ``k`` top examples.

    ``neurons``: layer → neuron indices to track (None: every neuron of every layer). Call
    :meth:`set_batch` before each forward with the language index, the counted mask and each token's
    sentence index (in the language's counted sentences) and position.
    """

    def __init__(
        self, adapter: Adapter, site: str, k: int, n_languages: int, neurons: dict[int, list[int]] | None = None
    ):
        if k <= 0:
            raise LangneuronsError(f"--examples must be positive, got {k}")
        self.adapter, self.site, self.k, self.n_languages = adapter, site, k, n_languages
        width = adapter.intermediate_size
        layers = range(adapter.num_layers) if neurons is None else sorted(neurons)
        self.columns: dict[int, torch.Tensor] = {}
        self.where: dict[int, torch.Tensor] = {}
        for layer in layers:
            chosen = None if neurons is None else sorted(set(neurons[layer]))
            cols = torch.arange(width) if chosen is None else torch.tensor(chosen, dtype=torch.long)
            self.columns[layer] = cols
            where = torch.full((width,), -1, dtype=torch.long)
            where[cols] = torch.arange(len(cols))
            self.where[layer] = where
        self.all_columns = neurons is None
        # (language, layer) → (values float32 [k, C], keys int64 [k, C]) on the layer's device
        self.state: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.batch: dict = {}
        self.handles: list = []

    def __enter__(self) -> ExampleTracker:
        self.handles = self.adapter.hook_blocks(self.site, self._observe, sorted(self.columns))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def set_batch(self, lang: int, counted: torch.Tensor, sentence: torch.Tensor, position: torch.Tensor) -> None:
        """The next forward's language, counted tokens [B, T] (bool) and their sentence and position [B, T]."""
        flat = counted.reshape(-1).cpu()
        keys = (sentence.reshape(-1).to(torch.int64) << POSITION_BITS) + position.reshape(-1).to(torch.int64)
        self.batch = {"lang": lang, "flat": flat, "keys": keys.cpu(), "rows": flat.nonzero().squeeze(1)}

    def _on(self, name: str, device: torch.device) -> torch.Tensor:
        key = (name, device)
        if key not in self.batch:
            self.batch[key] = self.batch[name].to(device, non_blocking=True)
        return self.batch[key]

    def _observe(self, layer: int, x: torch.Tensor, rows: Rows) -> None:
        if layer not in self.columns:
            return None
        if rows.tokens is None:  # a dense block: every token of the batch, columns start..start+w
            counted = self._on("rows", x.device)
            block = x.index_select(0, counted)
            keys = self._on("keys", x.device).index_select(0, counted)
            self._add(layer, block, keys, rows.start)
            return None
        flat, all_keys = self._on("flat", x.device), self._on("keys", x.device)  # MoE: one expert at a time
        keep = flat.index_select(0, rows.tokens)
        groups = torch.where(keep, rows.groups, -1)
        w = x.shape[1]
        for g in torch.unique(groups).tolist():
            if g < 0:
                continue
            sel = (groups == g).nonzero().squeeze(1)
            self._add(layer, x.index_select(0, sel), all_keys.index_select(0, rows.tokens.index_select(0, sel)),
                      rows.start + g * w)  # fmt: skip
        return None

    def _add(self, layer: int, block: torch.Tensor, keys: torch.Tensor, start: int) -> None:
        if block.shape[0] == 0:
            return
        w = block.shape[1]
        where = self.where[layer]
        if self.all_columns:
            idx = None
        else:
            slots = where[start : start + w]
            keep = (slots >= 0).nonzero().squeeze(1)
            if keep.numel() == 0:
                return
            block = block.index_select(1, keep.to(block.device))
            idx = slots[keep]
        key = (self.batch["lang"], layer)
        if key not in self.state:
            n = len(self.columns[layer])
            self.state[key] = (torch.full((self.k, n), float("-inf"), device=block.device),
                               torch.full((self.k, n), EMPTY_KEY, dtype=torch.int64, device=block.device))  # fmt: skip
        state_v, state_k = self.state[key]
        if state_v.device != block.device:  # a state loaded from a checkpoint lives on the host
            state_v, state_k = state_v.to(block.device), state_k.to(block.device)
            self.state[key] = (state_v, state_k)
        idx_dev = slice(start, start + w) if idx is None else idx.to(block.device)
        old_v, old_k = state_v[:, idx_dev], state_k[:, idx_dev]
        if block.device.type == "cpu":  # only tokens at or above each neuron's current k-th value can enter
            new = threshold_merge(block, keys, old_v, old_k)
        else:  # on a GPU: no host sync (topk of the block, then a merge)
            values, cand_keys = block_topk(block, keys, self.k)
            new = merge_topk(torch.cat([old_v, values]), torch.cat([old_k, cand_keys]), self.k)
        state_v[:, idx_dev], state_k[:, idx_dev] = new

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state on the host: ``values.<lang>.<layer>`` / ``keys.<lang>.<layer>`` (for checkpoints)."""
        out = {}
        for (lang, layer), (v, k) in sorted(self.state.items()):
            out[f"values.{lang}.{layer}"] = v.cpu()
            out[f"keys.{lang}.{layer}"] = k.cpu()
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Merge a saved state (from :meth:`tensors`) into this one."""
        for name, values in tensors.items():
            kind, lang, layer = name.split(".")
            if kind != "values":
                continue
            keys = tensors[f"keys.{lang}.{layer}"]
            self.merge_state(int(lang), int(layer), values, keys)

    def merge_state(self, lang: int, layer: int, values: torch.Tensor, keys: torch.Tensor) -> None:
        key = (lang, layer)
        if key not in self.state:
            self.state[key] = (values.clone(), keys.clone())
            return
        v, k = self.state[key]
        self.state[key] = merge_topk(torch.cat([v, values.to(v.device)]), torch.cat([k, keys.to(k.device)]), self.k)

    def result(self, info: dict | None = None) -> Examples:
        """The kept examples as an :class:`Examples` over the tracked columns of every layer (with a
        ``columns`` map unless every neuron was tracked)."""
        n_layers = self.adapter.num_layers
        width = max((len(c) for c in self.columns.values()), default=0)
        values = torch.full((self.n_languages, n_layers, width, self.k), float("nan"), dtype=torch.float32)
        keys = torch.full((self.n_languages, n_layers, width, self.k), EMPTY_KEY, dtype=torch.int64)
        for (lang, layer), (v, k) in self.state.items():
            n = v.shape[1]
            values[lang, layer, :n] = v.T.cpu()
            keys[lang, layer, :n] = k.T.cpu()
        columns = None
        if not self.all_columns:
            columns = torch.full((n_layers, width), -1, dtype=torch.int64)
            for layer, cols in self.columns.items():
                columns[layer, : len(cols)] = cols
        return from_keys(values, keys, dict(info or {}), columns)


def batch_positions(counted: torch.Tensor, text: torch.Tensor, first_sentence: int) -> tuple[torch.Tensor, ...]:
    """Sentence index (``first_sentence`` + the unit's text index) and position (column) of each token of an
    unpacked, right-padded batch [B, T]."""
    sentence = text.to(torch.int64) + first_sentence
    position = torch.arange(counted.shape[1], dtype=torch.int64).expand_as(counted)
    return sentence, position


def collect_examples(
    loaded,
    corpus: Corpus,
    neurons: dict[int, list[int]] | None,
    k: int,
    *,
    site: str,
    sentences: dict[str, int],
    batch_size: int = 8,
    max_length: int = 512,
    count_bos: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    checkpoint: Path | None = None,
) -> ExampleTracker:
    """The targeted pass: run the counted sentences of each language again and keep top examples of
    ``neurons`` only (the statistics are not recounted).

    With ``checkpoint``, the kept examples and the next chunk are saved there (atomically) after every chunk of
    ``8 × batch_size`` sentences, and a rerun of the same pass resumes from it (top-K is order-free, so the
    result equals an uninterrupted pass); the file is removed when the pass ends."""
    from langneurons.recording.plan import unit_batches

    tracker = ExampleTracker(loaded.adapter, site, k, len(corpus.languages), neurons)
    body = loaded.adapter.body()
    total = sum(sentences.get(lang, 0) for lang in corpus.languages)
    per = batch_size * 8
    fingerprint = _pass_fingerprint(corpus, neurons, k, site, sentences, batch_size, max_length, count_bos)
    resume = _read_pass_checkpoint(checkpoint, fingerprint, tracker)  # (language index, next start) or (0, 0)
    done = sum(sentences.get(lang, 0) for lang in corpus.languages[: resume[0]]) + resume[1]
    last = time.time()
    with tracker, torch.inference_mode():
        for li, lang in enumerate(corpus.languages):
            if li < resume[0]:
                continue
            texts = corpus.texts(lang)[: sentences.get(lang, 0)]
            for start in range(resume[1] if li == resume[0] else 0, len(texts), per):
                chunk = texts[start : start + per]
                for batch in unit_batches(chunk, loaded.tokenizer, batch_size, max_length, count_bos):
                    sentence, position = batch_positions(batch.counted, batch.text, start)
                    tracker.set_batch(li, batch.counted, sentence, position)
                    body(input_ids=batch.input_ids.to(loaded.device),
                         attention_mask=batch.attention_mask.to(loaded.device), use_cache=False)  # fmt: skip
                done += len(chunk)
                if checkpoint is not None:
                    nxt = (li, start + per) if start + per < len(texts) else (li + 1, 0)
                    write_safetensors(checkpoint, tracker.tensors(), {"fingerprint": fingerprint,
                                                                       "next": json.dumps(nxt)})  # fmt: skip
                if on_progress is not None and (time.time() - last > 0.5 or done == total):
                    on_progress(done, total)
                    last = time.time()
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    return tracker


def _pass_fingerprint(corpus: Corpus, neurons, k: int, site: str, sentences: dict[str, int], batch_size: int,
                      max_length: int, count_bos: bool) -> str:  # fmt: skip
    """What a targeted pass depends on: a checkpoint of another pass is never resumed."""
    job = {"texts": corpus.sha256(), "neurons": {str(a): sorted(map(int, b)) for a, b in (neurons or {}).items()},
           "k": k, "site": site, "sentences": sentences, "batch_size": batch_size, "max_length": max_length,
           "count_bos": count_bos, "languages": list(corpus.languages)}  # fmt: skip
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def _read_pass_checkpoint(path: Path | None, fingerprint: str, tracker: ExampleTracker) -> tuple[int, int]:
    """Load a checkpoint of this very pass into ``tracker``; where to go on from (0, 0: from the start)."""
    if path is None or not Path(path).exists():
        return 0, 0
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("fingerprint") != fingerprint:
        return 0, 0  # another pass's: started afresh (and overwritten)
    tracker.load(read_safetensors(Path(path)))
    lang, start = json.loads(meta["next"])
    return int(lang), int(start)


__all__ = ["ExampleTracker", "batch_positions", "block_topk", "collect_examples"]
