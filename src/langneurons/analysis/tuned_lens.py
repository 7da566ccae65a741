"""Fit a tuned lens (Belrose et al. 2023; docs/methods.md §16): per decoder layer an affine map ``A_l h + b_l``
(identity at the start) so that ``softmax(W_U norm_final(A_l h_l + b_l))`` matches the model's final
distribution, by KL(final ‖ lens), on held-out multilingual text.

Cost on a CPU is the unembedding (V × H per position and layer), so training uses a vocabulary subset per
step: the union of the top-``top_k`` tokens of the final distribution at the step's positions and
``negatives`` uniformly drawn tokens (so mass the lens puts on other tokens is still penalised), with both
distributions renormalised on it. The reported KL — per layer, logit lens vs tuned lens, on positions of
validation sentences the training never saw — is over the full vocabulary. The last layer's map stays the
identity (the lens there is the model's output). Resumable: a checkpoint ``OUT.partial`` is written every
``checkpoint_every`` steps and picked up by the same command.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from langneurons.analysis.lens import kl_to_final
from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.provenance import now, software
from langneurons.formats.tuned_lens import TunedLens
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar


@dataclass
class TunedLensSettings:
    """Everything that decides the fitted maps (all go in the file)."""

    steps: int = 250
    batch_tokens: int = 64  # positions per step
    lr: float = 1e-3
    top_k: int = 16  # final-distribution tokens per position kept in the step's vocabulary
    negatives: int = 2048  # uniformly drawn vocabulary tokens added per step
    validation_every: int = 5  # every n-th sentence of each language is held out for the reported KL
    validation_positions: int = 128
    max_length: int = 64
    batch_size: int = 8
    checkpoint_every: int = 25
    seed: int = 0

    def validate(self) -> None:
        for name in ("steps", "batch_tokens", "top_k", "validation_every", "validation_positions", "max_length",
                     "batch_size", "checkpoint_every"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise LangneuronsError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.negatives < 0 or self.lr <= 0:
            raise LangneuronsError("--negatives must be ≥ 0 and --lr positive")
        if self.validation_every < 2:
            raise LangneuronsError("--validation-every must be at least 2 (every n-th sentence is held out)")


def collect(loaded: LoadedModel, texts: list[str], s: TunedLensSettings, bar=None, task=None) -> torch.Tensor:
    """The residual stream after every layer at every real position (BOS excluded): ``[N, L, H]``."""
    out = []
    bos = loaded.tokenizer.bos_token_id
    for i in range(0, len(texts), s.batch_size):
        batch = texts[i : i + s.batch_size]
        enc = loaded.tokenizer(batch, padding=True, truncation=True, max_length=s.max_length, return_tensors="pt")
        hidden = loaded.adapter.residual_stream(enc.input_ids, enc.attention_mask)  # [B, L, T, H]
        mask = enc.attention_mask.bool()
        if bos is not None:
            mask = mask & (enc.input_ids != bos)
        out.append(hidden.permute(0, 2, 1, 3)[mask.to(hidden.device)].cpu())
        if bar is not None:
            bar.update(task, advance=len(batch))
    return torch.cat(out)


def full_kl(loaded: LoadedModel, hidden: torch.Tensor, lens: TunedLens | None, bar=None, task=None) -> list[float]:
    """Mean KL(final ‖ lens) per layer over the rows of ``hidden [N, L, H]``, full vocabulary, in nats."""
    total = torch.zeros(hidden.shape[1], dtype=torch.float64)
    for chunk in hidden.split(32):
        x = lens.apply(chunk) if lens is not None else chunk
        logp = torch.log_softmax(loaded.adapter.lens_logits(x), -1)
        total += kl_to_final(logp).double().sum(0).cpu()
        if bar is not None:
            bar.update(task, advance=chunk.shape[0])
    return (total / max(hidden.shape[0], 1)).tolist()


def _top_tokens(loaded: LoadedModel, final: torch.Tensor, k: int, bar=None, task=None) -> torch.Tensor:
    """Top-``k`` token ids of the final distribution at each row of ``final [N, H]`` (the last layer)."""
    out = []
    for chunk in final.split(64):
        out.append(loaded.adapter.lens_logits(chunk).topk(k, -1).indices.cpu())
        if bar is not None:
            bar.update(task, advance=chunk.shape[0])
    return torch.cat(out)


def train_tuned_lens(
    loaded: LoadedModel,
    corpus: Corpus,
    settings: TunedLensSettings | None = None,
    *,
    out: str | Path | None = None,
    progress: bool = True,
) -> TunedLens:
    """Fit the maps on ``corpus`` (every language's sentences but each ``validation_every``-th, which are held
    out for the reported KL); with ``out`` the lens is saved there and training resumes from ``OUT.partial``."""
    s = settings or TunedLensSettings()
    s.validate()
    started = time.time()
    adapter = loaded.adapter
    n_layers, hidden_size = adapter.num_layers, adapter.hidden_size
    train_texts, val_texts = [], []
    for lang in corpus.languages:
        for i, text in enumerate(corpus.texts(lang)):
            (val_texts if i % s.validation_every == 0 else train_texts).append(text)
    if not train_texts or not val_texts:
        raise LangneuronsError("lens-train needs at least 2 sentences per language (training and validation)")
    partial = Path(str(out) + ".partial") if out is not None else None
    bar = progress_bar(progress, "")
    with bar:
        task = bar.add_task("lens-train: residuals", total=len(train_texts) + len(val_texts))
        train = collect(loaded, train_texts, s, bar, task)
        val = collect(loaded, val_texts, s, bar, task)
        gen = torch.Generator().manual_seed(s.seed)
        val = val[torch.randperm(val.shape[0], generator=gen)[: s.validation_positions]]
        task = bar.add_task("lens-train: top tokens of the output", total=int(train.shape[0]))
        top = _top_tokens(loaded, train[:, -1], s.top_k, bar, task)  # [N, k]
    weight = adapter.unembedding().weight.detach().float().cpu()
    head_bias = getattr(adapter.unembedding(), "bias", None)
    head_bias = head_bias.detach().float().cpu() if head_bias is not None else None
    delta = torch.zeros(n_layers - 1, hidden_size, hidden_size, requires_grad=True)
    bias = torch.zeros(n_layers - 1, hidden_size, requires_grad=True)
    optim = torch.optim.Adam([delta, bias], lr=s.lr)
    step = 0
    key = {"settings": asdict(s), "model": loaded.name, "texts": corpus.sha256()}
    if partial is not None and partial.is_file():
        state = torch.load(partial, weights_only=False)
        if state.get("key") == key:
            with torch.no_grad():
                delta.copy_(state["delta"])
                bias.copy_(state["bias"])
            optim.load_state_dict(state["optim"])
            gen.set_state(state["gen"])
            step = int(state["step"])
    losses: list[float] = []
    norm_device = next(adapter.model.parameters()).device
    bar = progress_bar(progress, "steps")
    with bar:
        task = bar.add_task("lens-train: fitting", total=s.steps, completed=step)
        while step < s.steps:
            rows = torch.randint(0, train.shape[0], (s.batch_tokens,), generator=gen)
            negatives = torch.randint(0, weight.shape[0], (s.negatives,), generator=gen)
            vocab = torch.unique(torch.cat([top[rows].flatten(), negatives]))
            w_s = weight[vocab]
            b_s = head_bias[vocab] if head_bias is not None else None
            h = train[rows]  # [B, L, H]
            with torch.no_grad():
                final = _restricted_logits(adapter, h[:, -1], w_s, b_s, norm_device)
                target = torch.log_softmax(final, -1)  # [B, S]
            x = h[:, :-1] + torch.einsum("blh,lgh->blg", h[:, :-1], delta) + bias  # A = I + Δ
            logp = torch.log_softmax(_restricted_logits(adapter, x, w_s, b_s, norm_device), -1)  # [B, L-1, S]
            p = target.exp().unsqueeze(1)
            loss = (p * (target.unsqueeze(1) - logp)).sum(-1).mean(0).sum()
            optim.zero_grad()
            loss.backward()
            optim.step()
            step += 1
            losses.append(loss.item() / (n_layers - 1))
            bar.update(task, advance=1, description=f"lens-train: fitting (KL on the subset {losses[-1]:.3f})")
            if partial is not None and (step % s.checkpoint_every == 0) and step < s.steps:
                _checkpoint(partial, key, delta, bias, optim, gen, step)
    lens_weight = torch.eye(hidden_size).expand(n_layers, hidden_size, hidden_size).clone()
    lens_bias = torch.zeros(n_layers, hidden_size)
    with torch.no_grad():
        lens_weight[:-1] += delta.detach()
        lens_bias[:-1] = bias.detach()
    lens = TunedLens(lens_weight, lens_bias, {})
    bar = progress_bar(progress, "positions")
    with bar:
        task = bar.add_task("lens-train: held-out KL", total=2 * int(val.shape[0]))
        kl_logit, kl_tuned = full_kl(loaded, val, None, bar, task), full_kl(loaded, val, lens, bar, task)
    lens.info = {
        **loaded.describe(),
        "num_layers": n_layers,
        "hidden_size": hidden_size,
        "settings": asdict(s),
        "steps_done": step,
        "texts": {"spec": corpus.name, "sha256": corpus.sha256(), "languages": corpus.languages,
                  "train_sentences": len(train_texts), "validation_sentences": len(val_texts),
                  "train_positions": int(train.shape[0]), "validation_positions": int(val.shape[0])},  # fmt: skip
        "kl_validation": {"logit": kl_logit, "tuned": kl_tuned},
        "loss_last": losses[-20:],
        "wall_seconds": round(time.time() - started, 3),
        "created": now(),
        **software(),
    }
    if out is not None:
        lens.save(out)
        if partial is not None and partial.exists():
            partial.unlink()
    return lens


def _restricted_logits(adapter, hidden: torch.Tensor, w_s: torch.Tensor, b_s: torch.Tensor | None, device):
    """The lens logits on a vocabulary subset: the final norm (the model's, frozen), ``W_U[S]`` and the
    model's logit edits (soft-capping etc.)."""
    normed = adapter.final_transform(hidden.to(device)).float().cpu()
    logits = normed @ w_s.T
    if b_s is not None:
        logits = logits + b_s
    return adapter.scale_logits(logits)


def _checkpoint(path: Path, key: dict[str, Any], delta, bias, optim, gen, step: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"key": key, "delta": delta.detach(), "bias": bias.detach(), "optim": optim.state_dict(),
                "gen": gen.get_state(), "step": step}, tmp)  # fmt: skip
    tmp.replace(path)
