"""Attribution patching and integrated gradients over neurons, heads and experts (docs/methods.md §17).

For a unit with activation ``a`` at its site and ``M`` = a language's mean next-token NLL, the effect of
replacing ``a`` by ``a'`` is estimated as ``(a' − a) · ∂M/∂a`` summed over positions (first order,
"attribution patching"). One forward and one backward per batch give every unit's estimate at once:

  zero-ablation  −Σ_pos g·a
  mean-ablation  m·Σ_pos g − Σ_pos g·a   (m: the unit's mean on the other languages' counted tokens)

so a single pass over each language suffices (the means come from the same pass). Gradients reach only
the site tensors: every weight has ``requires_grad`` off, and a site with nothing upstream that needs a
gradient becomes a leaf. Integrated gradients (``method="ig"``, k steps) averages the gradient along
``α·a``, α = 1/k, 2/k, …, 1 (right Riemann sum; k = 1 is patching), moving one layer's units of one type
at a time: the estimates of a layer's units then add up to the exact effect of ablating the whole layer
at that site, up to the step count. Units: MLP neurons at the recording site (``act`` or ``down_in``;
MoE per-expert neurons through ``hook_blocks``), attention heads (``hook_heads``) and, for MoE models,
experts (all of an expert's neurons ablated; zero-ablating them at either site zeroes the expert's
weighted output, up to a down-projection bias).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_safetensors, write_safetensors
from langneurons.formats.attribution import ATTRIBUTION_JSON, UNITS, Attribution
from langneurons.formats.provenance import now, software
from langneurons.models import SITES
from langneurons.models.base import Rows
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.recording.distributed import World, broadcast_object, sum_across
from langneurons.recording.plan import Batch, encode
from langneurons.recording.spans import encode_spans

METHODS = ("patching", "ig")
CHECKPOINT = "attribution.checkpoint.safetensors"
# (unit type, layer, x, rows) -> replacement of x (None: unchanged); x is [R, w] (neurons) or [..., H, d] (heads)
EditFn = Callable[[str, int, torch.Tensor, Rows | None], torch.Tensor | None]


@dataclass(frozen=True)
class AttributionSettings:
    """Everything besides model and corpus that decides the numbers (all go in the JSON)."""

    units: tuple[str, ...] = ("neurons", "heads")
    method: str = "patching"
    steps: int = 1  # integrated-gradient steps (method "ig")
    site: str = "act"
    batch_size: int = 8
    max_length: int = 512
    validate: int = 0  # exact ablation of this many sampled units per unit type (0: none)
    validate_ablations: tuple[str, ...] = ("zero", "mean")  # which ablations --validate runs exactly
    seed: int = 0
    count: str = "all"  # prompt/response records: the NLL of all, the response's or the prompt's tokens (§18)

    def check(self, loaded: LoadedModel | None = None) -> None:
        """One-line errors for impossible settings (callable before the model loads)."""
        if not self.units:
            raise LangneuronsError("--units names no unit type; choose from neurons, heads, experts")
        bad = [u for u in self.units if u not in UNITS]
        if bad:
            raise LangneuronsError(f"unknown unit type {bad[0]!r}; choose from {', '.join(UNITS)}")
        if self.method not in METHODS:
            raise LangneuronsError(f"unknown attribution method {self.method!r}; choose {' or '.join(METHODS)}")
        if self.count not in ("all", "response", "prompt"):
            raise LangneuronsError(f"--count must be all, response or prompt, got {self.count!r}")
        if self.steps < 1:
            raise LangneuronsError(f"--steps must be at least 1, got {self.steps}")
        if self.method == "patching" and self.steps != 1:
            raise LangneuronsError("--steps is for --method ig (patching is one step)")
        if self.site not in SITES:
            raise LangneuronsError(f"unknown site {self.site!r}; choose {' or '.join(SITES)}")
        if self.batch_size <= 0 or self.max_length <= 1:
            raise LangneuronsError("--batch-size must be positive and --max-length greater than 1")
        if self.validate < 0:
            raise LangneuronsError(f"--validate must be 0 or more, got {self.validate}")
        bad = [a for a in self.validate_ablations if a not in ("zero", "mean")] or ([] if self.validate_ablations
                                                                                  else ["(none)"])  # fmt: skip
        if bad:
            raise LangneuronsError(f"--validate-ablations takes zero and/or mean, got {bad[0]!r}")
        if loaded is not None:
            if "experts" in self.units and not loaded.adapter.is_moe:
                raise LangneuronsError("--units experts needs a mixture-of-experts model")
            if "heads" in self.units:
                loaded.adapter.check_heads()


# ---- the model's sites ---------------------------------------------------------------------------------------


@contextmanager
def frozen_weights(model: torch.nn.Module):
    """Weights need no gradient (bounded memory: only the sites get one); restored on exit."""
    was = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in was:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in was:
            p.requires_grad_(flag)


class Sites:
    """Hooks on the chosen units' sites for one forward: each site tensor is optionally edited, then kept
    (``capture``) so that autograd can differentiate with respect to it.

    ``neurons``/``heads``: the layers to hook (None: none). ``edit``: see `EditFn`. ``capture``: keep the
    tensors for a gradient (a leaf where nothing upstream needs one; ``detach``: always a leaf, so the
    backward stops there).
    """

    def __init__(self, loaded: LoadedModel, site: str, neurons: list[int] | None, heads: list[int] | None,
                 edit: EditFn | None = None, capture: bool = True, detach: bool = False):  # fmt: skip
        self.adapter, self.site = loaded.adapter, site
        self.neuron_layers, self.head_layers = neurons, heads
        self.edit, self.capture, self.detach = edit, capture, detach
        self.neurons: list[tuple[int, torch.Tensor, torch.Tensor, Rows]] = []  # (layer, kept, original, rows)
        self.heads: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.handles: list = []

    def _keep(self, x: torch.Tensor) -> torch.Tensor:
        if self.capture and (self.detach or not x.requires_grad):
            return x.detach().requires_grad_(True)
        return x

    def __enter__(self) -> Sites:
        def neuron_fn(layer: int, x: torch.Tensor, rows: Rows) -> torch.Tensor | None:
            new = self.edit("neurons", layer, x, rows) if self.edit is not None else None
            kept = self._keep(x if new is None else new)
            if self.capture:
                self.neurons.append((layer, kept, x, rows))
            return kept if (self.capture or new is not None) else None

        def head_fn(layer: int, z: torch.Tensor) -> torch.Tensor | None:
            new = self.edit("heads", layer, z, None) if self.edit is not None else None
            kept = self._keep(z if new is None else new)
            if self.capture:
                self.heads.append((layer, kept, z))
            return kept if (self.capture or new is not None) else None

        try:
            if self.neuron_layers:
                self.handles += self.adapter.hook_blocks(self.site, neuron_fn, self.neuron_layers)
            if self.head_layers:
                self.handles += self.adapter.hook_heads(head_fn, self.head_layers)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def tensors(self) -> list[torch.Tensor]:
        return [t for _, t, _, _ in self.neurons] + [t for _, t, _ in self.heads]


def batch_nll(loaded: LoadedModel, batch: Batch) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL of the batch's counted tokens (a graph to differentiate) and their number."""
    dev = loaded.device
    logits = loaded.model(input_ids=batch.input_ids.to(dev), attention_mask=batch.attention_mask.to(dev)).logits
    logits = logits[:, :-1]
    logits = logits if logits.dtype == torch.float64 else logits.float()
    target = batch.input_ids[:, 1:].to(dev)
    keep = batch.counted[:, 1:].to(dev)
    picked = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    nll = (torch.logsumexp(logits, dim=-1) - picked) * keep
    return nll.sum(), int(keep.sum())


def language_batches(loaded: LoadedModel, texts: list[str], batch_size: int, max_length: int,
                     spans: list | None = None, count: str = "all", templated: bool = False):  # fmt: skip
    """A language's batches, texts sorted by length (less padding); deterministic. With ``spans`` (prompt/response
    records) only ``count``'s tokens are counted (`record --count`'s boundary rule, recording/spans.py)."""
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    for i in range(0, len(order), batch_size):
        chosen = order[i : i + batch_size]
        if spans is None:
            yield encode(loaded.tokenizer, [texts[j] for j in chosen], max_length, count_bos=False)
        else:
            yield encode_spans(loaded.tokenizer, [texts[j] for j in chosen], [spans[j] for j in chosen], count,
                               templated, max_length, count_bos=False)  # fmt: skip


def corpus_batches(loaded: LoadedModel, corpus: Corpus, lang: str, s: AttributionSettings, max_length: int):
    """:func:`language_batches` of one language of ``corpus``, with its spans when it has them."""
    if corpus.spans is None:
        return language_batches(loaded, corpus.texts(lang), s.batch_size, max_length)
    return language_batches(loaded, corpus.texts(lang), s.batch_size, max_length, corpus.spans[lang], s.count,
                            corpus.templated)  # fmt: skip


# ---- accumulation ----------------------------------------------------------------------------------------------


def block_columns(rows: Rows, x: torch.Tensor) -> tuple[int, int, torch.Tensor]:
    """(first column, number of columns, group of each row) of a neuron block ``x [R, w]``."""
    groups = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if rows.groups is None else rows.groups
    n_groups = 1 if rows.groups is None else rows.n_groups
    return rows.start, n_groups * x.shape[1], groups


def column_sums(values: torch.Tensor, rows: Rows) -> tuple[int, torch.Tensor]:
    """``values [R, w]`` summed per neuron column: (first column, sums [n_groups·w] float64 on the CPU)."""
    start, width, groups = block_columns(rows, values)
    w = values.shape[1]
    out = torch.zeros(width // w, w, dtype=torch.float32, device=values.device)
    out.index_add_(0, groups, values.float())
    return start, out.reshape(-1).double().cpu()


class Totals:
    """One language's sums over its batches (float64, CPU)."""

    def __init__(self, layers: int, width: int, heads: int, head_dim: int):
        z = torch.zeros
        self.ga = z(layers, width, dtype=torch.float64)  # Σ g·a per neuron
        self.g = z(layers, width, dtype=torch.float64)  # Σ g per neuron
        self.a = z(layers, width, dtype=torch.float64)  # Σ a over counted rows
        self.rows = z(layers, width, dtype=torch.float64)  # counted rows per neuron (MoE: routed)
        self.ig = z(layers, width, dtype=torch.float64)  # Σ over IG steps α<1 of Σ g(α)·a
        self.hga = z(layers, heads, dtype=torch.float64)
        self.hg = z(layers, heads, head_dim, dtype=torch.float64)
        self.ha = z(layers, heads, head_dim, dtype=torch.float64)
        self.hig = z(layers, heads, dtype=torch.float64)
        self.nll = z((), dtype=torch.float64)
        self.tokens = z((), dtype=torch.float64)  # predicted tokens (the metric's denominator)
        self.counted = z((), dtype=torch.float64)  # counted positions (the heads' mean denominator)

    NAMES = ("ga", "g", "a", "rows", "ig", "hga", "hg", "ha", "hig", "nll", "tokens", "counted")

    def to_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{n}": getattr(self, n) for n in self.NAMES}

    @classmethod
    def from_dict(cls, data: dict[str, torch.Tensor], prefix: str) -> Totals:
        t = cls.__new__(cls)
        for n in cls.NAMES:
            setattr(t, n, data[f"{prefix}.{n}"])
        return t

    def add_neurons(self, layer: int, g: torch.Tensor, x: torch.Tensor, rows: Rows, counted: torch.Tensor,
                    into: str = "main") -> None:  # fmt: skip
        ga = g.float() * x.float()
        start, sums = column_sums(ga, rows)
        if into == "ig":
            self.ig[layer, start : start + sums.numel()] += sums
            return
        self.ga[layer, start : start + sums.numel()] += sums
        self.g[layer, start : start + sums.numel()] += column_sums(g, rows)[1]
        tokens = torch.arange(x.shape[0], device=x.device) if rows.tokens is None else rows.tokens
        keep = counted[tokens].unsqueeze(1).to(x.dtype)
        self.a[layer, start : start + sums.numel()] += column_sums(x * keep, rows)[1]
        self.rows[layer, start : start + sums.numel()] += column_sums(keep.expand_as(x), rows)[1]

    def add_heads(self, layer: int, g: torch.Tensor, z: torch.Tensor, counted: torch.Tensor,
                  into: str = "main") -> None:  # fmt: skip
        heads, d = z.shape[-2:]
        g2, z2 = g.reshape(-1, heads, d).float(), z.reshape(-1, heads, d).float()
        gz = (g2 * z2).sum((0, 2)).double().cpu()
        if into == "ig":
            self.hig[layer] += gz
            return
        self.hga[layer] += gz
        self.hg[layer] += g2.sum(0).double().cpu()
        keep = counted.reshape(-1, 1, 1).to(z2.dtype)
        self.ha[layer] += (z2 * keep).sum(0).double().cpu()


# ---- the run ----------------------------------------------------------------------------------------------------


def estimate(
    loaded: LoadedModel,
    corpus: Corpus,
    out: str | Path | None = None,
    settings: AttributionSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    world: World | None = None,
) -> Attribution:
    """Estimate, per language of ``corpus``, the effect of ablating each unit on the language's mean NLL.

    With ``out``, each finished language is checkpointed there (a rerun resumes after it); the result is not
    saved here (`recording.attribute.attribute` validates and saves).

    Under torchrun (``world`` of several processes) rank r takes batches r, r + size, … of each language; the
    float64 sums are added across ranks at the end of the language (equal to one process's up to the order of
    float64 additions), and rank 0 alone writes the checkpoint. Every rank returns the same result.
    """
    s = settings or AttributionSettings()
    s.check(loaded)
    if not corpus.languages:
        raise LangneuronsError("no texts to attribute")
    out = None if out is None else Path(out)
    a = loaded.adapter
    max_length = min(s.max_length, loaded.max_length)
    layout = _layout(loaded, s)
    fingerprint = _fingerprint(loaded, corpus, s, max_length)
    world = world or World()
    try:  # rank 0 reads the checkpoint; every rank gets its languages (or the error reading it)
        resumed: tuple[dict[str, Totals] | None, LangneuronsError | None] = (
            (_resume(out, fingerprint, overwrite), None) if world.is_main else (None, None))
    except LangneuronsError as exc:
        resumed = (None, exc)
    done_or_none, error = broadcast_object(resumed, world)
    if error is not None:
        raise error
    done: dict[str, Totals] = done_or_none or {}
    started = time.time()
    neuron_layers = list(range(a.num_layers)) if _wants_neurons(s) else None
    head_layers = a.head_layers if "heads" in s.units else None
    head_dim = a.head_dim(head_layers[0]) if head_layers else 1
    heads = a.num_heads if head_layers else 1
    total = sum(len(corpus.items[lang]) for lang in corpus.languages)
    finished = sum(len(corpus.items[lang]) for lang in corpus.languages if lang in done)
    bar = progress_bar(progress and world.is_main, "sentences")
    ig_passes = (s.steps - 1) * (len(neuron_layers or []) + len(head_layers or []))
    with bar, frozen_weights(loaded.model), torch.enable_grad():
        task = bar.add_task("attribution", total=total, completed=finished, tokens=0)
        seen = 0
        for lang in corpus.languages:
            if lang in done:
                continue
            t = Totals(a.num_layers, a.intermediate_size, heads, head_dim)
            extra = f" (ig, {ig_passes + 1} passes/batch)" if ig_passes else ""
            bar.update(task, description=f"attribution {lang}{extra}")
            for b, batch in enumerate(corpus_batches(loaded, corpus, lang, s, max_length)):
                if b % world.size != world.rank:  # another rank's batch
                    continue
                counted = batch.counted.reshape(-1).to(loaded.device)
                with Sites(loaded, s.site, neuron_layers, head_layers) as sites:
                    loss, n = batch_nll(loaded, batch)
                grads = torch.autograd.grad(loss, sites.tensors(), allow_unused=True)
                _accumulate(t, sites, grads, counted)
                t.nll += float(loss.detach())
                t.tokens += n
                t.counted += float(batch.counted.sum())
                if s.method == "ig":
                    _ig_passes(loaded, s, batch, t, counted, neuron_layers or [], head_layers or [])
                del loss, grads, sites
                seen += int(batch.counted.sum())
                bar.update(task, advance=len(batch.input_ids) * world.size, tokens=seen)  # about (torchrun)
            sum_across([getattr(t, name) for name in Totals.NAMES], world)
            finished += len(corpus.items[lang])
            bar.update(task, completed=finished)
            done[lang] = t
            # the last language too: a validation that is interrupted keeps the estimate
            if out is not None and world.is_main:
                sums = {k: v for lg, tt in done.items() for k, v in tt.to_dict(lg).items()}
                write_safetensors(out / CHECKPOINT, sums, metadata={"fingerprint": fingerprint})
    totals = {lang: done[lang] for lang in corpus.languages}
    tensors = _estimates(totals, s, layout, corpus.languages)
    meta = {
        "languages": corpus.languages,
        "units": list(s.units),
        "method": s.method,
        "steps": s.steps,
        "site": s.site,
        "layout": layout,
        "nll": {lang: float(t.nll / max(float(t.tokens), 1.0)) for lang, t in totals.items()},
        "tokens": {lang: int(t.tokens) for lang, t in totals.items()},
        "units_meaning": "nats per token: estimated increase of the language's mean next-token NLL when the unit "
        "is ablated (positive = the ablation hurts)",
        "provenance": {
            **loaded.describe(),
            "texts": {"spec": corpus.name, "sha256": corpus.sha256(),
                      "sentences": {lang: len(corpus.items[lang]) for lang in corpus.languages}},  # fmt: skip
            "settings": {**asdict(s), "max_length": max_length},
            "fingerprint": fingerprint,
            "mean_ablation": "the unit replaced, at every position, by the mean over the other languages of its "
            "mean on each language's counted tokens (MoE neurons: on the tokens routed to the expert); first order",
            "created": now(),
            **software(),
        },
    }
    meta["provenance"]["estimate_seconds"] = round(time.time() - started, 3)
    return Attribution(tensors, meta)


def _wants_neurons(s: AttributionSettings) -> bool:
    return "neurons" in s.units or "experts" in s.units


def _accumulate(t: Totals, sites: Sites, grads, counted: torch.Tensor, into: str = "main") -> None:
    n = len(sites.neurons)
    for (layer, _kept, orig, rows), g in zip(sites.neurons, grads[:n], strict=True):
        if g is not None:
            t.add_neurons(layer, g, orig.detach(), rows, counted, into)
    for (layer, _kept, orig), g in zip(sites.heads, grads[n:], strict=True):
        if g is not None:
            t.add_heads(layer, g, orig.detach(), counted, into)


def _ig_passes(loaded: LoadedModel, s: AttributionSettings, batch: Batch, t: Totals, counted: torch.Tensor,
               neuron_layers: list[int], head_layers: list[int]) -> None:  # fmt: skip
    """The k − 1 interior steps α = i/k of integrated gradients, one layer of one unit type at a time."""
    for kind, layers in (("neurons", neuron_layers), ("heads", head_layers)):
        for layer in layers:
            for i in range(1, s.steps):
                alpha = i / s.steps

                def edit(k: str, lyr: int, x: torch.Tensor, rows, alpha=alpha) -> torch.Tensor:
                    return x * alpha

                only = [layer]
                with Sites(loaded, s.site, only if kind == "neurons" else None, only if kind == "heads" else None,
                           edit=edit, detach=True) as sites:  # fmt: skip
                    loss, _ = batch_nll(loaded, batch)
                grads = torch.autograd.grad(loss, sites.tensors(), allow_unused=True)
                _accumulate(t, sites, grads, counted, into="ig")


def _others_mean(values: list[torch.Tensor], k: int) -> torch.Tensor:
    others = [v for j, v in enumerate(values) if j != k]
    return torch.stack(others).mean(0)


def _estimates(totals: dict[str, Totals], s: AttributionSettings, layout: dict, languages: list[str]):
    """The file's tensors from the per-language sums (float32, nats per token)."""
    out: dict[str, torch.Tensor] = {}
    neuron_means = [t.a / t.rows.clamp(min=1) for t in totals.values()]
    head_means = [t.ha / t.counted.clamp(min=1) for t in totals.values()]
    for k, (lang, t) in enumerate(totals.items()):
        n = max(float(t.tokens), 1.0)
        patch = {"neurons": -t.ga / n, "heads": -t.hga / n}
        ig = {"neurons": -(t.ga + t.ig) / (n * s.steps), "heads": -(t.hga + t.hig) / (n * s.steps)}
        mean = {}
        if len(totals) > 1:
            mean["neurons"] = (_others_mean(neuron_means, k) * t.g - t.ga) / n
            mean["heads"] = ((_others_mean(head_means, k) * t.hg).sum(-1) - t.hga) / n
        zero = ig if s.method == "ig" else patch
        for unit in s.units:
            base = "neurons" if unit == "experts" else unit
            convert = (lambda x: experts_of(x, layout)) if unit == "experts" else (lambda x: x)
            out[f"{unit}.{lang}"] = convert(zero[base]).float()
            if mean:
                out[f"mean.{unit}.{lang}"] = convert(mean[base]).float()
            if s.method == "ig":
                out[f"patching.{unit}.{lang}"] = convert(patch[base]).float()
        if _wants_neurons(s):
            out[f"activation_mean.neurons.{lang}"] = neuron_means[k].float()
        if "heads" in s.units:
            out[f"activation_mean.heads.{lang}"] = head_means[k].float()
    return out


def experts_of(neurons: torch.Tensor, layout: dict) -> torch.Tensor:
    """``[L, E]``: the sum of each routed expert's neuron columns (zero in dense layers)."""
    moe = layout["moe"]
    e, f = moe["num_experts"], moe["expert_intermediate_size"]
    out = torch.zeros(neurons.shape[0], e, dtype=neurons.dtype)
    for layer in moe["moe_layers"]:
        out[layer] = neurons[layer, : e * f].reshape(e, f).sum(-1)
    return out


def _layout(loaded: LoadedModel, s: AttributionSettings) -> dict[str, Any]:
    a = loaded.adapter
    layout: dict[str, Any] = {"num_layers": a.num_layers, "neurons": a.intermediate_size}
    if "heads" in s.units:
        layout |= {"heads": a.num_heads, "head_layers": a.head_layers, "head_dim": a.head_dim(a.head_layers[0])}
    if a.is_moe:
        layout |= {"experts": a.num_experts, **a.describe()}
    return layout


def _fingerprint(loaded: LoadedModel, corpus: Corpus, s: AttributionSettings, max_length: int) -> str:
    schedule = {"validate": None, "validate_ablations": None}  # validation does not change the estimates
    key = {"model": loaded.describe(), "corpus": corpus.sha256(), "languages": corpus.languages,
           "settings": {**asdict(s), "max_length": max_length, **schedule}}  # fmt: skip
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _resume(out: Path | None, fingerprint: str, overwrite: bool) -> dict[str, Totals]:
    """The languages a checkpoint of the same run already holds (none with ``overwrite``)."""
    if out is None:
        return {}
    if out.exists() and not out.is_dir():
        raise LangneuronsError(f"{out} exists and is not a directory")
    if (out / ATTRIBUTION_JSON).exists() and not overwrite:
        raise LangneuronsError(f"{out} already holds an attribution run; pass --overwrite to replace it")
    path = out / CHECKPOINT
    if overwrite or not path.exists():
        return {}
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        if (fh.metadata() or {}).get("fingerprint") != fingerprint:
            raise LangneuronsError(
                f"{path} is a checkpoint of another attribution run (model, texts or settings differ); "
                "pass --overwrite to start again"
            )
    data = read_safetensors(path)
    langs = sorted({key.split(".")[0] for key in data})
    return {lang: Totals.from_dict(data, lang) for lang in langs}


__all__ = ["CHECKPOINT", "METHODS", "AttributionSettings", "Sites", "batch_nll", "block_columns", "estimate",
           "corpus_batches", "experts_of", "frozen_weights", "language_batches"]
