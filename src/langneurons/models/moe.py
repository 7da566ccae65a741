"""Mixture-of-experts layers: per-expert neurons through transformers' experts-implementation registry.

transformers ≥ 5 keeps a layer's experts as one module with 3-D ``gate_up_proj`` / ``down_proj`` and
dispatches its forward through ``ExpertsInterface`` (``transformers/integrations/moe.py``). We register
one more implementation, ``"langneurons"``: it computes exactly what the model's own implementation
computes — ``grouped_mm`` (the default) op for op, any other through the eager loop's per-expert rows,
ops and ``index_add_`` order — so the output is bit-identical, and, while a consumer is attached, hands
every layer's routed activations to it as one block (rows sorted by expert, :class:`Rows` saying which
token and expert each row is) for reading and editing. With nothing attached it runs the same path as
with a consumer: grouped_mm where the model had it, else the eager loop. A model set to another kernel
(``batched_mm``, …) therefore runs the eager loop while wrapped, so that an edited row and an unedited row
(or a baseline condition) never differ by a kernel's rounding (issue 19, part 7).

Neuron layout of an MoE layer (``W`` columns, the stats file's F): routed expert e's neuron j is column
``e·F + j``; a shared (always-on) expert follows at ``E·F`` (it occupies ``ceil(F_shared / F)`` expert
slots); a dense MLP layer of the same model uses columns ``0..F_dense-1``. Unused columns never fire.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from langneurons.errors import LangneuronsError
from langneurons.models.base import SITES, Adapter, BlockFn, Rows, SiteFn, submodule

IMPLEMENTATION = "langneurons"
MIN_TRANSFORMERS = "5.0"
# fn(layer, probs [N, E] float32 (the router's probability of every expert), top_k_index [N, k]).
RouterFn = Callable[[int, torch.Tensor, torch.Tensor], None]
# fn(layer, logits [N, E]) -> (bias [N, E] or None, masked [N, E] bool or None): a routing edit.
RouteEditFn = Callable[[int, torch.Tensor], tuple[torch.Tensor | None, torch.Tensor | None]]
# (layer, router logits before the edit, expert choice before [N, k], expert choice after [N, k])
RouteObserveFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


def _interface():
    try:
        from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
    except ImportError:  # pragma: no cover - older transformers (per-expert ModuleLists)
        import transformers

        raise LangneuronsError(
            f"mixture-of-experts models need transformers >= {MIN_TRANSFORMERS} (fused experts and the "
            f"experts-implementation registry); this is transformers {transformers.__version__}"
        ) from None
    return ALL_EXPERTS_FUNCTIONS


def register() -> None:
    """Make ``experts_implementation="langneurons"`` known to transformers (idempotent)."""
    interface = _interface()
    if IMPLEMENTATION not in interface:
        type(interface).register(IMPLEMENTATION, experts_forward)


class _Taps:
    """What is attached to one experts module: its layer, column start and consumers per site."""

    def __init__(self, layer: int, fallback: str | None):
        self.layer = layer
        self.fallback = fallback or "eager"
        self.fns: dict[str, list[BlockFn]] = {site: [] for site in SITES}


def _eager(module: nn.Module) -> Callable:
    forward = type(module).forward
    return getattr(forward, "__wrapped__", forward)


def experts_forward(self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The recording implementation, mirroring the one the model had: transformers' grouped_mm op for op
    (`_grouped_forward`), or else the eager loop (same rows per expert, same order, same ops) in three phases
    with the sites exposed between them; one stable sort replaces the per-expert mask scans."""
    taps: _Taps | None = getattr(self, "_langneurons_taps", None)
    grouped = _runs_grouped(self, taps)
    if taps is None or not any(taps.fns.values()):
        # Idle: the same path as an edit takes, so an edited row and an unedited one (a baseline condition run
        # on its own) differ only by the edit: grouped_mm where the model runs it, else the eager loop — also
        # for other kernels (batched_mm, …), whose rounding would otherwise differ from the edited rows'.
        if grouped:
            return _interface()["grouped_mm"](self, hidden_states, top_k_index, top_k_weights)
        return _eager(self)(self, hidden_states, top_k_index, top_k_weights)
    if grouped:
        return _grouped_forward(self, hidden_states, top_k_index, top_k_weights, taps)
    n_experts, n_tokens = self.num_experts, hidden_states.shape[0]
    final = torch.zeros_like(hidden_states)
    with torch.no_grad():  # one stable sort gives each expert's rows in the eager loop's order (k slot, token)
        flat = top_k_index.t().reshape(-1)
        order = torch.sort(flat, stable=True).indices
        counts = torch.bincount(flat, minlength=n_experts).tolist()[:n_experts]  # the one host sync
        routed = order[: sum(counts)]
        all_pos, all_tokens = routed // n_tokens, routed % n_tokens
    parts = []  # (expert, token_idx, top_k_pos, act, up)
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        top_k_pos, token_idx = all_pos[start : start + n], all_tokens[start : start + n]
        start += n
        gate_up = _project(self, hidden_states[token_idx], "gate_up_proj" if self.has_gate else "up_proj", e)
        act, up = _split(self, gate_up)
        parts.append([e, token_idx, top_k_pos, act, up])
    if not parts:
        return final
    sizes = [int(p[1].numel()) for p in parts]
    groups = torch.repeat_interleave(
        torch.arange(n_experts, device=all_tokens.device), torch.tensor(counts, device=all_tokens.device)
    )
    rows = Rows(tokens=all_tokens, groups=groups, n_groups=n_experts, start=0)
    if taps.fns["act"]:
        new = _call(taps.fns["act"], taps.layer, torch.cat([p[3] for p in parts]), rows)
        if new is not None:
            for p, chunk in zip(parts, torch.split(new, sizes), strict=True):
                p[3] = chunk
    hidden = [_combine(self, p[3], p[4]) for p in parts]
    if taps.fns["down_in"]:
        new = _call(taps.fns["down_in"], taps.layer, torch.cat(hidden), rows)
        if new is not None:
            hidden = list(torch.split(new, sizes))
    for (e, token_idx, top_k_pos, _, _), h in zip(parts, hidden, strict=True):
        out = _project(self, h, "down_proj", e)
        if getattr(self, "has_post_expert_norm", False):
            out = self.post_expert_norm(out)
        out = out * top_k_weights[token_idx, top_k_pos, None]
        final.index_add_(0, token_idx, out.to(final.dtype))
    return final


def _runs_grouped(module: nn.Module, taps: _Taps | None) -> bool:
    """Whether this experts module runs transformers' grouped_mm (the model's kernel, available, not expert
    parallel); every other kernel runs as the eager loop, edited or not."""
    return (taps is not None and taps.fallback == "grouped_mm" and _grouped_linear() is not None
            and not getattr(module, "_is_expert_parallel", 0))  # fmt: skip


def _grouped_forward(self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                     top_k_weights: torch.Tensor, taps: _Taps) -> torch.Tensor:  # fmt: skip
    """transformers' ``grouped_mm`` path, op for op (so bit-identical to it), with the sites exposed between the
    gate/up and the down grouped matmuls: recording a model that runs grouped_mm costs only the consumers."""
    linear = _grouped_linear()
    device, n_tokens, k = hidden_states.device, hidden_states.shape[0], top_k_index.shape[-1]
    expert_ids, perm = torch.sort(top_k_index.reshape(-1))
    weights = top_k_weights.reshape(-1)[perm]
    tokens = perm // k
    histc_input = expert_ids.float() if device.type in ("cpu", "mps") else expert_ids.int()
    per_expert = torch.histc(histc_input, bins=self.num_experts, min=0, max=self.num_experts - 1)
    offsets = torch.cumsum(per_expert, dim=0, dtype=torch.int32)
    name = "gate_up_proj" if self.has_gate else "up_proj"
    bias = getattr(self, f"{name}_bias")[expert_ids] if self.has_bias else None
    proj = linear(hidden_states[tokens], getattr(self, name), offsets, bias=bias, is_transposed=self.is_transposed)
    act, up = _split(self, proj)
    rows = Rows(tokens=tokens, groups=expert_ids, n_groups=self.num_experts, start=0)
    if taps.fns["act"]:
        act = _or(_call(taps.fns["act"], taps.layer, act, rows), act)
    hidden = _combine(self, act, up)
    if taps.fns["down_in"]:
        hidden = _or(_call(taps.fns["down_in"], taps.layer, hidden, rows), hidden)
    bias = self.down_proj_bias[expert_ids] if self.has_bias else None
    out = linear(hidden, self.down_proj, offsets, bias=bias, is_transposed=self.is_transposed)
    if getattr(self, "has_post_expert_norm", False):
        out = self.post_expert_norm(out)
    out = out * weights.unsqueeze(-1)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=device)
    return out[inverse].view(n_tokens, k, -1).sum(dim=1).to(hidden_states.dtype)


def _grouped_linear() -> Callable | None:
    """transformers' grouped linear (None before it had one: the eager loop is used instead)."""
    try:
        from transformers.integrations.moe import _grouped_linear as linear
    except ImportError:  # pragma: no cover - older transformers
        return None
    return linear


def _or(new: torch.Tensor | None, old: torch.Tensor) -> torch.Tensor:
    return old if new is None else new


def _call(fns: list[BlockFn], layer: int, x: torch.Tensor, rows: Rows) -> torch.Tensor | None:
    changed = None
    for fn in fns:
        new = fn(layer, x if changed is None else changed, rows)
        if new is not None:
            changed = new
    return changed


def _project(module: nn.Module, x: torch.Tensor, name: str, e: int) -> torch.Tensor:
    """One expert's linear map, written as each layout's eager forward writes it."""
    weight = getattr(module, name)[e]
    bias = getattr(module, f"{name}_bias")[e] if getattr(module, "has_bias", False) else None
    if getattr(module, "is_transposed", False):
        out = x @ weight
        return out if bias is None else out + bias
    return F.linear(x, weight) if bias is None else F.linear(x, weight, bias)


def _split(module: nn.Module, gate_up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(act, up) of a gated expert: act is the ``act`` site; ``_combine(act, up)`` is ``down_in``."""
    if not getattr(module, "has_gate", True):
        return module.act_fn(gate_up), None
    custom = SPLITS.get(type(module).__name__)
    if custom is not None:
        return custom(module, gate_up)
    from transformers.integrations.moe import _default_apply_gate

    if getattr(type(module), "_apply_gate", _default_apply_gate) is not _default_apply_gate:
        return None, module._apply_gate(gate_up)  # unknown gate: only down_in is defined
    gate, up = gate_up.chunk(2, dim=-1)
    return module.act_fn(gate), up


def _combine(module: nn.Module, act: torch.Tensor | None, up: torch.Tensor | None) -> torch.Tensor:
    if act is None:  # unknown gate: `up` already holds _apply_gate's output
        return up
    if up is None:
        return act
    combine = COMBINES.get(type(module).__name__)
    return combine(act, up) if combine is not None else act * up


def _gpt_oss_split(module: nn.Module, gate_up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gpt-oss: interleaved [gate0, up0, ...], clamped; act = gate·σ(α·gate), down_in = (up + 1)·act."""
    gate, up = gate_up[..., ::2], gate_up[..., 1::2]
    gate = gate.clamp(min=None, max=module.limit)
    up = up.clamp(min=-module.limit, max=module.limit)
    return gate * torch.sigmoid(gate * module.alpha), up


SPLITS: dict[str, Callable[[nn.Module, torch.Tensor], tuple[Any, Any]]] = {
    "GptOssExperts": _gpt_oss_split,
    "OpenAIPrivacyFilterExperts": _gpt_oss_split,
}
COMBINES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "GptOssExperts": lambda act, up: (up + 1) * act,
    "OpenAIPrivacyFilterExperts": lambda act, up: (up + 1) * act,
}


# --- routers: probabilities and re-routing from edited logits (one function per routing rule) -------------


def softmax_topk(module: nn.Module, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixtral, Qwen2/3-MoE, OLMoE: softmax over experts, top-k, optionally renormalised."""
    probs = F.softmax(logits, dtype=torch.float, dim=-1)
    top, index = torch.topk(probs, module.top_k, dim=-1)
    if getattr(module, "norm_topk_prob", True):
        top /= top.sum(dim=-1, keepdim=True)
    if getattr(module, "norm_topk_prob", None) is not None:  # Qwen/OLMoE cast back; Mixtral keeps float32
        top = top.to(logits.dtype)
    return top, index


def topk_softmax(module: nn.Module, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gpt-oss: top-k of the logits, softmax over those k."""
    top, index = torch.topk(logits, module.top_k, dim=-1)
    return F.softmax(top, dim=1, dtype=top.dtype), index


def deepseek_v2_route(module: nn.Module, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V2: softmax, greedy or group-limited greedy top-k, times the routed scaling factor."""
    scores = logits.softmax(dim=-1, dtype=torch.float32)
    if module.topk_method == "group_limited_greedy":
        e, g = module.num_experts, module.num_group
        group_scores = scores.view(-1, g, e // g).max(dim=-1).values
        group_idx = torch.topk(group_scores, k=module.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        keep = group_mask.unsqueeze(-1).expand(-1, g, e // g).reshape(-1, e)
        scores = scores.masked_fill(~keep.bool(), 0.0)
    weights, index = torch.topk(scores, k=module.top_k, dim=-1, sorted=False)
    return weights * module.routed_scaling_factor, index


def deepseek_v3_route(module: nn.Module, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3: sigmoid scores, bias-corrected group-limited choice, optional renormalisation."""
    scores = logits.sigmoid()
    choice = scores + module.e_score_correction_bias
    e, g = module.num_experts, module.num_group
    group_scores = choice.view(-1, g, e // g).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = torch.topk(group_scores, k=module.topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    keep = group_mask.unsqueeze(-1).expand(-1, g, e // g).reshape(-1, e)
    choice = choice.masked_fill(~keep.bool(), float("-inf"))
    index = torch.topk(choice, k=module.top_k, dim=-1, sorted=False)[1]
    weights = scores.gather(1, index)
    if module.norm_topk_prob:
        weights /= weights.sum(dim=-1, keepdim=True) + 1e-20
    return weights * module.routed_scaling_factor, index


def softmax_probs(logits: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits.float(), dim=-1)


def sigmoid_probs(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().sigmoid()


class MoeAdapter(Adapter):
    """An MoE family: where its MoE block, experts, router and shared expert are, and how it routes."""

    is_moe = True
    moe_path: ClassVar[str] = "mlp"  # relative to a layer
    experts_attr: ClassVar[str] = "experts"
    router_attr: ClassVar[str] = "gate"
    shared_attr: ClassVar[str | None] = None
    route: ClassVar[Callable] = staticmethod(softmax_topk)
    probs: ClassVar[Callable] = staticmethod(softmax_probs)
    # a router edit biases the logits; for sigmoid routers the same bias moves σ(logit) (DeepSeek-V3)

    def __init__(self, model: nn.Module):
        super().__init__(model)
        register()
        self.moe_layers = [i for i, layer in enumerate(self.layers) if self._experts(i) is not None]
        if not self.moe_layers:
            raise LangneuronsError(f"{type(self).__name__}: no mixture-of-experts layer found in this model")
        first = self._experts(self.moe_layers[0])
        self.num_experts = int(first.num_experts)
        down = first.down_proj
        transposed = getattr(first, "is_transposed", False)
        self.expert_intermediate_size = int(down.shape[1] if transposed else down.shape[2])
        shared = self._shared(self.moe_layers[0])
        self.shared_intermediate_size = 0 if shared is None else int(_linear_in(shared.down_proj))
        self.shared_slots = math.ceil(self.shared_intermediate_size / self.expert_intermediate_size)
        dense = [i for i in range(self.num_layers) if i not in self.moe_layers]
        self.dense_layers = dense
        self.dense_intermediate_size = max((_linear_in(self._get_mlp(i).down_proj) for i in dense), default=0)
        self._select_implementation()

    # -- layout ------------------------------------------------------------------------------------------------

    @property
    def intermediate_size(self) -> int:
        """Columns per layer: (E + shared slots)·F, or a wider dense layer's intermediate size."""
        moe_width = (self.num_experts + self.shared_slots) * self.expert_intermediate_size
        return max(moe_width, self.dense_intermediate_size)

    def describe(self) -> dict[str, Any]:
        """The manifest fields that say how the neuron axis is laid out (docs/formats.md)."""
        return {
            "moe": {
                "num_experts": self.num_experts,
                "expert_intermediate_size": self.expert_intermediate_size,
                "top_k": int(self._router(self.moe_layers[0]).top_k),
                "moe_layers": self.moe_layers,
                "shared_expert_slots": self.shared_slots,
                "shared_intermediate_size": self.shared_intermediate_size,
                "dense_intermediate_size": self.dense_intermediate_size,
                "layout": "column e·F + j = routed expert e, neuron j; shared expert from E·F; dense layers 0..",
            }
        }

    def down_column(self, layer: int, neuron: int) -> torch.Tensor:
        """Column ``neuron`` of the layer's neuron axis (docs/formats.md layout): routed expert e's neuron j
        at e·F + j, the shared expert from E·F, a dense layer's neurons from 0."""
        experts = self._experts(layer)
        if experts is None:
            down = self._get_mlp(layer).down_proj.weight
            if not 0 <= neuron < down.shape[1]:
                raise LangneuronsError(f"neuron {neuron} is out of range 0..{down.shape[1] - 1} in dense layer {layer}")
            return down[:, neuron].detach()
        f = self.expert_intermediate_size
        start = self.num_experts * f
        if 0 <= neuron < start:
            e, j = divmod(neuron, f)
            down = experts.down_proj
            transposed = getattr(experts, "is_transposed", False)
            return (down[e, j, :] if transposed else down[e, :, j]).detach()
        shared = self._shared(layer)
        if shared is not None and 0 <= neuron - start < self.shared_intermediate_size:
            return shared.down_proj.weight[:, neuron - start].detach()
        raise LangneuronsError(f"neuron {neuron} is not a neuron of layer {layer} (no expert column there)")

    # -- modules -----------------------------------------------------------------------------------------------

    def _get_mlp(self, layer: int) -> nn.Module:
        return submodule(self.layers[layer], self.moe_path, self)

    def _experts(self, layer: int) -> nn.Module | None:
        return getattr(self._get_mlp(layer), self.experts_attr, None)

    def _router(self, layer: int) -> nn.Module:
        return getattr(self._get_mlp(layer), self.router_attr)

    def _shared(self, layer: int) -> nn.Module | None:
        return None if self.shared_attr is None else getattr(self._get_mlp(layer), self.shared_attr, None)

    def _select_implementation(self) -> None:
        """Route every experts module through ``langneurons`` (which falls back to the previous one when idle)."""
        before = getattr(self.config, "_experts_implementation", None)
        if hasattr(self.model, "set_experts_implementation"):
            self.model.set_experts_implementation(IMPLEMENTATION)
        else:  # a bare experts stack without PreTrainedModel (tests)
            self.config._experts_implementation = IMPLEMENTATION
        for i in self.moe_layers:
            experts = self._experts(i)
            if getattr(experts, "_langneurons_taps", None) is None:
                experts._langneurons_taps = _Taps(i, before if before != IMPLEMENTATION else "eager")

    # -- hooks -------------------------------------------------------------------------------------------------

    def hook(self, site: str, fn: SiteFn, layers: list[int] | None = None):
        raise LangneuronsError(
            "this analysis reads dense MLP activations; for mixture-of-experts models it is not available "
            "(consumers use hook_blocks)"
        )

    def hook_blocks(self, site: str, fn: BlockFn, layers: list[int] | None = None) -> list:
        """Call ``fn(layer, block, rows)`` for the routed experts, the shared expert and dense layers."""
        if site not in SITES:
            raise LangneuronsError(f"unknown site {site!r}; choose one of {', '.join(SITES)}")
        handles: list = []
        shared_start = self.num_experts * self.expert_intermediate_size
        for i in range(self.num_layers) if layers is None else layers:
            experts = self._experts(i)
            if experts is not None:
                if site == "act" and _split_unknown(experts):
                    raise LangneuronsError(
                        f"{type(experts).__name__} has a gate langneurons does not know; use --site down_in"
                    )
                handles.append(_TapHandle(experts._langneurons_taps.fns[site], fn))
                shared = self._shared(i)
                if shared is not None:
                    handles += _dense_hooks(shared, site, i, fn, Rows(start=shared_start))
            else:
                handles += _dense_hooks(self._get_mlp(i), site, i, fn, Rows())
        return handles

    def hook_router(self, fn: RouterFn, layers: list[int] | None = None) -> list:
        """Call ``fn(layer, probs, top_k_index)`` after each MoE layer's router."""
        handles = []
        for i in self.moe_layers if layers is None else layers:

            def hook(module, _args, output, layer=i):
                logits, _scores, index = output[0], output[1], output[2]
                fn(layer, type(self).probs(logits), index)

            handles.append(self._router(i).register_forward_hook(hook))
        return handles

    def edit_routing(
        self, fn: RouteEditFn, layers: list[int] | None = None, observe: RouteObserveFn | None = None
    ) -> list:
        """Re-route each MoE layer from its logits edited by ``fn`` (added bias, masked experts never chosen);
        ``observe`` sees each layer's logits and its expert choice before and after the edit."""
        handles = []
        for i in self.moe_layers if layers is None else layers:

            def hook(module, _args, output, layer=i):
                logits = output[0]
                bias, masked = fn(layer, logits)
                if bias is None and masked is None:
                    return None
                edited = logits if bias is None else logits + bias.to(logits.dtype)
                if masked is not None:
                    edited = edited.masked_fill(masked, float("-inf"))
                scores, index = type(self).route(module, edited)
                if observe is not None:
                    observe(layer, logits, output[2], index)
                return (edited, scores, index, *output[3:])

            handles.append(self._router(i).register_forward_hook(hook))
        return handles


class _TapHandle:
    """Removes one consumer from an experts module's tap list (like torch's RemovableHandle)."""

    def __init__(self, fns: list, fn: BlockFn):
        self.fns, self.fn = fns, fn
        fns.append(fn)

    def remove(self) -> None:
        if self.fn in self.fns:
            self.fns.remove(self.fn)


def _split_unknown(experts: nn.Module) -> bool:
    from transformers.integrations.moe import _default_apply_gate

    custom = getattr(type(experts), "_apply_gate", _default_apply_gate) is not _default_apply_gate
    return getattr(experts, "has_gate", True) and custom and type(experts).__name__ not in SPLITS


def _dense_hooks(mlp: nn.Module, site: str, layer: int, fn: BlockFn, rows: Rows) -> list:
    """A gated dense MLP (shared expert, dense layer): act_fn output or down_proj input, as one block."""

    def post(_module, _args, output):
        new = fn(layer, output.reshape(-1, output.shape[-1]), rows)
        return None if new is None else new.reshape(output.shape)

    def pre(_module, args):
        x = args[0]
        new = fn(layer, x.reshape(-1, x.shape[-1]), rows)
        return None if new is None else (new.reshape(x.shape), *args[1:])

    if site == "act":
        return [mlp.act_fn.register_forward_hook(post)]
    return [mlp.down_proj.register_forward_pre_hook(pre)]


def _linear_in(module: nn.Module) -> int:
    return int(module.in_features if hasattr(module, "in_features") else module.weight.shape[1])
