"""Latent language on natural text (docs/methods.md §16): per layer and text language, the language share of the lens's
top-1 tokens (the §15 token-language rule) — no word list needed.

Every real token position of every sentence (BOS excluded) is read through the lens at every layer; the top-1 token's
language is decided by :class:`~langneurons.analysis.token_language.TokenLanguages` over the text languages and English,
with the whole corpus (every line of each language, not only the sentences read) as the vocabulary evidence for Latin-
script (and shared-script) tokens. Per text language and layer the result gives the share of positions whose top-1 token
is in each language (``shares``), and for short ``own`` (the text's language) and ``en``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from langneurons.analysis.lens import LENS_FORMAT, kl_to_final
from langneurons.analysis.token_language import TokenLanguages
from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.provenance import now, software
from langneurons.formats.tuned_lens import TunedLens
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.recording.distributed import World, gather_to_main, share
from langneurons.recording.spans import encode_spans


def _top1_per_layer(loaded: LoadedModel, hidden: torch.Tensor, tuned: TunedLens | None):
    """``hidden [N, L, H]`` → the lens's top-1 token per layer [N, L] (the tuned lens where given) and the
    KL(final ‖ layer) [L] summed over N, per lens (``logit``, and ``tuned`` where given)."""
    top = []
    kl = {name: torch.zeros(hidden.shape[1], dtype=torch.float64) for name in ("logit", "tuned")
          if name == "logit" or tuned is not None}  # fmt: skip
    for chunk in hidden.split(64):
        logp = torch.log_softmax(loaded.adapter.lens_logits(chunk), -1)  # [n, L, V]
        kl["logit"] += kl_to_final(logp).double().sum(0).cpu()
        if tuned is not None:
            logp = torch.log_softmax(loaded.adapter.lens_logits(tuned.apply(chunk)), -1)
            kl["tuned"] += kl_to_final(logp).double().sum(0).cpu()
        top.append(logp.argmax(-1))
    return torch.cat(top), kl


def vocabulary_text(corpus: Corpus, languages: list[str]) -> dict[str, list[str]]:
    """The §15 vocabulary evidence: per language, all of that corpus's text for it (not only the sentences
    read through the lens), and the given text where the corpus cannot be read again (an in-memory one)."""
    from langneurons.data import load_corpus

    out = {}
    for lang in languages:
        try:
            out[lang] = load_corpus(corpus.name, [lang]).texts(lang)
        except LangneuronsError:
            out[lang] = corpus.texts(lang) if lang in corpus.items else []
    return out


def text_task(
    loaded: LoadedModel,
    corpus: Corpus,
    *,
    batch_size: int = 4,
    max_length: int = 64,
    tuned: TunedLens | None = None,
    tuned_path: str | None = None,
    progress: bool = True,
    world: World | None = None,
    count: str = "all",
) -> dict[str, Any] | None:
    """Per text language and layer, the share of the lens's top-1 tokens in each language (rank 0 returns
    the result under torchrun; sentences are split over ranks in fixed batches). On prompt/response records
    ``count`` (all | response | prompt) picks the positions read, with `record --count`'s boundary rule."""
    world = world or World()
    started = time.time()
    if tuned is not None:
        tuned.check_compatible(loaded.adapter.num_layers, loaded.adapter.hidden_size, loaded.name)
    langs = corpus.languages
    considered = list(dict.fromkeys([*langs, "en"]))
    texts = {lang: corpus.texts(lang) for lang in langs}
    vocab_text = vocabulary_text(corpus, considered)
    classify = TokenLanguages(loaded.tokenizer, considered, vocab_text)
    jobs = [(lang, i) for lang in langs for i in range(0, len(texts[lang]), batch_size)]
    mine = [jobs[j] for j in share(len(jobs), world)]
    n_layers = loaded.adapter.num_layers
    counts: dict[str, torch.Tensor] = {}  # lang -> [L, K + 1] (considered languages, then None)
    kl: dict[str, dict[str, torch.Tensor]] = {}
    positions: dict[str, int] = {}
    bar = progress_bar(progress and world.is_main, "sentences")
    with bar:
        task = bar.add_task("lens text", total=sum(len(texts[lang][i : i + batch_size]) for lang, i in mine))
        for lang, i in mine:
            batch = texts[lang][i : i + batch_size]
            if corpus.spans is not None:  # prompt/response records: the positions `count` names (recording/spans.py)
                enc = encode_spans(loaded.tokenizer, batch, corpus.spans[lang][i : i + batch_size], count,
                                   corpus.templated, max_length, count_bos=False)  # fmt: skip
                hidden = loaded.adapter.residual_stream(enc.input_ids, enc.attention_mask)  # [B, L, T, H]
                mask = enc.counted.clone()
            else:
                enc = loaded.tokenizer(batch, padding=True, truncation=True, max_length=max_length,
                                       return_tensors="pt")  # fmt: skip
                hidden = loaded.adapter.residual_stream(enc.input_ids, enc.attention_mask)  # [B, L, T, H]
                mask = enc.attention_mask.bool().clone()
                bos = loaded.tokenizer.bos_token_id
                if bos is not None:
                    mask &= enc.input_ids != bos
            flat = hidden.permute(0, 2, 1, 3)[mask.to(hidden.device)]  # [N, L, H]
            top, kl_sum = _top1_per_layer(loaded, flat, tuned)
            table = counts.setdefault(lang, torch.zeros(n_layers, len(considered) + 1, dtype=torch.int64))
            for layer in range(n_layers):
                for tid in top[:, layer].tolist():
                    owner = classify(tid)
                    table[layer, considered.index(owner) if owner is not None else len(considered)] += 1
            for name, value in kl_sum.items():
                kl.setdefault(lang, {})[name] = kl.get(lang, {}).get(name, 0) + value
            positions[lang] = positions.get(lang, 0) + int(flat.shape[0])
            bar.update(task, advance=len(batch))
    gathered = gather_to_main((counts, kl, positions), world)
    if gathered is None:
        return None
    total_counts: dict[str, torch.Tensor] = {}
    total_kl: dict[str, torch.Tensor] = {}  # lens -> summed over languages
    total_pos: dict[str, int] = {}
    for c, k, p in gathered:
        for lang in c:
            total_counts[lang] = total_counts.get(lang, 0) + c[lang]
            for name, value in k[lang].items():
                total_kl[name] = total_kl.get(name, 0) + value
            total_pos[lang] = total_pos.get(lang, 0) + p[lang]
    share_out: dict[str, dict[str, Any]] = {}
    for lang in langs:
        table = total_counts[lang].double()
        frac = table / table.sum(1, keepdim=True).clamp(min=1)
        shares = {other: frac[:, j].tolist() for j, other in enumerate(considered)}
        share_out[lang] = {"own": shares[lang], "en": shares["en"], "shares": shares,
                           "none": frac[:, -1].tolist(), "positions": total_pos[lang]}  # fmt: skip
    n_all = max(sum(total_pos.values()), 1)
    return {
        "format": LENS_FORMAT,
        "task": "text",
        "count": count if corpus.spans is not None else "all",
        "model": loaded.name,
        "lens": "tuned" if tuned is not None else "logit",
        "num_layers": n_layers,
        "layers": list(range(n_layers)),
        "languages": langs,
        "token_languages": considered,
        "share": share_out,
        "kl": {name: (value / n_all).tolist() for name, value in total_kl.items()},
        "provenance": {
            **loaded.describe(),
            "texts": {"spec": corpus.name, "sha256": corpus.sha256(),
                      "sentences": {lang: len(texts[lang]) for lang in langs}},  # fmt: skip
            "settings": {"batch_size": batch_size, "max_length": max_length},
            "tuned_lens": tuned_path,
            "rule": "top-1 lens token per real position (BOS excluded); its language by script, and for "
            "Latin or shared scripts by occurring in only one considered language's corpus text (§15); "
            "none: punctuation, digits, other scripts, shared or unseen tokens",
            "processes": world.size,
            "wall_seconds": round(time.time() - started, 3),
            "created": now(),
            **software(),
        },
    }
