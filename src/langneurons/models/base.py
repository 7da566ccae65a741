"""What a "neuron" is: the adapter interface every model family implements.

A neuron is one coordinate of a layer's MLP intermediate vector. Two capture sites
(docs/methods.md §1): ``act`` = output of the activation function (``act_fn(gate_proj(x))`` for
gated MLPs) and ``down_in`` = the input of the down projection (``act * up`` for gated MLPs;
the same tensor as ``act`` for non-gated ones). Every other module reads and edits neurons
only through :meth:`Adapter.hook`.

An attention *head*'s output is its slice of the input of the attention output projection
(``o_proj`` in LLaMA-style families): that input is ``[B, T, heads · head_dim]``, head-major, and
:meth:`Adapter.hook_heads` hands it on as ``[B, T, heads, head_dim]``. Zeroing head h there equals
zeroing the output projection's input columns ``h·d .. h·d+d-1`` (tests/test_heads.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from langneurons.errors import LangneuronsError
from langneurons.modelspec import SITES

HEADS = "heads"  # the site of attention heads: the output projection's input, split into heads
# fn(layer_index, activation [..., F]) -> replacement tensor, or None to leave it unchanged.
SiteFn = Callable[[int, torch.Tensor], torch.Tensor | None]


@dataclass(frozen=True)
class Rows:
    """Which neurons a 2-D block ``x [R, w]`` of a layer's activations holds.

    Row r is token ``tokens[r]`` of the flattened batch (B·T order; None: every token, in order).
    Its column j is the layer's neuron ``start + groups[r]·w + j`` (``groups`` None: ``start + j``);
    ``n_groups`` is how many groups (experts) the layer has. Dense layers give ``Rows()``.
    """

    tokens: torch.Tensor | None = None
    groups: torch.Tensor | None = None
    n_groups: int = 1
    start: int = 0


# fn(layer_index, x [R, w], rows) -> replacement [R, w], or None to leave it unchanged.
BlockFn = Callable[[int, torch.Tensor, Rows], torch.Tensor | None]


class Adapter:
    """Knows where one family's MLP neurons live; subclasses set the class attributes and paths."""

    model_types: ClassVar[tuple[str, ...]] = ()
    gated: ClassVar[bool] = True
    layers_path: ClassVar[str] = "model.layers"
    act_path: ClassVar[str] = "mlp.act_fn"  # relative to a layer
    down_path: ClassVar[str] = "mlp.down_proj"  # relative to a layer
    intermediate_attr: ClassVar[tuple[str, ...]] = ("intermediate_size",)
    final_norm_path: ClassVar[str] = "model.norm"  # after the last decoder layer, before the LM head (§15, §16)
    o_path: ClassVar[str] = "self_attn.o_proj"  # attention output projection, relative to a layer
    heads_attr: ClassVar[tuple[str, ...]] = ("num_attention_heads", "n_head", "num_heads")

    def __init__(self, model: nn.Module):
        self.model = model
        self.config = model.config
        self.layers: list[nn.Module] = list(submodule(model, self.layers_path, self))

    @property
    def family(self) -> str:
        """The model type this adapter serves here (e.g. ``gemma3_text``)."""
        return str(getattr(self.config, "model_type", self.model_types[0]))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def intermediate_size(self) -> int:
        for attr in self.intermediate_attr:
            value = getattr(self.config, attr, None)
            if value:
                return int(value)
        return 4 * int(self.config.hidden_size)

    def act_module(self, layer: int) -> nn.Module:
        """The module whose output is the ``act`` site of a layer."""
        return submodule(self.layers[layer], self.act_path, self)

    def down_module(self, layer: int) -> nn.Module:
        """The down projection of a layer (its input is ``down_in``)."""
        return submodule(self.layers[layer], self.down_path, self)

    def down_weight(self, layer: int) -> torch.Tensor:
        """The down projection's weight as [hidden, F] (column j = neuron j's output direction)."""
        return self.down_module(layer).weight

    def down_column(self, layer: int, neuron: int) -> torch.Tensor:
        """Neuron ``neuron`` of ``layer``'s output weights: the [hidden] vector it adds, times its activation,
        to the residual stream (column ``neuron`` of the down projection; docs/methods.md §15)."""
        width = self.intermediate_size
        if not 0 <= neuron < width:
            raise LangneuronsError(f"neuron {neuron} is out of range 0..{width - 1}")
        return self.down_weight(layer)[:, neuron].detach()

    def final_norm_gain(self) -> torch.Tensor:
        """The final norm's per-dimension gain ``g`` [hidden] (ones when it has none)."""
        norm = self.final_norm()
        weight = None if norm is None else getattr(norm, "weight", None)
        if weight is None:
            return torch.ones(self.hidden_size)
        return weight.detach()

    def unembedding_weight(self) -> torch.Tensor:
        """The unembedding ``W_U`` [vocab, hidden] (the LM head's weight, tied or not)."""
        head = self.unembedding()
        if getattr(head, "weight", None) is None:
            raise LangneuronsError(f"{type(self).__name__}: this model's LM head has no weight matrix")
        return head.weight.detach()

    def body(self) -> nn.Module:
        """The model without its LM head: recording needs no logits (docs/methods.md §11)."""
        return self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model

    is_moe: ClassVar[bool] = False

    def hook_blocks(self, site: str, fn: BlockFn, layers: list[int] | None = None) -> list[RemovableHandle]:
        """Like :meth:`hook`, for consumers that also understand sparse blocks (MoE experts): ``fn``
        sees 2-D blocks and their :class:`Rows`. Dense families pass each layer as one block."""

        def dense(layer: int, act: torch.Tensor) -> torch.Tensor | None:
            new = fn(layer, act.reshape(-1, act.shape[-1]), Rows())
            return None if new is None else new.reshape(act.shape)

        return self.hook(site, dense, layers)

    def hook(self, site: str, fn: SiteFn, layers: list[int] | None = None) -> list[RemovableHandle]:
        """Call ``fn(layer, activation)`` at ``site`` of each layer; a returned tensor replaces it."""
        if site not in SITES:
            raise LangneuronsError(f"unknown site {site!r}; choose one of {', '.join(SITES)}")
        handles = []
        for i in range(self.num_layers) if layers is None else layers:
            if site == "down_in" and self.gated:
                handles.append(self.down_module(i).register_forward_pre_hook(_pre_hook(i, fn)))
            else:
                handles.append(self.act_module(i).register_forward_hook(_post_hook(i, fn)))
        return handles

    @property
    def hidden_size(self) -> int:
        """Width of the residual stream (the decoder layers' output)."""
        for attr in ("hidden_size", "n_embd", "d_model"):
            value = getattr(self.config, attr, None)
            if value:
                return int(value)
        raise LangneuronsError(f"{type(self).__name__}: the config names no hidden size")

    def hook_residual(self, fn: SiteFn, layers: list[int] | None = None) -> list[RemovableHandle]:
        """Call ``fn(layer, hidden [B, T, H])`` on each decoder layer's output (the residual stream
        after the block); a returned tensor replaces it (tuple outputs keep their other members)."""
        handles = []
        for i in range(self.num_layers) if layers is None else layers:
            handles.append(self.layers[i].register_forward_hook(_residual_hook(i, fn)))
        return handles


    @torch.no_grad()
    def residual_stream(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, last_only: bool = False
    ) -> torch.Tensor:
        """The residual stream after every decoder layer, float32: ``[B, L, T, H]``, or with ``last_only``
        ``[B, L, H]`` at each row's last real token (right padding). Runs the body only (no LM head)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        last = attention_mask.sum(1) - 1
        kept: dict[int, torch.Tensor] = {}

        def keep(layer: int, hidden: torch.Tensor) -> None:
            h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)] if last_only \
                else hidden
            kept[layer] = h.detach().float()

        handles = self.hook_residual(keep)
        try:
            device = next(self.model.parameters()).device
            self.body()(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False)
        finally:
            for handle in handles:
                handle.remove()
        first = kept[0].device
        return torch.stack([kept[i].to(first) for i in range(self.num_layers)], dim=1)

    # ---- the logit lens (docs/methods.md §16): residual stream → the model's own output distribution ----
    def final_norm(self) -> nn.Module | None:
        """The norm the model applies after its last decoder layer (None where the model sets it to None, as
        OPT-350m-style models do)."""
        return submodule(self.model, self.final_norm_path, self)

    def unembedding(self) -> nn.Module:
        """The LM head (hidden → vocabulary logits)."""
        head = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
        if head is None:
            raise LangneuronsError(f"{type(self.model).__name__} has no language-model head (logit lens)")
        return head

    def final_transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the model does to the last layer's output before the LM head: the final norm (and any
        projection the family adds there). ``hidden [..., H]``."""
        norm = self.final_norm()
        return hidden if norm is None else norm(hidden)

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's own edits of the head's logits: Gemma-2/3 soft-capping, Cohere's ``logit_scale``,
        Granite's ``logits_scaling``."""
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        scale = getattr(self.config, "logit_scale", None)
        if scale and self.family == "cohere":
            logits = logits * scale
        scaling = getattr(self.config, "logits_scaling", None)
        if scaling and self.family == "granite":
            logits = logits / scaling
        return logits

    def lens_logits(self, hidden: torch.Tensor, transform: bool = True) -> torch.Tensor:
        """The logit lens: ``W_U · norm_final(hidden)`` with the model's logit edits, float32 ``[..., V]``.

        ``hidden`` is a residual stream after some decoder layer (:meth:`hook_residual`); for the last
        layer this is the model's own output logits. ``transform=False`` skips the final norm (for an
        input that is already normed)."""
        head = self.unembedding()
        x = self.final_transform(hidden) if transform else hidden
        weight = head.weight
        x = x.to(weight.dtype)
        logits = head(x) if weight.device == x.device else head(x.to(weight.device))
        return self.scale_logits(logits.float())

    # -- attention heads -------------------------------------------------------------------------------

    @property
    def num_heads(self) -> int:
        """Attention (query) heads per layer."""
        for attr in self.heads_attr:
            value = getattr(self.config, attr, None)
            if value:
                return int(value)
        raise LangneuronsError(f"{type(self).__name__}: the config names no number of attention heads")

    def head_module(self, layer: int) -> nn.Module | None:
        """The attention output projection of a layer (its input holds the heads); None where the layer
        has no softmax attention (e.g. the linear-attention layers of hybrid models)."""
        obj = self.layers[layer]
        for part in self.o_path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    @property
    def head_layers(self) -> list[int]:
        """Layers that have attention heads (all of them, for most families)."""
        return [i for i in range(self.num_layers) if self.head_module(i) is not None]

    def head_dim(self, layer: int) -> int:
        """Width of one head's output at a layer (the output projection's input width / heads)."""
        module = self.head_module(layer)
        if module is None:
            raise LangneuronsError(f"layer {layer} has no attention heads")
        width = module.in_features if hasattr(module, "in_features") else module.weight.shape[0]  # Conv1D: [in, out]
        if int(width) % self.num_heads:
            raise LangneuronsError(
                f"{type(self).__name__}: the attention output projection takes {width} inputs, not a multiple "
                f"of {self.num_heads} heads"
            )
        return int(width) // self.num_heads

    def check_heads(self) -> None:
        """Refuse, with one line, a variant whose head outputs never pass the output projection's forward."""
        if not self.head_layers:
            raise LangneuronsError(f"{type(self).__name__}: no layer with attention heads found")

    def hook_heads(self, fn: SiteFn, layers: list[int] | None = None) -> list[RemovableHandle]:
        """Call ``fn(layer, heads [..., H, d])`` on the input of each layer's attention output projection,
        split into its H heads; a returned tensor (same shape) replaces it. Layers without heads are skipped."""
        self.check_heads()
        handles = []
        for i in self.head_layers if layers is None else layers:
            module = self.head_module(i)
            if module is None:
                continue
            handles.append(module.register_forward_pre_hook(_heads_hook(i, fn, self.num_heads)))
        return handles


class NonGatedAdapter(Adapter):
    """A non-gated MLP (up → act → down; ``down_in`` = ``act``), by default in the GPT-style layout
    ``transformer.h[l].mlp.act`` → ``mlp.dense_4h_to_h`` that BLOOM, Falcon and GPT-NeoX share."""

    gated: ClassVar[bool] = False
    layers_path: ClassVar[str] = "transformer.h"
    act_path: ClassVar[str] = "mlp.act"
    down_path: ClassVar[str] = "mlp.dense_4h_to_h"
    final_norm_path: ClassVar[str] = "transformer.ln_f"
    o_path: ClassVar[str] = "self_attention.dense"


def _residual_hook(layer: int, fn: SiteFn):
    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        new = fn(layer, hidden)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


def _heads_hook(layer: int, fn: SiteFn, heads: int):
    def hook(_module, args):
        x = args[0]
        new = fn(layer, x.unflatten(-1, (heads, x.shape[-1] // heads)))
        return None if new is None else (new.flatten(-2), *args[1:])

    return hook


def _post_hook(layer: int, fn: SiteFn):
    def hook(_module, _args, output):
        return fn(layer, output)

    return hook


def _pre_hook(layer: int, fn: SiteFn):
    def hook(_module, args):
        new = fn(layer, args[0])
        return None if new is None else (new, *args[1:])

    return hook


def submodule(root: nn.Module, path: str, adapter: Adapter) -> nn.Module:
    """``root``'s submodule at the dotted ``path``; a one-line error naming the adapter where it is missing."""
    obj = root
    for part in path.split("."):
        if not hasattr(obj, part):
            raise LangneuronsError(
                f"{type(adapter).__name__}: expected submodule {path!r} in {type(root).__name__}, "
                f"missing {part!r} (an unsupported variant of this architecture?)"
            )
        obj = getattr(obj, part)
    return obj
