"""Steering on a model whose output language is planted in two neurons (tests/tiny.py: steerable_model).

Ground truth: forcing neuron 0 on makes the model write fluent bb text; forcing neuron 1 on makes it
loop on "b0" (bb, not fluent); left alone it writes aa. The language identifier is replaced by the
planted truth (a word's first letter), so these tests check steering and judging, not fastText.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from tiny import planted_language, steerable_model

from langneurons.evaluation.steer import SteerSettings, steer, steering_interventions
from langneurons.formats.neuronset import NeuronSet
from langneurons.intervention import force, intervene

steer_module = importlib.import_module("langneurons.evaluation.steer")  # the package exports a function `steer`
PROMPTS = ["a1 a2", "s3", "a5 a6 a7"]


@pytest.fixture(scope="module")
def model():
    return steerable_model()


@pytest.fixture(autouse=True)
def planted_identifier(monkeypatch):
    monkeypatch.setattr(steer_module, "identify_language", planted_language)


def planted_set(model, bb: list[int], params: dict | None = None) -> NeuronSet:
    f = model.adapter.intermediate_size
    return NeuronSet(["aa", "bb"], 1, f, {"aa": [[7]], "bb": [bb]}, [sorted({7, *bb})], "planted",
                     params=params or {}, site="act", model=model.name)  # fmt: skip


def run(model, ns, **kw):
    s = SteerSettings(mode="force", max_new_tokens=8, batch_size=2, **kw)
    return steer(model, ns, None, PROMPTS, "aa", ["bb"], s, progress=False)["results"]["bb"]


def test_steering_switches_the_language_and_the_control_does_not(model):
    entry = run(model, planted_set(model, [0]), force_value=5.0)
    steered, control = entry["strengths"]["1"]["steered"], entry["strengths"]["1"]["random"]
    assert entry["baseline"]["language_rate"] == 0.0 and entry["baseline"]["success"] == 0.0
    assert steered["language_rate"] == 1.0 and steered["success"] == 1.0 and steered["not_fluent"] == 0
    assert all(g["text"].split()[0].startswith("b") for g in steered["generations"])
    assert control["language_rate"] == 0.0


def test_a_looping_switch_counts_in_the_language_rate_but_not_as_success(model):
    entry = run(model, planted_set(model, [1]), force_value=5.0)
    steered = entry["strengths"]["1"]["steered"]
    assert all(set(g["text"].split()) == {"b0"} for g in steered["generations"])
    assert steered["language_rate"] == 1.0 and steered["success"] == 0.0
    assert steered["not_fluent"] == len(PROMPTS) and steered["distinct_2"] < 0.5


def test_force_sets_each_unit_to_its_own_median(model):
    """Review item 2: an AP set's per-unit ``on_p50`` values are what `force` sets, times the strength."""
    ns = planted_set(model, [0, 1], params={"on_p50": {"bb": [[5.0, 0.0]]}, "force": "on_p50"})
    s = SteerSettings(mode="force", strengths=[2.0])
    [iv] = steering_interventions(ns, None, None, "bb", 2.0, s, "act")
    assert iv.shift[0, 0] == 10.0 and iv.shift[0, 1] == 0.0 and torch.all(iv.scale[iv.mask] == 0)
    [ctrl] = steering_interventions(ns, None, None, "bb", 2.0, s, "act", control=True)
    assert ctrl.mask.sum() == 2 and not ctrl.mask[0, :2].any()
    assert sorted(ctrl.shift[ctrl.mask].tolist()) == [0.0, 10.0]  # the same values, on the control's units
    # Behaviour: neuron 0 at its median (on) and neuron 1 at its median (off) gives fluent bb text;
    # one scalar for both (the old behaviour) would switch neuron 1 on too and loop on "b0".
    entry = run(model, ns)
    steered = entry["strengths"]["1"]["steered"]
    assert steered["success"] == 1.0 and all(len(set(g["text"].split())) > 1 for g in steered["generations"])
    looping = run(model, planted_set(model, [0, 1]), force_value=5.0)["strengths"]["1"]["steered"]
    assert looping["success"] == 0.0 and looping["language_rate"] == 1.0


def first_new_token(model, positions: str) -> list[str]:
    mask = torch.zeros(1, model.adapter.intermediate_size, dtype=torch.bool)
    mask[0, 0] = True
    tok = model.tokenizer
    tok.padding_side = "left"
    try:
        enc = tok(PROMPTS, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = "right"
    length = enc["input_ids"].shape[1]
    with intervene(model, force(mask, 5.0, positions=positions), prompt_length=length), torch.no_grad():
        out = model.model.generate(**enc, max_new_tokens=1, do_sample=False, pad_token_id=0)
    return tok.batch_decode(out[:, length:])


def test_generated_positions_include_the_position_that_produces_the_first_new_token(model):
    """Review item 8: the first new token comes from the last prompt position, which is 'generated'."""
    assert all(t.startswith("b") for t in first_new_token(model, "generated"))
    assert all(t.startswith("a") for t in first_new_token(model, "prompt"))  # the partition's other side


def test_a_loop_that_starts_late_is_not_fluent():
    """Issue 19 part 9: twelve distinct tokens, then "x y x y …" for twelve more. distinct-2 over the whole
    continuation is 14/23 ≥ 0.5 (it passed before); over the second half it is 2/11: not fluent."""
    from langneurons.evaluation.steer import distinct_n, fluent, tail_distinct_2

    late_loop = list(range(100, 112)) + [1, 2] * 6
    assert distinct_n(late_loop) == pytest.approx(14 / 23)
    assert tail_distinct_2(late_loop) == pytest.approx(2 / 11)
    text = list(range(200, 224))
    s = SteerSettings()
    for ids, want in ((late_loop, False), (text, True)):
        g = {"distinct_2": distinct_n(ids), "tail_distinct_2": tail_distinct_2(ids), "ppl": 3.0}
        assert fluent(g, 3.0, s) is want
    assert tail_distinct_2([1, 2, 3]) == distinct_n([1, 2, 3])  # too short to halve: the whole text
