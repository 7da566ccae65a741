"""Hooks that add one batch's counted activations into per-layer accumulators (on each layer's device).

The update is sync-free: no ``nonzero()``/``.item()``, only masked reductions, so on CUDA the
host never waits for the device between batches. Counts stay exact integers (int64: exact far beyond
10⁹ tokens per language). Sums and sums of squares are taken per batch in float32 (the activation widened
once; a float64 activation stays float64) and folded into float64 accumulators after every batch, so no
float64 tensor the size of the activations is ever made. Rounding bound (docs/scaling.md, tested): a batch's
float32 sum of n counted values differs from the exact sum by at most γ_n · Σ|x| (γ_n = n·u / (1 − n·u),
u = 2⁻²⁴), its sum of squares by at most γ_(n+1) · Σx², whatever order the kernel adds in; the float64 fold
adds nothing measurable. ``recording/accumulate.py`` gives the bound.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from langneurons.errors import LangneuronsError
from langneurons.models import Adapter, Rows
from langneurons.recording.accumulate import accumulation_dtype
from langneurons.recording.groups import group_sums

# (x [N, F] any float dtype, rows) -> (count int64 [F], sum float64 [F], sum_sq float64 [F]); ``rows`` is
# the [N] bool mask of counted rows (``masked_statistics``) or their [N'] indices (``batch_statistics``).
EXACT_ROWS = 2**24
UpdateFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class Partial:
    """Statistics of one unit of work, for one language: [L, F] tensors and a token count.

    ``extra`` holds the per-language tensors some models add (MoE: ``routed_tokens``, ``router_probability``).
    """

    count: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    n_tokens: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    # ``record --shards S`` only: counts [S, L, F] and tokens [S] per shard (formats/shards.py).
    count_shards: torch.Tensor | None = None
    n_tokens_shards: torch.Tensor | None = None

    @classmethod
    def zeros(
        cls,
        num_layers: int,
        width: int,
        device: torch.device | str = "cpu",
        extra: dict | None = None,
        shards: int | None = None,
    ) -> Partial:
        """Zeros; ``extra`` maps a name to (shape, dtype); ``shards`` adds the per-shard counts."""
        shape = (num_layers, width)
        return cls(
            torch.zeros(shape, dtype=torch.int64, device=device),
            torch.zeros(shape, dtype=torch.float64, device=device),
            torch.zeros(shape, dtype=torch.float64, device=device),
            torch.zeros(1, dtype=torch.int64, device=device),
            {k: torch.zeros(s, dtype=d, device=device) for k, (s, d) in (extra or {}).items()},
            *_shard_zeros(shards, shape, device),
        )

    @property
    def num_shards(self) -> int | None:
        return None if self.count_shards is None else int(self.count_shards.shape[0])

    def _shard_names(self) -> list[str]:
        return [] if self.count_shards is None else ["count_shards", "n_tokens_shards"]

    def names(self) -> list[str]:
        return ["count", "sum", "sum_sq", "n_tokens", *self._shard_names(), *sorted(self.extra)]

    def tensors(self) -> list[torch.Tensor]:
        shards = [] if self.count_shards is None else [self.count_shards, self.n_tokens_shards]
        return [self.count, self.sum, self.sum_sq, self.n_tokens, *shards, *(self.extra[k] for k in sorted(self.extra))]

    def with_tensors(self, tensors: list[torch.Tensor]) -> Partial:
        """A partial of the same layout holding ``tensors`` (in :meth:`tensors` order)."""
        n = 4 + len(self._shard_names())
        extra = dict(zip(sorted(self.extra), tensors[n:], strict=True))
        return Partial(*tensors[:4], extra, *tensors[4:n])

    def zeros_like(self) -> Partial:
        return self.with_tensors([torch.zeros_like(t) for t in self.tensors()])

    def to(self, device) -> Partial:
        return self.with_tensors([t.to(device) for t in self.tensors()])


def _shard_zeros(shards: int | None, shape: tuple[int, int], device) -> list[torch.Tensor]:
    if not shards:
        return []
    return [torch.zeros((shards, *shape), dtype=torch.int64, device=device),
            torch.zeros(shards, dtype=torch.int64, device=device)]  # fmt: skip


def batch_statistics(x: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-neuron count of ``x > 0``, sum and sum of squares over rows ``index`` (None: all rows).

    Gathering the counted rows first skips padding; the index comes from the host, so no sync. The sums
    are float32 column sums (one GEMV each), returned as float64 to be folded into the accumulators.
    """
    xs = x if index is None else x.index_select(0, index)
    xs = xs.to(accumulation_dtype(xs))  # no copy for float32 activations
    n = xs.shape[0]
    ones = xs.new_ones(1, n)
    if n >= EXACT_ROWS:  # float32 holds integers exactly only up to 2**24
        count = torch.count_nonzero(xs > 0, dim=0)
    else:  # column sums as one GEMV each: ~2.5x cheaper than a column-wise reduction on CPU
        # the comparison writes 1.0/0.0 straight into float32: ~10x cheaper on CPU than bool then .to(float32)
        hits = torch.gt(xs, 0, out=torch.empty(xs.shape, dtype=torch.float32, device=xs.device))
        count = (ones.to(torch.float32) @ hits)[0].to(torch.int64)
    total, total_sq = (ones @ xs)[0], (ones @ (xs * xs))[0]  # never in place: x may be the activation
    return count, total.to(torch.float64), total_sq.to(torch.float64)


def masked_statistics(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same statistics from a row mask: one fusable expression for torch.compile."""
    keep = mask.unsqueeze(1)
    count = (keep & (x > 0)).sum(0, dtype=torch.int64)
    xs = torch.where(keep, x, 0).to(accumulation_dtype(x))  # where, not multiply: NaN in padding cannot leak
    return count, xs.sum(0).to(torch.float64), (xs * xs).sum(0).to(torch.float64)


class FusedUpdate:
    """``masked_statistics`` through torch.compile (one fused pass over the activations per layer), with a
    fallback that never fails a run: on the first error it says so once and counts eagerly from then on (the
    same expression, so the same counts)."""

    uses_mask = True

    def __init__(self) -> None:
        self.fn = torch.compile(masked_statistics, dynamic=True, fullgraph=True)
        self.fallback: str | None = None  # why the fused path was left, once it was

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.fallback is None:
            try:
                return self.fn(x, mask)
            except Exception as error:  # any compiler failure: count eagerly, never lose the run
                first = (str(error).strip().splitlines() or [""])[0][:160]
                self.fallback = f"{type(error).__name__}: {first}".rstrip(": ")
                warnings.warn(f"the fused counting update failed ({self.fallback}); counting eagerly for the rest "
                              "of this run (same counts)", RuntimeWarning, stacklevel=2)  # fmt: skip
        return masked_statistics(x, mask)

    def describe(self) -> str:
        if self.fallback is None:
            return "fused (torch.compile)"
        return f"eager after the fused one failed ({self.fallback})"


def compiled_statistics() -> FusedUpdate:
    """The fused counting update (the default on CUDA; ``record --compile`` elsewhere)."""
    return FusedUpdate()


def describe_update(update: UpdateFn) -> str:
    """How a run's statistics were counted, for its manifest."""
    return update.describe() if isinstance(update, FusedUpdate) else "eager"


class Counter:
    """Installs hooks at a site; while active, each forward adds its counted tokens to ``partial``.

    The per-layer accumulators live on the device of that layer's activations (several devices
    under ``device_map="auto"``); :meth:`collect` brings them to one device.
    """

    def __init__(
        self,
        adapter: Adapter,
        site: str,
        device: torch.device,
        update: UpdateFn = batch_statistics,
        shards: int | None = None,
        residual: bool = False,
    ):
        self.adapter, self.site, self.device, self.update = adapter, site, torch.device(device), update
        self.shards = shards or None  # also count per shard (``record --shards``)
        self.shard_layers: dict[int, torch.Tensor] = {}  # layer -> [S, F] int64 on its device
        self.shard_batch: dict = {}
        self.n_tokens_shards = torch.zeros(shards or 0, dtype=torch.int64)
        self.want_residual = residual  # also sum the residual stream (recording/residual.py)
        self.layers: dict[int, list[torch.Tensor]] = {}  # layer -> [count, sum, sum_sq] on its device
        self.n_tokens = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.masks: dict = {"rows": None}
        self.handles = []
        self.routing = None  # a RoutingCounter while recording an MoE model
        self.residual = None  # a ResidualCounter while recording with residual=True
        self.checked = False  # every layer's hook seen firing once (after the first forward)

    def __enter__(self) -> Counter:
        if self.adapter.is_moe:  # experts come as sparse blocks; routing is counted too (recording/routing.py)
            from langneurons.recording.routing import RoutingCounter

            self.routing = RoutingCounter(self)
            self.handles = self.adapter.hook_blocks(self.site, self._observe_block) + self.routing.install()
        else:
            self.handles = self.adapter.hook(self.site, self._observe)
        if self.want_residual:
            from langneurons.recording.residual import ResidualCounter

            self.residual = ResidualCounter(self)
            self.handles += self.residual.install()
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def reset(self) -> None:
        self.layers = {}
        self.n_tokens = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.shard_layers = {}
        self.n_tokens_shards = torch.zeros(self.shards or 0, dtype=torch.int64)
        if self.routing is not None:
            self.routing.reset()
        if self.residual is not None:
            self.residual.reset()

    @property
    def partial(self) -> Partial:
        """This unit's statistics so far, on ``self.device``."""
        out = Partial.zeros(self.adapter.num_layers, self.adapter.intermediate_size, self.device, shards=self.shards)
        for layer, (count, total, total_sq) in self.layers.items():
            out.count[layer] = count.to(self.device)
            out.sum[layer] = total.to(self.device)
            out.sum_sq[layer] = total_sq.to(self.device)
        out.n_tokens += self.n_tokens
        if self.shards:
            for layer, count in self.shard_layers.items():
                out.count_shards[:, layer] = count.to(self.device)
            out.n_tokens_shards += self.n_tokens_shards.to(self.device)
        if self.routing is not None:
            out.extra = self.routing.totals(self.device)
        if self.residual is not None:
            out.extra = out.extra | self.residual.totals(self.device)
        return out

    def check_fired(self) -> None:
        """After a forward: every layer's hook must have run, else the adapter missed the MLP (a fused or
        kernel-replaced module, a new transformers layout) and the file would hold all-zero rows."""
        missing = [layer for layer in range(self.adapter.num_layers) if layer not in self.layers]
        if missing:
            raise LangneuronsError(
                f"no activation reached the {self.site!r} hook of layer(s) {','.join(map(str, missing))} "
                f"of this {self.adapter.family} model: its MLP layout differs from what the adapter expects"
            )
        self.checked = True

    def set_batch(self, counted: torch.Tensor, shard: torch.Tensor | None = None) -> None:
        """Say which tokens of the next forward count ([B, T] bool, on the host); no device sync.

        With shards, ``shard`` [B, T] (int64, host) gives each token's shard.
        """
        flat = counted.reshape(-1)
        if self.shards:
            if shard is None:
                raise ValueError("a Counter with shards needs each token's shard")
            self._set_shards(flat.cpu(), shard.reshape(-1).cpu())
        if getattr(self.update, "uses_mask", False):
            rows = _to_device(flat.cpu(), self.device)
        else:  # `counted` comes from the tokenizer on the host: nonzero() there never waits for a GPU
            host = flat.cpu()
            rows = None if bool(host.all()) else _to_device(host.nonzero().squeeze(1), self.device)
        self.masks = {"rows": rows, "flat": flat.cpu()}
        self.n_tokens += int(flat.sum())

    def _mask(self, device: torch.device) -> torch.Tensor | None:
        """The counted rows of this batch on ``device`` (copied once per device; None: every row)."""
        rows = self.masks["rows"]
        if rows is None or rows.device == device:
            return rows
        if device not in self.masks:
            self.masks[device] = rows.to(device, non_blocking=True)
        return self.masks[device]

    def _set_shards(self, flat: torch.Tensor, shard: torch.Tensor) -> None:
        """Host-side: counted rows, the shards present and a [P, N'] one-hot of counted row → shard."""
        rows = flat.nonzero().squeeze(1)
        labels = shard.index_select(0, rows)
        present, local = torch.unique(labels, return_inverse=True)
        onehot = torch.zeros(present.numel(), rows.numel(), dtype=torch.float32)
        onehot.scatter_(0, local.view(1, -1), 1.0)
        self.n_tokens_shards += torch.bincount(labels, minlength=self.shards)
        self.shard_batch = {"host": (rows, present, onehot), "labels": shard}

    def _shard_inputs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self.shard_batch:
            self.shard_batch[device] = tuple(_to_device(t, device) for t in self.shard_batch["host"])
        return self.shard_batch[device]

    def _observe_shards(self, layer: int, x: torch.Tensor, start: int = 0) -> None:
        """Per-shard counts of this batch: one [P, N'] × [N', F] product (exact: N' < 2**24 rows)."""
        rows, present, onehot = self._shard_inputs(x.device)
        fired = (x.index_select(0, rows) > 0).to(torch.float32)
        if rows.numel() >= EXACT_ROWS:  # pragma: no cover - a 16M-token batch
            counts = torch.stack([fired[onehot[i] > 0].sum(0, dtype=torch.int64) for i in range(len(present))])
        else:
            counts = (onehot @ fired).round_().to(torch.int64)
        self._shard_acc(layer, x.device)[:, start : start + x.shape[1]].index_add_(0, present, counts)

    def _shard_acc(self, layer: int, device: torch.device) -> torch.Tensor:
        acc = self.shard_layers.get(layer)
        if acc is None:
            width = self.adapter.intermediate_size
            acc = self.shard_layers[layer] = torch.zeros(self.shards, width, dtype=torch.int64, device=device)
        return acc

    def _observe_block_shards(self, layer: int, pos: torch.Tensor, groups: torch.Tensor, rows: Rows) -> None:
        """Per-(shard, expert) counts of an MoE block: ``groups`` already sends uncounted rows to group n."""
        key = ("labels", pos.device)
        if key not in self.shard_batch:
            labels = self.shard_batch["labels"].reshape(-1).clamp(0, self.shards - 1)  # padding: any shard
            self.shard_batch[key] = _to_device(labels, pos.device)
        n, w = rows.n_groups, pos.shape[1]
        cell = self.shard_batch[key].index_select(0, rows.tokens) * (n + 1) + groups
        counts = torch.zeros(self.shards * (n + 1), w, device=pos.device).index_add_(0, cell, pos)
        counts = counts.view(self.shards, n + 1, w)[:, :n].reshape(self.shards, n * w).to(torch.int64)
        self._shard_acc(layer, pos.device)[:, rows.start : rows.start + n * w] += counts

    def _observe(self, layer: int, act: torch.Tensor) -> None:
        x = act.reshape(-1, act.shape[-1])
        if self.shards:
            self._observe_shards(layer, x)
        count, total, total_sq = self.update(x, self._mask(x.device))
        acc = self.layers.get(layer)
        if acc is None:
            self.layers[layer] = [count, total, total_sq]
        else:
            acc[0] += count
            acc[1] += total
            acc[2] += total_sq
        return None


    def counted_flags(self, tokens: torch.Tensor | None, device: torch.device | None = None) -> torch.Tensor | None:
        """Bool per row of ``tokens`` (rows of the flattened batch; None: all rows): is it counted? None when
        every row of the batch is. Built on the device without a host sync (no ``nonzero``)."""
        if self.masks["rows"] is None:
            return None
        device = tokens.device if tokens is not None else device
        key = ("flat", device)
        if key not in self.masks:
            self.masks[key] = _to_device(self.masks["flat"], device)
        flat = self.masks[key]
        return flat if tokens is None else flat.index_select(0, tokens)

    def _observe_block(self, layer: int, x: torch.Tensor, rows: Rows) -> None:
        """Add a sparse block (an MoE layer's routed rows, a shared expert, a dense layer) to its columns."""
        if rows.tokens is None:
            if self.shards:
                self._observe_shards(layer, x, rows.start)
            count, total, total_sq = self.update(x, self._mask(x.device))
        else:  # per-expert sums; uncounted rows (padding) go to a spare group n that is dropped
            n = rows.n_groups
            keep = self.counted_flags(rows.tokens)
            groups = rows.groups if keep is None else torch.where(keep, rows.groups, n)
            pos = torch.gt(x, 0, out=torch.empty(x.shape, dtype=torch.float32, device=x.device))  # see above
            xs = x.to(accumulation_dtype(x))  # float32 per block, folded into float64 below (module docstring)
            if self.shards:
                self._observe_block_shards(layer, pos, groups, rows)
            count = group_sums(pos, groups, n).to(torch.int64).reshape(-1)
            total = group_sums(xs, groups, n).reshape(-1).to(torch.float64)
            total_sq = group_sums(xs * xs, groups, n).reshape(-1).to(torch.float64)
        acc = self.layers.get(layer)
        if acc is None:
            width = self.adapter.intermediate_size
            acc = self.layers[layer] = [
                torch.zeros(width, dtype=torch.int64, device=x.device),
                torch.zeros(width, dtype=torch.float64, device=x.device),
                torch.zeros(width, dtype=torch.float64, device=x.device),
            ]
        end = rows.start + count.numel()
        acc[0][rows.start : end] += count
        acc[1][rows.start : end] += total
        acc[2][rows.start : end] += total_sq
        return None


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host → device without making the host wait (pinned memory makes the copy truly async)."""
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)
