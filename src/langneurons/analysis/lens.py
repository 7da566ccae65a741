"""Latent language through the logit lens: Wendler et al.'s word tasks (docs/methods.md §16).

Per prompt and decoder layer l, the lens distribution at the last prompt position is
``p_l = softmax(W_U · norm_final(h_l))`` (the model's own final norm, unembedding and logit edits; with a
tuned lens ``h_l`` is first mapped by ``A_l h_l + b_l``). From it: ``p_target(l)``, the summed
probability of the first tokens of the target word (with and without a leading space), the same for its
English translation and for the source word, and the entropy of ``p_l`` in bits. Means over prompts come
with percentile-bootstrap 95 % intervals (prompts resampled, the same draws for every layer; seeded).

Prompts (k few-shot examples from other concepts, then the test word with the answer left open):
  translation  ``Français: "fleur" - 中文: "花"`` … ``Français: "chien" - 中文: "``
  repetition   ``中文: "花" - 中文: "花"`` … ``中文: "狗" - 中文: "``
  cloze        ``<sentence with ___> Answer: "花"`` … (needs a list with ``cloze`` sentences)
Filtering (§16): a concept is kept only where its target word's first tokens differ from its English
word's (otherwise p_target and p_en measure the same token); the count kept is reported.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from langneurons.data.words import WordList, language_name
from langneurons.errors import LangneuronsError
from langneurons.formats.provenance import now, software
from langneurons.formats.tuned_lens import TunedLens
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.recording.distributed import World, gather_to_main, share

LENS_FORMAT = "langneurons-lens/1"
WORD_TASKS = ("translation", "repetition", "cloze")
TASKS = (*WORD_TASKS, "text")
CURVES = ("target", "english", "source", "entropy")
LOG2E = 1.0 / math.log(2.0)


@dataclass
class LensSettings:
    """Everything besides model and word list that decides the numbers (all go in the result file)."""

    task: str = "translation"
    source: str | None = None  # --from
    target: str | None = None  # --to
    shots: int = 4  # few-shot examples per prompt
    prompts: int | None = None  # at most this many prompts (the first kept concepts); None: all
    batch_size: int = 8
    bootstrap: int = 1000
    seed: int = 0

    def validate(self) -> None:
        if self.task not in WORD_TASKS:
            raise LangneuronsError(f"unknown word task {self.task!r}; choose one of {', '.join(WORD_TASKS)}")
        if not self.target:
            raise LangneuronsError(f"--task {self.task} needs --to (the language the answer is in)")
        if self.task in ("translation", "cloze") and not self.source:
            raise LangneuronsError(f"--task {self.task} needs --from (the language of the given word)")
        if self.task == "translation" and self.source == self.target:
            raise LangneuronsError(f"--from and --to are both {self.source}: use --task repetition")
        for name, value in (("shots", self.shots), ("batch-size", self.batch_size), ("bootstrap", self.bootstrap)):
            if value <= 0:
                raise LangneuronsError(f"--{name} must be positive, got {value}")
        if self.prompts is not None and self.prompts <= 0:
            raise LangneuronsError(f"--prompts must be positive (leave it out for all), got {self.prompts}")

    @property
    def source_lang(self) -> str:
        """The language of the given word (repetition: the target language itself)."""
        return self.target if self.task == "repetition" or not self.source else self.source  # type: ignore[return-value]


def check_words(words: WordList, s: LensSettings) -> None:
    """Bad language codes or a list without what the task needs: one line, before the model loads."""
    s.validate()
    langs = [s.target, s.source_lang] + ([] if s.target == "en" else ["en"])
    words.check_languages(*dict.fromkeys(langs))
    if s.task == "cloze" and not any(s.target in per for per in words.cloze.values()):
        raise LangneuronsError(
            f"--task cloze needs cloze sentences in {s.target}: the word list {words.name} has none "
            "(give --words FILE.jsonl with a \"cloze\" field holding ___ where the word goes)"
        )
    if len(words.concepts(*dict.fromkeys(langs))) < s.shots + 1:
        raise LangneuronsError(f"the word list has fewer than {s.shots + 1} concepts in {','.join(langs)}")


# ---- tokens ------------------------------------------------------------------------------------------
def first_token_ids(tokenizer, word: str) -> list[int]:
    """The first token of ``word`` and of ``" " + word`` (deduplicated, in that order). A first token that
    is only whitespace (e.g. a lone ``▁``) is skipped for the next one, so the id names the word."""
    out: list[int] = []
    for text in (word, " " + word):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        for tid in ids:
            if tokenizer.decode([tid]).strip():
                if tid not in out:
                    out.append(int(tid))
                break
    return out


def filter_concepts(tokenizer, words: WordList, s: LensSettings) -> tuple[list[str], list[dict[str, str]]]:
    """The concepts kept for this model (§16 rule) and the dropped ones with the reason."""
    langs = list(dict.fromkeys([s.target, s.source_lang, "en"]))
    kept, dropped = [], []
    for cid in words.concepts(*langs):
        if s.task == "cloze" and s.target not in words.cloze.get(cid, {}):
            dropped.append({"id": cid, "reason": "no cloze sentence"})
            continue
        target = first_token_ids(tokenizer, words.words[cid][s.target])
        english = first_token_ids(tokenizer, words.words[cid]["en"])
        if not target:
            dropped.append({"id": cid, "reason": "the target word has no token"})
        elif s.target != "en" and set(target) & set(english):
            dropped.append({"id": cid, "reason": "its first target token is a first token of the English word"})
        else:
            kept.append(cid)
    return kept, dropped


# ---- prompts -----------------------------------------------------------------------------------------
def _pair(words: WordList, s: LensSettings, cid: str, answer: bool) -> str:
    tgt = words.words[cid][s.target]
    end = f'{tgt}"' if answer else ""
    if s.task == "cloze":
        return f'{words.cloze[cid][s.target]} Answer: "{end}'
    src = words.words[cid][s.source_lang]
    return f'{language_name(s.source_lang)}: "{src}" - {language_name(s.target)}: "{end}'


def build_prompts(words: WordList, kept: list[str], s: LensSettings) -> list[dict[str, str]]:
    """One prompt per kept concept (the first ``s.prompts``): ``s.shots`` examples drawn (seeded, per
    concept) from the other kept concepts, one per line, then the test pair with the answer open."""
    out = []
    for i, cid in enumerate(kept[: s.prompts]):
        others = [c for c in kept if c != cid]
        rng = random.Random(f"{s.seed}:{cid}")
        shots = rng.sample(others, min(s.shots, len(others)))
        lines = [_pair(words, s, c, answer=True) for c in shots] + [_pair(words, s, cid, answer=False)]
        out.append({"id": cid, "index": i, "prompt": "\n".join(lines)})
    return out


# ---- the lens ----------------------------------------------------------------------------------------
def lens_log_probs(loaded: LoadedModel, hidden: torch.Tensor, tuned: TunedLens | None = None) -> torch.Tensor:
    """``hidden [..., L, H]`` (residual per layer) → lens log-probabilities ``[..., L, V]`` (float32)."""
    if tuned is not None:
        hidden = tuned.apply(hidden)
    return torch.log_softmax(loaded.adapter.lens_logits(hidden), dim=-1)


def entropy_bits(logp: torch.Tensor) -> torch.Tensor:
    """Entropy of each distribution over the last axis, in bits."""
    return -(logp.exp() * logp).sum(-1) * LOG2E


def kl_to_final(logp: torch.Tensor) -> torch.Tensor:
    """``logp [..., L, V]`` → KL(final ‖ layer l) per layer [..., L] in nats (the final = the last layer)."""
    final = logp[..., -1, :]  # [..., V]
    p = final.exp()
    neg_entropy = (p * final).sum(-1, keepdim=True)  # [..., 1]
    cross = torch.matmul(logp, p.unsqueeze(-1)).squeeze(-1)  # Σ_v p_final(v) log p_l(v): [..., L]
    return (neg_entropy - cross).clamp(min=0)


def bootstrap_mean_ci(values: torch.Tensor, resamples: int = 1000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Percentile-bootstrap 95 % interval of the mean over rows of ``values [N, L]``, per column: rows are
    resampled with replacement (the same draws for every column), ``resamples`` times, seeded."""
    values = values.double()
    n = values.shape[0]
    if n == 0:
        return [math.nan] * values.shape[1], [math.nan] * values.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, n, (resamples, n), generator=gen)
    means = values[idx].mean(1)  # [R, L]
    lo = torch.quantile(means, 0.025, dim=0)
    hi = torch.quantile(means, 0.975, dim=0)
    return lo.tolist(), hi.tolist()


def _rows_for(loaded: LoadedModel, prompts: list[dict], ids: dict[str, list[list[int]]], s: LensSettings,
              tuned: TunedLens | None, world: World, progress: bool) -> list[dict[str, Any]]:  # fmt: skip
    """This rank's per-prompt rows (batches are fixed chunks of the prompt list, split round-robin over
    ranks, so every prompt sees the same padding in any number of processes)."""
    batches = [list(range(i, min(i + s.batch_size, len(prompts)))) for i in range(0, len(prompts), s.batch_size)]
    mine = [batches[i] for i in share(len(batches), world)]
    rows: list[dict[str, Any]] = []
    bar = progress_bar(progress and world.is_main, "prompts")
    with bar:
        task = bar.add_task(f"lens {s.task}", total=sum(len(b) for b in mine))
        for batch in mine:
            enc = loaded.tokenizer([prompts[i]["prompt"] for i in batch], padding=True, return_tensors="pt")
            hidden = loaded.adapter.residual_stream(enc.input_ids, enc.attention_mask, last_only=True)  # [B, L, H]
            logp = lens_log_probs(loaded, hidden)
            tuned_logp = lens_log_probs(loaded, hidden, tuned) if tuned is not None else None
            used = tuned_logp if tuned_logp is not None else logp
            probs = used.exp()
            for j, i in enumerate(batch):
                row: dict[str, Any] = {}
                for curve in ("target", "english", "source"):
                    row[curve] = probs[j][:, ids[curve][i]].sum(-1).tolist()
                row["entropy"] = entropy_bits(used[j]).tolist()
                row["kl_logit"] = kl_to_final(logp[j]).tolist()
                if tuned_logp is not None:
                    row["kl_tuned"] = kl_to_final(tuned_logp[j]).tolist()
                rows.append((i, row))
            bar.update(task, advance=len(batch))
    return rows


def word_task(
    loaded: LoadedModel,
    words: WordList,
    settings: LensSettings | None = None,
    *,
    tuned: TunedLens | None = None,
    tuned_path: str | None = None,
    progress: bool = True,
    world: World | None = None,
) -> dict[str, Any] | None:
    """Wendler's curves for one language pair on ``loaded``: the result dict (docs/formats.md, lens).

    Under torchrun the prompts are split over ranks; rank 0 returns the result (the others None)."""
    s = settings or LensSettings()
    check_words(words, s)
    world = world or World()
    started = time.time()
    if tuned is not None:
        tuned.check_compatible(loaded.adapter.num_layers, loaded.adapter.hidden_size, loaded.name)
    kept, dropped = filter_concepts(loaded.tokenizer, words, s)
    if not kept:
        raise LangneuronsError(
            f"no concept of {words.name} survives the filter for {loaded.name} (every {s.target} word starts "
            "with a token of its English word)"
        )
    prompts = build_prompts(words, kept, s)
    tok = loaded.tokenizer
    ids = {
        "target": [first_token_ids(tok, words.words[p["id"]][s.target]) for p in prompts],
        "english": [first_token_ids(tok, words.words[p["id"]]["en"]) for p in prompts],
        "source": [first_token_ids(tok, words.words[p["id"]][s.source_lang]) for p in prompts],
    }
    mine = _rows_for(loaded, prompts, ids, s, tuned, world, progress)
    gathered = gather_to_main(mine, world)
    if gathered is None:
        return None
    rows = dict(pair for part in gathered for pair in part)
    ordered = [rows[i] for i in range(len(prompts))]
    n_layers = loaded.adapter.num_layers
    mean: dict[str, list[float]] = {}
    ci: dict[str, dict[str, list[float]]] = {}
    for k, curve in enumerate(CURVES):
        values = torch.tensor([r[curve] for r in ordered], dtype=torch.float64)
        mean[curve] = values.mean(0).tolist()
        lo, hi = bootstrap_mean_ci(values, s.bootstrap, s.seed + k)
        ci[curve] = {"low": lo, "high": hi}
    kl = {"logit": torch.tensor([r["kl_logit"] for r in ordered]).mean(0).tolist()}
    if tuned is not None:
        kl["tuned"] = torch.tensor([r["kl_tuned"] for r in ordered]).mean(0).tolist()
    per_prompt = []
    for p, r in zip(prompts, ordered, strict=True):
        i = p["index"]
        per_prompt.append({
            "id": p["id"], "prompt": p["prompt"],
            "words": {"target": words.words[p["id"]][s.target], "english": words.words[p["id"]]["en"],
                      "source": words.words[p["id"]][s.source_lang]},
            "target_ids": ids["target"][i], "english_ids": ids["english"][i], "source_ids": ids["source"][i],
            **{curve: r[curve] for curve in CURVES},
        })  # fmt: skip
    return {
        "format": LENS_FORMAT,
        "task": s.task,
        "from": s.source_lang,
        "to": s.target,
        "model": loaded.name,
        "lens": "tuned" if tuned is not None else "logit",
        "num_layers": n_layers,
        "layers": list(range(n_layers)),
        "mean": mean,
        "ci": ci,
        "peaks": peaks(mean),
        "kl": kl,
        "words": {
            "list": words.name,
            "sha256": word_list_sha256(words),
            "concepts": len(words.concepts(*dict.fromkeys([s.target, s.source_lang, "en"]))),
            "kept": len(kept),
            "prompts": len(prompts),
            "dropped": dropped,
        },
        "prompts": per_prompt,
        "provenance": {
            **loaded.describe(),
            "settings": asdict(s),
            "tuned_lens": tuned_path,
            "curves": "target/english/source: summed lens probability of the word's first tokens (with and "
            "without a leading space) at the last prompt position; entropy in bits; ci: percentile bootstrap "
            "over prompts (95 %); kl: mean KL(final ‖ lens) in nats",
            "processes": world.size,
            "wall_seconds": round(time.time() - started, 3),
            "created": now(),
            **software(),
        },
    }


def peaks(mean: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per probability curve: the layer of its maximum and the height there."""
    out = {}
    for curve in ("target", "english", "source"):
        values = mean.get(curve)
        if values:
            layer = max(range(len(values)), key=values.__getitem__)
            out[curve] = {"layer": layer, "value": values[layer]}
    return out


def word_list_sha256(words: WordList) -> str:
    digest = hashlib.sha256()
    for cid, per in words.words.items():
        for lang, word in per.items():
            digest.update(f"{cid}\x1f{lang}\x1f{word}\x1e".encode())
    return digest.hexdigest()
