"""Sampled generation (`steer --sample`) is independent of batch neighbours: each (condition, prompt) draws
from its own seeded stream (`sample_seed`, `RowSampler`), so a sampled generation is the same alone,
packed beside other conditions, in any batch size and on any torchrun rank; and the sampler draws from
softmax(logits / temperature) within the top-p nucleus."""

from __future__ import annotations

import json
from dataclasses import replace

import torch
from test_distributed_eval import both, inputs  # noqa: F401 (a fixture)
from test_packing import conditions
from tiny import tiny_model

from langneurons.evaluation.steer import RowSampler, SteerSettings, generate, generate_packed, sample_seed

PROMPTS = ["a1 a2 s1", "b0 b2 b3", "s2 a5 a6", "a1 a2 s1"]  # equal lengths: the padding is alike; a repeat


def ids(rows):
    return [g["ids"] for g in rows]


def test_a_sampled_generation_is_the_same_alone_packed_and_in_any_batch_size():
    loaded = tiny_model("llama")
    one, two = conditions(loaded)
    s = SteerSettings(do_sample=True, max_new_tokens=6, batch_size=4, seed=5, temperature=1.5)
    alone = ids(generate(loaded, PROMPTS, one, s, key="one"))
    assert ids(generate(loaded, PROMPTS, one, s, key="one")) == alone  # reproducible
    packed = generate_packed(loaded, [(PROMPTS, two), (PROMPTS, one), (PROMPTS, [])], s, keys=["two", "one", "none"])
    assert ids(packed[1]) == alone  # packed after another condition, sharing batches with two of them
    for size in (1, 3, 7):  # other batch sizes, another order of conditions
        again = generate_packed(loaded, [(PROMPTS, []), (PROMPTS, one)], replace(s, batch_size=size),
                                keys=["none", "one"])  # fmt: skip
        assert ids(again[1]) == alone and ids(again[0]) == ids(packed[2])
    # different conditions and different prompts draw different streams: the same prompt with no edit
    # under four condition names does not give four equal generations
    many = generate_packed(loaded, [(PROMPTS, [])] * 4, s, keys=["k0", "k1", "k2", "k3"])
    assert all(len({tuple(rows[i]["ids"]) for rows in many}) > 1 for i in range(len(PROMPTS)))
    assert len({sample_seed(5, k, i) for k in ("one", "two", "none") for i in range(4)}) == 12
    assert sample_seed(5, "one", 0) != sample_seed(6, "one", 0)
    greedy = replace(s, do_sample=False)
    assert ids(generate(loaded, PROMPTS, one, greedy, key="x")) == ids(generate(loaded, PROMPTS, one, greedy))


def test_row_sampler_rows_do_not_depend_on_their_neighbours():
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    together = RowSampler([11, 22, 33], temperature=0.7, top_p=0.9)
    alone = RowSampler([22], temperature=0.7, top_p=0.9)
    for _ in range(3):  # step after step: each row's stream advances on its own
        both_rows = together(None, scores)
        assert torch.equal(both_rows[1:2], alone(None, scores[1:2]))
    repeated = RowSampler([5, 6], 1.0, 1.0)(None, torch.zeros(2, 50))
    assert not torch.equal(repeated[0], repeated[1])  # two seeds, two noise draws


def test_row_sampler_draws_from_the_tempered_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().unsqueeze(0)
    n = 4000

    def frequencies(sampler):
        counts = torch.zeros(4)
        for _ in range(n):
            counts[int(sampler(None, logits).argmax())] += 1
        return counts / n

    nucleus = frequencies(RowSampler([1], temperature=1.0, top_p=0.7))  # cumulative 0.05, 0.2 <= 0.3: cut
    assert nucleus[2:].sum() == 0
    assert abs(float(nucleus[0]) - 0.5 / 0.8) < 0.03  # renormalised within {0, 1}: 0.625, 0.375
    hot = frequencies(RowSampler([2], temperature=2.0))
    expect = probs.sqrt() / probs.sqrt().sum()  # softmax(log p / 2)
    assert torch.allclose(hot, expect, atol=0.03)


def test_sampled_steer_split_across_ranks_equals_one_process(inputs):  # noqa: F811
    """`steer --sample` under torchrun: every rank packs other conditions into other batches, yet the
    file equals one process's (each generation's seed is its condition's and prompt's)."""
    root = inputs["root"]
    args = ["steer", "--model", inputs["model"], "--neurons", str(root / "run" / "set.json"), "--from", "aa",
            "--to", "bb,cc", "--prompts", str(root / "prompts.txt"), "--max-new-tokens", "5", "--batch-size", "3",
            "--device", "cpu", "--sample", "--seed", "7", "--strength", "1"]  # fmt: skip
    both(args, str(root / "sample1.json"), str(root / "sample2.json"))
    a, b = (json.loads((root / name).read_text()) for name in ("sample1.json", "sample2.json"))
    assert a["results"] == b["results"] and a["baseline_generations"] == b["baseline_generations"]
    assert b["provenance"]["processes"] == 2 and a["provenance"]["settings"]["do_sample"] is True
