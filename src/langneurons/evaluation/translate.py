"""Few-shot translation as a downstream task that needs the language (docs/methods.md §14).

For a pair en→X: the first ``sentences`` lines of a held-out parallel corpus are translated, each
prompted with the same ``shots`` examples taken from *other* held-out lines (the shortest ones after
the test lines); greedy decoding, cut at the first newline; scored with sacrebleu's chrF2 (character
6-grams, β = 2). Every intervention set runs on the same prompts; bootstrap intervals resample
sentences (paired for the drop against no intervention).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sacrebleu.metrics import CHRF
from transformers import StoppingCriteria, StoppingCriteriaList

from langneurons.data import Corpus
from langneurons.data.languages import NAMES
from langneurons.errors import LangneuronsError
from langneurons.evaluation.nll import encode_left
from langneurons.evaluation.packing import Group, run_packed
from langneurons.formats.provenance import now, software
from langneurons.intervention import intervene
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.summaries import summarise_differences

TRANSLATE_FORMAT = "langneurons-translate/1"


@dataclass
class TranslateSettings:
    """Everything besides model, texts and interventions that decides the scores (all go in the file)."""

    sentences: int = 16  # test lines per pair
    shots: int = 3
    max_shot_chars: int = 160  # shots are held-out lines no longer than this (short prompts)
    max_new_tokens: int = 64
    batch_size: int = 8
    bootstrap: int = 1000
    seed: int = 0

    def validate(self) -> None:
        for name in ("sentences", "max_new_tokens", "batch_size", "bootstrap", "max_shot_chars"):
            if getattr(self, name) <= 0:
                raise LangneuronsError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.shots < 0:
            raise LangneuronsError(f"--shots must be ≥ 0, got {self.shots}")


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``"en-fr,en-de"`` → ``[("en", "fr"), ("en", "de")]``; a one-line error for anything else."""
    pairs = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        parts = item.split("-")
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise LangneuronsError(f"a pair is SRC-TGT with two different languages, got {item!r}")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise LangneuronsError("--pairs is empty")
    return pairs


def chrf(hypotheses: list[str], references: list[str]) -> float:
    """Corpus chrF2 (sacrebleu's default chrF) of hypotheses against one reference each."""
    return float(CHRF().corpus_score(hypotheses, [references]).score)


def chrf_stats(hypotheses: list[str], references: list[str]) -> np.ndarray:
    """Per-sentence chrF sufficient statistics (they add over sentences), [N, S]."""
    return np.asarray(CHRF()._extract_corpus_statistics(hypotheses, [references]), dtype=np.int64)


def chrf_from_stats(stats: np.ndarray) -> float:
    """Corpus chrF from per-sentence sufficient statistics [N, S] (a bootstrap resample's rows)."""
    return float(CHRF()._compute_score_from_stats(list(stats.sum(0))).score)


def bootstrap_chrf(hyps: list[str], refs: list[str], base: list[str] | None, n: int, seed: int) -> dict[str, Any]:
    """chrF, its 95 % bootstrap interval and (given the baseline's hypotheses) the paired drop's."""
    stats = chrf_stats(hyps, refs)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hyps), size=(n, len(hyps)))
    scores = np.array([chrf_from_stats(stats[i]) for i in idx])
    out: dict[str, Any] = {"chrf": chrf_from_stats(stats), "chrf_ci": _ci(scores)}
    if base is not None:
        base_stats = chrf_stats(base, refs)
        drops = np.array([chrf_from_stats(base_stats[i]) for i in idx]) - scores
        out |= {"drop": chrf_from_stats(base_stats) - out["chrf"], "drop_ci": _ci(drops)}
    return out


def _ci(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def build_prompts(
    corpus: Corpus, source: str, target: str, s: TranslateSettings
) -> tuple[list[str], list[str], list[str]]:
    """(prompts, sources, references) for ``source``→``target`` from lines both languages share."""
    for lang in (source, target):
        if lang not in corpus.languages:
            raise LangneuronsError(f"the corpus has no {lang!r} text (have: {','.join(corpus.languages)})")
    tgt = dict(corpus.items[target])
    pairs = [(sid, text, tgt[sid]) for sid, text in corpus.items[source] if sid in tgt and text and tgt[sid]]
    if len(pairs) < s.sentences + s.shots:
        raise LangneuronsError(
            f"{source}-{target}: {len(pairs)} parallel lines, need {s.sentences} test lines + {s.shots} shots"
        )
    test, rest = pairs[: s.sentences], pairs[s.sentences :]
    short = [p for p in rest if len(p[1]) <= s.max_shot_chars and len(p[2]) <= s.max_shot_chars]
    shots = (short if len(short) >= s.shots else sorted(rest, key=lambda p: len(p[1]) + len(p[2])))[: s.shots]
    src_name, tgt_name = NAMES.get(source, source), NAMES.get(target, target)
    head = "".join(f"{src_name}: {a}\n{tgt_name}: {b}\n\n" for _, a, b in shots)
    prompts = [f"{head}{src_name}: {a}\n{tgt_name}:" for _, a, _ in test]
    return prompts, [a for _, a, _ in test], [b for _, _, b in test]


class _StopAtNewline(StoppingCriteria):
    """Per row: done once its new text holds a newline."""

    def __init__(self, tokenizer, prompt_length: int):
        self.tokenizer, self.prompt_length = tokenizer, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor(["\n" in t for t in texts], device=input_ids.device)


def greedy_packed(
    loaded: LoadedModel, groups: Sequence[Group], s: TranslateSettings, on_batch: Callable[[int], None] | None = None
) -> list[list[str]]:
    """Greedy continuations, each cut at its first newline, of every (prompts, interventions) condition
    (``[condition][prompt]``), the conditions packed into shared batches (evaluation/packing.py)."""
    tok = loaded.tokenizer

    def run(_start: int, chunk: list[str], interventions: list) -> list[str]:
        enc = encode_left(tok, chunk)
        n = enc["input_ids"].shape[1]
        with intervene(loaded, interventions, prompt_length=n), torch.no_grad():
            seq = loaded.model.generate(
                input_ids=enc["input_ids"].to(loaded.device),
                attention_mask=enc["attention_mask"].to(loaded.device),
                max_new_tokens=s.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
                stopping_criteria=StoppingCriteriaList([_StopAtNewline(tok, n)]),
            ).cpu()
        return [text.split("\n", 1)[0].strip() for text in tok.batch_decode(seq[:, n:], skip_special_tokens=True)]

    return run_packed(groups, s.batch_size, run, on_batch)


def translate(
    loaded: LoadedModel,
    corpus: Corpus,
    pairs: list[tuple[str, str]],
    conditions: dict[str, list],
    settings: TranslateSettings | None = None,
    *,
    only: dict[str, list[str]] | None = None,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """chrF of every pair under every condition (name → interventions; ``"none"`` is added first).

    ``only`` may restrict a condition to some pairs (e.g. a random control to its own language).
    """
    s = settings or TranslateSettings()
    s.validate()
    started = time.time()
    built = {f"{a}-{b}": build_prompts(corpus, a, b, s) for a, b in pairs}
    conds = {"none": [], **{k: v for k, v in conditions.items() if k != "none"}}
    runs = [(c, p) for c in conds for p in built if only is None or c not in only or p in only[c]]
    hyps: dict[str, dict[str, list[str]]] = {}
    bar = progress_bar(progress, "translations")
    with bar:
        task = bar.add_task(f"translate: {len(runs)} pair × condition runs, packed", total=len(runs) * s.sentences)
        lines = greedy_packed(loaded, [(built[pair][0], conds[cond]) for cond, pair in runs], s,
                              on_batch=lambda n: bar.advance(task, n))  # fmt: skip
    for (cond, pair), h in zip(runs, lines, strict=True):
        hyps.setdefault(cond, {})[pair] = h
    scores: dict[str, dict[str, Any]] = {}
    for cond, by_pair in hyps.items():
        for pair, h in by_pair.items():
            base = None if cond == "none" else hyps["none"][pair]
            scores.setdefault(cond, {})[pair] = bootstrap_chrf(h, built[pair][2], base, s.bootstrap, s.seed)
    return {
        "format": TRANSLATE_FORMAT,
        "pairs": list(built),
        "conditions": list(hyps),
        "scores": scores,
        "hypotheses": hyps,
        "sources": {pair: b[1] for pair, b in built.items()},
        "references": {pair: b[2] for pair, b in built.items()},
        "example_prompt": {pair: b[0][0] for pair, b in built.items()},
        "provenance": {
            **loaded.describe(),
            **(provenance or {}),
            "texts": {"spec": corpus.name, "sha256": corpus.sha256()},
            "settings": asdict(s),
            "metric": "sacrebleu chrF2 (char order 6, word order 0, beta 2), corpus level",
            "wall_seconds": round(time.time() - started, 3),
            "created": now(),
            **software(),
        },
    }


def selectivity(result: dict[str, Any], langs: list[str], source: str = "en") -> dict[str, Any]:
    """Per language X whose component was switched off (condition ``off:X``): chrF drop on source→X,
    the median drop on source→Y (Y ≠ X) with the mean beside it (``langneurons.summaries``, the definition
    ``benchmark`` and the report use), and the random control's drop on source→X (``random:X``)."""
    scores = result["scores"]
    out = {}
    for lang in langs:
        own_pair = f"{source}-{lang}"
        row = scores.get(f"off:{lang}")
        if row is None or own_pair not in row:
            continue
        rest = summarise_differences(v["drop"] for p, v in row.items() if p != own_pair)
        ctrl = (scores.get(f"random:{lang}") or {}).get(own_pair)
        out[lang] = {
            "own_drop": row[own_pair]["drop"],
            "own_drop_ci": row[own_pair]["drop_ci"],
            "others_drop_median": rest["median"],
            "others_drop_mean": rest["mean"],
            "random_own_drop": None if ctrl is None else ctrl["drop"],
        }
    return out
