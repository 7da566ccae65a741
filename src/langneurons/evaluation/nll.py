"""Token log-likelihoods from the model's own logits, padding and the BOS position excluded."""

from __future__ import annotations

from collections.abc import Callable

import torch

from langneurons.models.loading import LoadedModel
from langneurons.recording.plan import encode
from langneurons.recording.spans import encode_spans


def sequence_nll(
    loaded: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, predict: torch.Tensor
) -> torch.Tensor:
    """Per row: summed −log p(token_t | tokens_<t) over positions t where ``predict`` [B, T] is True.

    Position 0 has no context and is never predicted.
    """
    dev = loaded.device
    with torch.no_grad():
        logits = loaded.model(input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev)).logits
    logits = logits[:, :-1].float()
    target = input_ids[:, 1:].to(dev)
    keep = predict[:, 1:].to(dev)
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return ((lse - picked) * keep).sum(1).double().cpu()


def text_nll(
    loaded: LoadedModel,
    texts: list[str],
    batch_size: int,
    max_length: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[float, int]:
    """Total NLL and number of predicted tokens of ``texts`` (real text tokens; BOS/EOS/padding not).

    ``on_batch(sentences, tokens)`` is called after each batch (progress).
    """
    nll, tokens = sentence_nll(loaded, texts, batch_size, max_length, on_batch)
    return float(nll.sum()), int(tokens.sum())


def sentence_nll(
    loaded: LoadedModel,
    texts: list[str],
    batch_size: int,
    max_length: int,
    on_batch: Callable[[int, int], None] | None = None,
    spans: list | None = None,
    count: str = "all",
    templated: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text, in input order: summed NLL (float64) and predicted tokens (int64), for bootstraps over texts.

    ``on_batch(sentences, tokens)`` is called after each batch (progress). With ``spans`` (a prompt/response
    corpus's, ``Corpus.spans[lang]``) only ``count``'s tokens are predicted: ``count="response"`` gives the
    NLL of the response given the prompt (recording/spans.py has the token rule).
    """
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    nll = torch.zeros(len(texts), dtype=torch.float64)
    tokens = torch.zeros(len(texts), dtype=torch.int64)
    for i in range(0, len(order), batch_size):
        rows = torch.tensor(order[i : i + batch_size])
        chosen = [texts[j] for j in rows.tolist()]
        if spans is None:
            b = encode(loaded.tokenizer, chosen, max_length, count_bos=False)
        else:
            b = encode_spans(loaded.tokenizer, chosen, [spans[j] for j in rows.tolist()], count, templated,
                             max_length, False)  # fmt: skip
        nll[rows] = sequence_nll(loaded, b.input_ids, b.attention_mask, b.counted)
        tokens[rows] = b.counted[:, 1:].sum(1)
        if on_batch is not None:
            on_batch(len(b.input_ids), int(b.counted[:, 1:].sum()))
    return nll, tokens


def encode_left(tokenizer, texts: list[str]):
    """Tokenize a batch left-padded, as generation needs (the tokenizer is set back to right padding)."""
    tokenizer.padding_side = "left"
    try:
        return tokenizer(texts, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "right"
