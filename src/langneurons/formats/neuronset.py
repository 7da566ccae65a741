"""The neuron-set file: which (layer, neuron) belong to which language, and how they were found.

One JSON object (UTF-8), written atomically:

  format             "langneurons-neuronset/1"
  languages          ["en", "fr", ...]        language codes, in the order of the statistics
  num_layers         L                         number of transformer layers
  intermediate_size  F                         MLP neurons per layer; indices are 0..F-1
  site               "act" | "down_in" | null  capture site of the statistics (docs/methods.md §1)
  model              model name or path, or null
  method             "lape" | "entropy-lambda" | ...
  params             every parameter of the method and what it derived. lape: top_rate, filter_rate,
                     bar_ratio, filter_bar, bar, n_target, n_selected, n_passed_filter;
                     entropy-lambda: top_rate, bar_ratio, lambda, lambda_mode ("fixed" | "auto"),
                     bar, norm_max, n_target, n_selected and, for "auto", autosweep {lo, hi, eps,
                     max_steps, steps: [[lambda, neurons assigned to all K languages], ...]};
                     both: probability (formula), tie_break. Imported sets: imported_from, file,
                     file_sha256, intermediate_size_inferred (true: F is only largest index + 1)
  neurons            {lang: [[sorted unique neuron indices of layer 0], ..., [... of layer L-1]]}
  selected           [[sorted unique indices of layer 0], ...]: every neuron the method selected,
                     with or without a language (a superset of every language's neurons)
  source             the statistics it came from: run, corpus, corpus_sha256, revision, dtype,
                     langneurons_version (of the recording), identified_with (this tool's version);
                     for imported sets: file, identified_with. Sets identified from mixture-of-experts
                     statistics add ``moe``, the recording's neuron-axis layout (num_experts,
                     expert_intermediate_size, top_k, moe_layers, shared_expert_slots,
                     shared_intermediate_size, dense_intermediate_size; docs/formats.md): which columns
                     exist in each layer and which expert each belongs to (`column_groups`). Without it
                     every column of every layer counts as a neuron (dense models, older sets)
  summary            informational only (ignored when read): pairs per language, distinct neurons,
                     neurons per class

Classes (per layer, from ``neurons`` and ``selected``): *specific* = neuron of exactly 1 language,
*related* = of 2..K-1 languages, *agnostic* = of all K languages, *unassigned* = selected but of no
language. With K = 1 every assigned neuron counts as specific; with K = 2 *related* is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import read_json, write_json

NEURONSET_FORMAT = "langneurons-neuronset/1"
CLASSES = ("specific", "related", "agnostic", "unassigned")


@dataclass
class NeuronSet:
    """Per-language neuron indices per layer, the selected neurons, and the provenance of the set."""

    languages: list[str]
    num_layers: int
    intermediate_size: int
    neurons: dict[str, list[list[int]]]
    selected: list[list[int]]
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    site: str | None = None
    model: str | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        counts = ", ".join(f"{lang} {self.count(lang)}" for lang in self.languages[:10])
        more = ", …" if len(self.languages) > 10 else ""
        return (
            f"NeuronSet({self.method}, {len(self.languages)} languages, {self.n_distinct()} neurons, "
            f"{self.n_pairs()} pairs ({counts}{more}), {self.num_layers} layers × {self.intermediate_size}, "
            f"site {self.site})"
        )

    # ---- views -------------------------------------------------------------------------------------
    def _mask_of(self, layers: list[list[int]]) -> torch.Tensor:
        mask = torch.zeros(self.num_layers, self.intermediate_size, dtype=torch.bool)
        for layer, idx in enumerate(layers):
            mask[layer, torch.tensor(idx, dtype=torch.long)] = True
        return mask

    def _lang(self, lang: str) -> list[list[int]]:
        if lang not in self.neurons:
            raise LangneuronsError(
                f"language {lang!r} is not in this neuron set (have: {','.join(self.languages)})"
            )
        return self.neurons[lang]

    def mask(self, lang: str) -> torch.Tensor:
        """Bool ``[L, F]``: True where the neuron belongs to ``lang``."""
        return self._mask_of(self._lang(lang))

    def describe(self, path: str | None = None) -> dict[str, Any]:
        """Where the set came from and how it was made, for the provenance of a result that used it."""
        return {"path": path, "method": self.method, "params": self.params, "site": self.site, "model": self.model,
                "source": self.source}  # fmt: skip

    def to_mask(self, lang: str | None = None) -> torch.Tensor:
        """Bool ``[layers, neurons]``: ``lang``'s neurons, or (None) every neuron of any language — the plain
        tensor other tools take (columns of TransformerLens' ``blocks.{l}.mlp.hook_post`` for a ``down_in``
        set of a gated model or any set of a non-gated one; docs/adapters.md has the mapping)."""
        return self.mask(lang) if lang is not None else self.language_counts() > 0

    @classmethod
    def from_mask(
        cls,
        masks: torch.Tensor | dict[str, torch.Tensor],
        *,
        method: str = "custom",
        site: str | None = "act",
        model: str | None = None,
    ) -> NeuronSet:
        """A neuron set from plain bool ``[layers, neurons]`` tensors: one per language (a dict), or one
        tensor for a single language called ``custom``."""
        masks = masks if isinstance(masks, dict) else {"custom": masks}
        if not masks:
            raise LangneuronsError("from_mask: give at least one language's mask")
        shapes = {tuple(m.shape) for m in masks.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise LangneuronsError(f"from_mask: masks must all be [layers, neurons], got shapes {sorted(shapes)}")
        num_layers, size = next(iter(shapes))
        neurons = {lang: [m[layer].bool().nonzero().reshape(-1).tolist() for layer in range(num_layers)]
                   for lang, m in masks.items()}  # fmt: skip
        union = torch.stack([m.bool() for m in masks.values()]).any(0)
        selected = [union[layer].nonzero().reshape(-1).tolist() for layer in range(num_layers)]
        ns = cls(list(masks), num_layers, size, neurons, selected, method, site=site, model=model)
        ns.validate()
        return ns

    def pairs(self, lang: str) -> list[tuple[int, int]]:
        """``lang``'s neurons as (layer, neuron) pairs, layer by layer."""
        return [(layer, j) for layer, idx in enumerate(self._lang(lang)) for j in idx]

    def to_pandas(self) -> Any:
        """A tidy frame: one row per (language, layer, neuron), with the neuron's class."""
        import pandas as pd

        n = self.language_counts()
        k = len(self.languages)
        rows = [
            (lang, layer, j, "specific" if n[layer, j] == 1 else "agnostic" if n[layer, j] == k else "related")
            for lang in self.languages
            for layer, j in self.pairs(lang)
        ]
        return pd.DataFrame(rows, columns=["language", "layer", "neuron", "class"])

    def selected_mask(self) -> torch.Tensor:
        """Bool ``[L, F]``: True where the method selected the neuron (with or without a language)."""
        return self._mask_of(self.selected)

    def language_counts(self) -> torch.Tensor:
        """Int ``[L, F]``: how many languages each neuron belongs to."""
        total = torch.zeros(self.num_layers, self.intermediate_size, dtype=torch.int16)
        for lang in self.languages:
            total += self.mask(lang)
        return total

    def class_masks(self) -> dict[str, torch.Tensor]:
        """Bool ``[L, F]`` per class: specific (1 language), related (2..K-1), agnostic (K), unassigned."""
        n, k = self.language_counts(), len(self.languages)
        return {
            "specific": n == 1,
            "related": (n >= 2) & (n < k),
            "agnostic": (n == k) & (n >= 2),
            "unassigned": self.selected_mask() & (n == 0),
        }

    def classes(self) -> list[dict[str, list[int]]]:
        """Per layer: class name → sorted neuron indices (see the module docstring for the classes)."""
        masks = self.class_masks()
        return [
            {name: m[layer].nonzero().squeeze(1).tolist() for name, m in masks.items()}
            for layer in range(self.num_layers)
        ]

    def class_counts(self) -> dict[str, int]:
        """Number of neurons in each class over all layers."""
        return {name: int(m.sum()) for name, m in self.class_masks().items()}

    def counts_per_layer(self, lang: str) -> list[int]:
        """Number of ``lang``'s neurons in each layer."""
        return [len(layer) for layer in self._lang(lang)]

    def count(self, lang: str) -> int:
        """Number of ``lang``'s neurons over all layers."""
        return sum(self.counts_per_layer(lang))

    def n_pairs(self) -> int:
        """Number of (language, neuron) pairs."""
        return sum(self.count(lang) for lang in self.languages)

    def n_distinct(self) -> int:
        """Number of neurons that belong to at least one language."""
        return int((self.language_counts() > 0).sum())

    def overlap(self) -> torch.Tensor:
        """Int64 ``[K, K]``: neurons shared by each pair of languages (diagonal = each language's count)."""
        flat = torch.stack([self.mask(lang).reshape(-1) for lang in self.languages]).to(torch.float32)
        return (flat @ flat.T).round().to(torch.int64)

    def column_groups(self) -> torch.Tensor | None:
        """Int64 ``[L, F]``: the unit each column belongs to (see `column_groups`); None without an MoE layout."""
        return column_groups(self.source.get("moe"), self.num_layers, self.intermediate_size)

    def existing_mask(self) -> torch.Tensor:
        """Bool ``[L, F]``: the columns that are neurons of their layer (all of them for dense models)."""
        return existing_columns(self.source.get("moe"), self.num_layers, self.intermediate_size)

    # ---- checks ------------------------------------------------------------------------------------
    def check_compatible(
        self, num_layers: int, intermediate_size: int, site: str | None = None, model: str | None = None
    ) -> None:
        """Refuse a target of another shape (or site / model name, where both sides know it)."""
        mine = f"{self.num_layers} layers × {self.intermediate_size} neurons"
        theirs = f"{num_layers} layers × {intermediate_size} neurons"
        if (self.num_layers, self.intermediate_size) != (num_layers, intermediate_size):
            raise LangneuronsError(
                f"neuron set is for {mine} ({self.model or 'unknown model'}) but the target has {theirs}"
                f" ({model or 'unknown model'})"
            )
        if site is not None and self.site is not None and site != self.site:
            raise LangneuronsError(f"neuron set was found at site {self.site!r} but the target uses {site!r}")
        if model is not None and self.model is not None and model != self.model:
            raise LangneuronsError(
                f"neuron set is for model {self.model!r} ({mine}) but the target is {model!r} ({theirs})"
            )

    def validate(self) -> None:
        """Check the set's internal consistency; one-line LangneuronsError naming the first problem."""
        _validate(self.to_dict(summary=False), "neuron set")

    # ---- files -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts for a human reader of the file (ignored when the file is read)."""
        return {
            "pairs_per_language": {lang: self.count(lang) for lang in self.languages},
            "pairs": self.n_pairs(),
            "distinct_neurons": self.n_distinct(),
            "selected": sum(len(layer) for layer in self.selected),
            "classes": self.class_counts(),
        }

    def to_dict(self, summary: bool = True) -> dict[str, Any]:
        """The JSON object of the file."""
        data: dict[str, Any] = {
            "format": NEURONSET_FORMAT,
            "languages": list(self.languages),
            "num_layers": self.num_layers,
            "intermediate_size": self.intermediate_size,
            "site": self.site,
            "model": self.model,
            "method": self.method,
            "params": self.params,
            "neurons": {lang: self.neurons[lang] for lang in self.languages},
            "selected": self.selected,
            "source": self.source,
        }
        if summary:
            data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "neuron set") -> NeuronSet:
        """Build and validate a set from its JSON object."""
        _validate(data, where)
        return cls(
            languages=list(data["languages"]),
            num_layers=int(data["num_layers"]),
            intermediate_size=int(data["intermediate_size"]),
            neurons={lang: [list(layer) for layer in data["neurons"][lang]] for lang in data["languages"]},
            selected=[list(layer) for layer in data["selected"]],
            method=str(data["method"]),
            params=dict(data.get("params") or {}),
            site=data.get("site"),
            model=data.get("model"),
            source=dict(data.get("source") or {}),
        )

    def save(self, path: str | Path) -> None:
        """Validate, then write the JSON file atomically."""
        self.validate()
        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> NeuronSet:
        """Read and validate a neuron-set file; one-line errors for anything wrong."""
        path = Path(path)
        if not path.is_file():
            raise LangneuronsError(f"no neuron-set file at {path}")
        return cls.from_dict(read_json(path), str(path))


# The fields of a stats manifest's ``moe`` entry that say how the neuron axis is laid out (docs/formats.md).
LAYOUT_FIELDS = ("num_experts", "expert_intermediate_size", "top_k", "moe_layers", "shared_expert_slots",
                 "shared_intermediate_size", "dense_intermediate_size")  # fmt: skip


def moe_layout(moe: dict[str, Any] | None) -> dict[str, Any] | None:
    """The layout fields of a manifest's ``moe`` entry (what a neuron set keeps as ``source.moe``)."""
    if not moe:
        return None
    return {key: moe[key] for key in LAYOUT_FIELDS if key in moe}


def column_groups(moe: dict[str, Any] | None, num_layers: int, width: int) -> torch.Tensor | None:
    """Int64 ``[L, W]``: which unit of its layer each column belongs to; None for a dense model (``moe`` None).

    In an MoE layer (``moe["moe_layers"]``) routed expert e's columns ``e·F .. e·F+F-1`` are ``e`` and the
    shared expert's ``E·F .. E·F+F_shared-1`` are ``E``; in a dense layer columns ``0..F_dense-1`` are ``0``.
    Every other column (padding: the layer has no such neuron, it never fires) is ``-1``.
    """
    if not moe:
        return None
    try:
        e, f = int(moe["num_experts"]), int(moe["expert_intermediate_size"])
        shared, dense = int(moe.get("shared_intermediate_size") or 0), int(moe.get("dense_intermediate_size") or 0)
        moe_layers = sorted({int(layer) for layer in moe["moe_layers"]})
    except (KeyError, TypeError, ValueError):
        raise LangneuronsError(f"malformed mixture-of-experts layout {moe!r} (docs/formats.md)") from None
    if e <= 0 or f <= 0 or e * f + shared > width or dense > width or any(not 0 <= x < num_layers for x in moe_layers):
        raise LangneuronsError(
            f"mixture-of-experts layout ({e} experts × {f}, shared {shared}, dense {dense}, MoE layers "
            f"{moe_layers}) does not fit {num_layers} layers × {width} columns"
        )
    groups = torch.full((num_layers, width), -1, dtype=torch.int64)
    groups[:, :dense] = 0
    moe_row = torch.full((width,), -1, dtype=torch.int64)
    moe_row[: e * f] = torch.arange(e * f) // f
    moe_row[e * f : e * f + shared] = e
    if moe_layers:
        groups[moe_layers] = moe_row
    return groups


def existing_columns(moe: dict[str, Any] | None, num_layers: int, width: int) -> torch.Tensor:
    """Bool ``[L, W]``: True where the column is a neuron of its layer (`column_groups` ≥ 0); all True when
    ``moe`` is None (a dense model, or a set that does not say)."""
    groups = column_groups(moe, num_layers, width)
    return torch.ones(num_layers, width, dtype=torch.bool) if groups is None else groups >= 0


def load_neuronset(path: str | Path) -> NeuronSet:
    """Read and validate a neuron-set file (same as `NeuronSet.load`)."""
    return NeuronSet.load(path)


def _index_tensor(values: Any, size: int, what: str) -> torch.Tensor:
    """A per-layer index list as a tensor; raises ValueError with a short reason when it is not valid."""
    if not isinstance(values, list):
        raise ValueError(f"{what} is not a list")
    if not values:
        return torch.zeros(0, dtype=torch.long)
    try:
        t = torch.tensor(values)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{what} holds something other than integers") from None
    if t.dtype != torch.int64 or t.dim() != 1:
        raise ValueError(f"{what} holds something other than integers")
    if int(t.min()) < 0 or int(t.max()) >= size:
        raise ValueError(f"{what} has an index outside 0..{size - 1}")
    if t.numel() > 1 and not bool((t[1:] > t[:-1]).all()):
        raise ValueError(f"{what} is not sorted and unique")
    return t


def _validate(data: Any, where: str) -> None:
    """Validate a neuron-set JSON object; one-line LangneuronsError naming ``where`` and the problem."""

    def bad(reason: str) -> LangneuronsError:
        return LangneuronsError(f"{where}: {reason}")

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    if data.get("format") != NEURONSET_FORMAT:
        raise bad(f"format is {data.get('format')!r}, expected {NEURONSET_FORMAT!r}")
    missing = [
        k
        for k in ("languages", "num_layers", "intermediate_size", "method", "neurons", "selected")
        if k not in data
    ]
    if missing:
        raise bad(f"missing field(s) {', '.join(missing)}")
    languages, n_layers, size = data["languages"], data["num_layers"], data["intermediate_size"]
    if not isinstance(languages, list) or not all(isinstance(x, str) and x for x in languages):
        raise bad("languages must be a list of language codes")
    if len(set(languages)) != len(languages):
        raise bad("languages has duplicates")
    for name, value in (("num_layers", n_layers), ("intermediate_size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise bad(f"{name} must be a positive integer, got {value!r}")
    neurons = data["neurons"]
    if not isinstance(neurons, dict) or set(neurons) != set(languages):
        raise bad("neurons must have exactly one entry per language in languages")
    for key in ("site", "model"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise bad(f"{key} must be a string or null")
    for key in ("params", "source"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise bad(f"{key} must be an object")
    moe = (data.get("source") or {}).get("moe")
    if moe is not None:
        if not isinstance(moe, dict):
            raise bad("source.moe must be an object")
        try:
            column_groups(moe, n_layers, size)
        except LangneuronsError as exc:
            raise bad(str(exc)) from None
    selected_layers = data["selected"]
    if not isinstance(selected_layers, list) or len(selected_layers) != n_layers:
        raise bad(f"selected must have num_layers = {n_layers} layers")
    try:
        selected = [_index_tensor(x, size, f"selected layer {i}") for i, x in enumerate(selected_layers)]
        for lang in languages:
            layers = neurons[lang]
            if not isinstance(layers, list) or len(layers) != n_layers:
                raise ValueError(f"neurons[{lang}] must have num_layers = {n_layers} layers")
            for i, x in enumerate(layers):
                t = _index_tensor(x, size, f"neurons[{lang}] layer {i}")
                if t.numel() and not bool(torch.isin(t, selected[i]).all()):
                    raise ValueError(f"neurons[{lang}] layer {i} has neurons missing from selected")
    except ValueError as exc:
        raise bad(str(exc)) from None


__all__ = [
    "CLASSES",
    "LAYOUT_FIELDS",
    "NEURONSET_FORMAT",
    "NeuronSet",
    "column_groups",
    "existing_columns",
    "load_neuronset",
    "moe_layout",
]
