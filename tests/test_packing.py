"""Packed generation: an intervention limited to batch rows edits those rows only, so conditions that
share a batch give each row exactly what running its condition alone gives (dense, residual and MoE
paths); the packer's grouping and row ranges; misuse is a one-line error."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, tiny_model
from tiny_moe import tiny_moe_loaded

from langneurons.errors import LangneuronsError
from langneurons.evaluation.packing import run_packed
from langneurons.evaluation.steer import SteerSettings, generate, generate_packed
from langneurons.evaluation.translate import TranslateSettings, greedy_packed
from langneurons.intervention import DirectionIntervention, deactivate, force, intervene, on_rows

TEXTS = ["a1 a2 s1 a3 b2", "b0 b2 b3", "s2 a5 a6 a7 s3 s4", "a0 b1"]


def logits(loaded, interventions):
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt").to(loaded.device)
    with intervene(loaded, interventions), torch.no_grad():
        return loaded.model(**enc).logits


def conditions(loaded):
    """Two different conditions: zero some neurons + a residual push, and force other neurons."""
    a = loaded.adapter
    gen = torch.Generator().manual_seed(3)
    first = torch.rand(a.num_layers, a.intermediate_size, generator=gen) < 0.3
    second = torch.rand(a.num_layers, a.intermediate_size, generator=gen) < 0.2
    push = DirectionIntervention({0: torch.randn(a.hidden_size, generator=gen)}, "add")
    return [deactivate(first), push], [force(second, 2.5)]


@pytest.mark.parametrize("family", [*FAMILIES, "moe:qwen2_moe", "moe:mixtral"])
def test_row_limited_conditions_equal_each_condition_alone(family):
    loaded = tiny_moe_loaded(family[4:]) if family.startswith("moe:") else tiny_model(family)
    # MoE experts multiply the rows routed to them as one block, whose size depends on the other rows'
    # routing: equal to float rounding there; dense rows are computed alike whatever the others hold
    same = (lambda a, b: torch.allclose(a, b, rtol=0, atol=1e-6)) if loaded.adapter.is_moe else torch.equal
    one, two = conditions(loaded)
    packed = logits(loaded, on_rows(one, 0, 1) + on_rows(two, 1, 4))
    assert same(packed[:1], logits(loaded, one)[:1])
    assert same(packed[1:], logits(loaded, two)[1:])
    assert not torch.allclose(packed[1:], logits(loaded, one)[1:], atol=1e-3)  # the conditions do differ
    nothing = logits(loaded, on_rows(one, 2, 3))
    plain = logits(loaded, [])
    assert same(nothing[[0, 1, 3]], plain[[0, 1, 3]]) and not torch.allclose(nothing[2], plain[2], atol=1e-3)


def test_run_packed_groups_rows_and_limits_each_groups_interventions():
    iv = [force(torch.ones(2, 3, dtype=torch.bool), 1.0)]
    groups = [(["p0", "p1", "p2"], iv), (["q0", "q1"], []), (["r0", "r1", "r2", "r3"], iv)]
    calls = []

    def run(start, prompts, ivs):
        calls.append((start, prompts, [x.rows for x in ivs]))
        return [p.upper() for p in prompts]

    out = run_packed(groups, 4, run)
    assert out == [["P0", "P1", "P2"], ["Q0", "Q1"], ["R0", "R1", "R2", "R3"]]
    assert calls == [
        (0, ["p0", "p1", "p2", "q0"], [(0, 3)]),
        (4, ["q1", "r0", "r1", "r2"], [(1, 4)]),
        (8, ["r3"], [None]),  # one group alone in its batch: unrestricted
    ]


def test_packed_generation_equals_one_condition_at_a_time():
    loaded = tiny_model("llama")
    one, two = conditions(loaded)
    prompts = ["a1 a2 s1", "b0 b2 b3", "s2 a5 a6"]  # the same length: the padding does not differ either
    s = SteerSettings(max_new_tokens=5, batch_size=4)
    packed = generate_packed(loaded, [(prompts, one), (prompts, two), (prompts, [])], s)
    for group, ivs in zip(packed, [one, two, []], strict=True):
        assert [g["ids"] for g in group] == [g["ids"] for g in generate(loaded, prompts, ivs, s)]
    t = TranslateSettings(max_new_tokens=5, batch_size=5)
    lines = greedy_packed(loaded, [(prompts, one), (prompts, two)], t)
    assert lines == [greedy_packed(loaded, [(prompts, ivs)], t)[0] for ivs in (one, two)]


def test_rows_outside_the_batch_or_empty_are_errors():
    loaded = tiny_model("llama")
    one, _ = conditions(loaded)
    with pytest.raises(LangneuronsError, match="batch has 4"):
        logits(loaded, on_rows(one, 2, 6))
    with pytest.raises(LangneuronsError, match="0 ≤ start < stop"):
        on_rows(one, 3, 3)


def test_packed_generation_on_moe_with_unequal_prompts_and_generated_positions():
    """A tiny Qwen2-MoE, prompts of different lengths (left padding that differs between packed and alone)
    and edits at generated positions only: each packed row's logits equal its condition run alone to 1e-6
    at every decoding step, and the greedy tokens are identical."""
    loaded = tiny_moe_loaded("qwen2_moe")
    a = loaded.adapter
    gen = torch.Generator().manual_seed(11)
    first = torch.rand(a.num_layers, a.intermediate_size, generator=gen) < 0.3
    second = torch.rand(a.num_layers, a.intermediate_size, generator=gen) < 0.2
    push = DirectionIntervention({0: torch.randn(a.hidden_size, generator=gen)}, "add", positions="generated")
    one = [deactivate(first, positions="generated"), push]
    two = [force(second, 2.5, positions="generated")]
    # the longest prompt is in the second condition: run alone, the first is padded less than packed
    groups = [(["a1 a2 s1", "b0"], one), (["s2 a5 a6 a7 s3 s4 b1", "a0 b1 b2"], two), (["b3 s5", "a4"], [])]
    s = SteerSettings(max_new_tokens=6, batch_size=8)
    packed = generate_packed(loaded, groups, s, keep_logits=True)
    for (prompts, ivs), rows in zip(groups, packed, strict=True):
        alone = generate(loaded, list(prompts), ivs, s)
        alone_logits = generate_packed(loaded, [(prompts, ivs)], s, keep_logits=True)[0]
        assert [g["ids"] for g in rows] == [g["ids"] for g in alone]
        for p, q in zip(rows, alone_logits, strict=True):
            steps = min(len(p["logits"]), len(q["logits"]))
            assert steps >= 1 and torch.allclose(p["logits"][:steps], q["logits"][:steps], rtol=0, atol=1e-6)
    # the edits act (at generated positions): the first condition differs from no edit at all
    plain = generate_packed(loaded, [(groups[0][0], [])], s, keep_logits=True)[0]
    assert not torch.allclose(packed[0][0]["logits"][:1], plain[0]["logits"][:1], atol=1e-3)
