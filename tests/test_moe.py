"""Mixture-of-experts models: per-expert neurons, routing statistics and routing edits (issue 13).

Ground truth: a planted MoE whose router sends each language's words to chosen experts and whose chosen
expert neurons fire on chosen words; tiny random configs of every supported MoE family against their
own eager experts, their own routers and weight surgery.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_record import AA, BB, corpus, settings
from tiny import VOCAB, WORDS, V, integer_pattern, word_tokenizer
from tiny_moe import MOE_FAMILIES, planted_moe, tiny_moe, tiny_moe_loaded

from langneurons.errors import LangneuronsError
from langneurons.identification import identify
from langneurons.intervention import deactivate, intervene
from langneurons.intervention.routing import parse_route, steer_routing
from langneurons.models.loading import wrap_model
from langneurons.recording import record

A, B, S = WORDS["aa"], WORDS["bb"], WORDS["shared"]
# aa words go to experts 0 and 1, bb words to 2 and 3; shared words split between the two sides.
ROUTES = {0: set(A) | set(S[:4]), 1: set(A) | set(S[4:]), 2: set(B) | set(S[4:]), 3: set(B) | set(S[:4])}
# (expert, neuron) -> words it fires on. (0, 0) also "fires" on b0, but b0 never reaches expert 0.
GROUPS = {(0, 0): {"a0", "a1", "b0"}, (2, 3): set(B[:4]), (1, 5): {"s5", "a2"}, (3, 1): set(S), (0, 7): set(S)}
SPECIFIC = {"aa": [(0, 0)], "bb": [(2, 3)]}  # the only neurons that fire in one language only
F_E = 8
ENC_TEXTS = ["a1 a2 s3 b4 s6", "b1 s2 a7"]


def planted_truth(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """count [E·F] and routed [E] of one language, from the planted rules alone."""
    count, routed = torch.zeros(4 * F_E, dtype=torch.int64), torch.zeros(4, dtype=torch.int64)
    for w in (w for t in texts for w in t.split()):
        for e, words in ROUTES.items():
            if w in words:
                routed[e] += 1
                for (ge, j), fires in GROUPS.items():
                    if ge == e and w in fires:
                        count[e * F_E + j] += 1
    return count, routed


def test_planted_moe_counts_routing_and_lape_equal_the_truth(tmp_path):
    loaded = planted_moe(ROUTES, GROUPS)
    stats = record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    assert stats.manifest["moe"]["num_experts"] == 4 and stats.manifest["moe"]["expert_intermediate_size"] == F_E
    assert stats.count.shape == (2, 2, 4 * F_E)
    for k, texts in enumerate([AA, BB]):
        count, routed = planted_truth(texts)
        for layer in range(2):
            assert torch.equal(stats.count[k, layer], count)
            assert torch.equal(stats.extra["routed_tokens"][k, layer], routed)
        assert int(stats.extra["routed_tokens"][k, 0].sum()) == 2 * int(stats.n_tokens[k])
        # each token's router probabilities sum to 1
        assert torch.allclose(stats.extra["router_probability"][k, 0].sum(), stats.n_tokens[k].double())
    # LAPE with a target of exactly the planted language-specific neurons finds exactly them
    ns = identify(stats, "lape", top_rate=4 / 64, filter_rate=0.5, bar_ratio=0.5)
    for lang, planted in SPECIFIC.items():
        want = sorted(e * F_E + j for e, j in planted)
        assert ns.neurons[lang] == [want, want], lang
    assert ns.params["condition"] == "unconditional"
    # routed-conditional probability: count / tokens routed to the neuron's expert
    routed = identify(stats, "lape", top_rate=4 / 64, filter_rate=0.5, bar_ratio=0.5, condition="routed")
    assert routed.params["condition"] == "routed"
    p = stats.probability("routed")
    count, r = planted_truth(AA)
    assert torch.allclose(p[0, 0], count.double() / r.clamp(min=1).double().repeat_interleave(F_E))


def test_routed_condition_is_refused_on_dense_statistics(tmp_path):
    from test_record import GROUPS as DENSE_GROUPS
    from tiny import planted_model

    stats = record(planted_model(DENSE_GROUPS, num_layers=1), corpus(), tmp_path / "d", settings(), progress=False)
    with pytest.raises(LangneuronsError, match="mixture-of-experts"):
        identify(stats, "lape", condition="routed")


@pytest.mark.parametrize("implementation", ["eager", "grouped_mm"])
@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_recording_implementation_is_bit_identical_to_the_models_own(family, implementation):
    """Recording mirrors the implementation the model runs (the eager loop, or grouped_mm op for op)."""
    tok = word_tokenizer()
    enc = tok(ENC_TEXTS, return_tensors="pt", padding=True)
    bare = tiny_moe(family, implementation=implementation)
    with torch.no_grad():
        want = bare(**enc).logits
    loaded = wrap_model(tiny_moe(family, implementation=implementation), tok, family)
    seen = []

    def observe(layer, x, rows):
        seen.append(rows.groups is not None)
        return x.clone()  # a replacement with the same values takes the editing path

    for site in ("act", "down_in"):
        handles = loaded.adapter.hook_blocks(site, observe)
        with torch.no_grad():
            got = loaded.model(**enc).logits
        for h in handles:
            h.remove()
        assert torch.equal(got, want), (family, site)
    assert any(seen)
    with torch.no_grad():  # idle: falls back to the implementation the model had
        assert torch.equal(loaded.model(**enc).logits, want)
    if implementation == "grouped_mm":  # the two paths agree to rounding, not bit for bit
        eager = tiny_moe(family, implementation="eager")
        with torch.no_grad():
            assert torch.allclose(eager(**enc).logits, want, atol=1e-4)


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "deepseek_v3"])
def test_other_kernels_run_one_path_for_edited_and_unedited_rows(family):
    """A model set to batched_mm (not grouped_mm): an identity edit and no edit give bit-identical logits
    (before, the unedited rows ran batched_mm and the edited ones the eager loop: 3.5e-7 apart in fp32)."""
    tok = word_tokenizer()
    enc = tok(ENC_TEXTS, return_tensors="pt", padding=True)
    loaded = wrap_model(tiny_moe(family, implementation="batched_mm"), tok, family)
    eager = tiny_moe(family, implementation="eager")
    with torch.no_grad():
        idle = loaded.model(**enc).logits
        handles = loaded.adapter.hook_blocks("act", lambda layer, x, rows: x.clone())
        edited = loaded.model(**enc).logits
        for h in handles:
            h.remove()
        assert torch.equal(edited, idle), (family, float((edited - idle).abs().max()))
        assert torch.equal(idle, eager(**enc).logits), family  # the eager loop, edited or not


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_every_family_records_consistent_routing(family, tmp_path):
    loaded = tiny_moe_loaded(family)
    adapter = loaded.adapter
    stats = record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    moe = stats.manifest["moe"]
    routed = stats.extra["routed_tokens"]
    top_k, f = moe["top_k"], moe["expert_intermediate_size"]
    for layer in range(adapter.num_layers):
        if layer in moe["moe_layers"]:
            assert torch.equal(routed[:, layer].sum(1), top_k * stats.n_tokens)
            per_expert = stats.count[:, layer, : moe["num_experts"] * f].reshape(2, -1, f)
            assert bool((per_expert <= routed[:, layer].unsqueeze(2)).all())
            if moe["shared_expert_slots"]:  # the shared expert sees every token
                assert int(stats.count[:, layer, moe["num_experts"] * f :].sum()) > 0
        else:
            assert int(routed[:, layer].sum()) == 0
            assert int(stats.count[:, layer, : moe["dense_intermediate_size"]].sum()) > 0


def _down_column(experts, e: int, j: int) -> None:
    if getattr(experts, "is_transposed", False):
        experts.down_proj[e, j, :] = 0
    else:
        experts.down_proj[e, :, j] = 0


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_zeroing_expert_neurons_at_down_in_equals_zeroing_down_columns(family):
    loaded = tiny_moe_loaded(family)
    adapter = loaded.adapter
    enc = loaded.tokenizer(ENC_TEXTS, return_tensors="pt", padding=True)
    f, n = adapter.expert_intermediate_size, adapter.num_experts
    chosen = [(layer, e, j) for layer in adapter.moe_layers for e, j in ((0, 1), (1, 5), (n - 1, 0))]
    mask = torch.zeros(adapter.num_layers, adapter.intermediate_size, dtype=torch.bool)
    for layer, e, j in chosen:
        mask[layer, e * f + j] = True
    if adapter.shared_slots:  # a shared-expert neuron and a dense-layer neuron too
        mask[adapter.moe_layers[0], n * f + 2] = True
    if adapter.dense_layers:
        mask[adapter.dense_layers[0], 3] = True
    with torch.no_grad():
        baseline = loaded.model(**enc).logits
        with intervene(loaded, deactivate(mask, site="down_in")):
            hooked = loaded.model(**enc).logits
        for layer, e, j in chosen:
            _down_column(adapter._experts(layer), e, j)
        if adapter.shared_slots:
            adapter._shared(adapter.moe_layers[0]).down_proj.weight[:, 2] = 0
        if adapter.dense_layers:
            adapter._get_mlp(adapter.dense_layers[0]).down_proj.weight[:, 3] = 0
        surgery = loaded.model(**enc).logits
    assert not torch.allclose(baseline, surgery)
    assert torch.allclose(hooked, surgery, atol=1e-6), family


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_rerouting_unchanged_logits_reproduces_the_router(family):
    loaded = tiny_moe_loaded(family)
    enc = loaded.tokenizer(ENC_TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        want = loaded.model(**enc).logits
        handles = loaded.adapter.edit_routing(lambda layer, logits: (torch.zeros_like(logits), None))
        got = loaded.model(**enc).logits
        for h in handles:
            h.remove()
    assert torch.equal(got, want), family


def _planted_with_outputs():
    """The planted MoE whose last layer's experts write (integer-valued weights: the same on every CPU)."""
    loaded = planted_moe(ROUTES, GROUPS)
    with torch.no_grad():  # only the last layer writes: every router still sees a one-hot (x ≥ 0)
        experts = loaded.model.model.layers[-1].mlp.experts
        experts.down_proj.copy_(integer_pattern(experts.down_proj.shape, seed=2))
    return loaded


def test_planted_fixtures_have_the_values_the_tests_assume():
    """The routing margins and output weights the MoE tests rely on, checked on this machine's arithmetic:
    a CPU whose random stream or float rounding differs fails here, naming the value, not in a far test."""
    loaded = _planted_with_outputs()
    layer = loaded.model.model.layers[0]
    x = torch.eye(V) * V**0.5  # what each router sees: the RMS-normalised one-hot of the current token
    logits = x @ layer.mlp.gate.weight.T
    for w in VOCAB[4:]:  # each word's two planted experts lead the others by 10·√V, and no more
        row = logits[VOCAB.index(w)].sort(descending=True).values
        assert float(row[1] - row[2]) == pytest.approx(10 * V**0.5, rel=1e-6), w
    assert 10 * V**0.5 < 100  # so "bias:*:E:100" moves every word whose experts exclude E
    # the closed-form pattern the expert outputs are made of (no random stream involved)
    assert integer_pattern((2, 6), seed=2).tolist() == [[-0.5, -0.25, 0.0, -0.75, 0.0, -0.5],
                                                        [0.25, 0.5, -0.5, 0.25, 0.0, -0.25]]  # fmt: skip
    down = loaded.model.model.layers[-1].mlp.experts.down_proj
    assert torch.equal(down, integer_pattern(down.shape, seed=2)) and bool((down != 0).any())
    # greedy steps of the steering test below: the top token leads the next by far more than rounding
    enc = loaded.tokenizer(["a1 a2", "a3 s1 a4"], return_tensors="pt", padding=True)
    with torch.no_grad():
        top = loaded.model(**enc).logits[:, -1].sort(dim=-1, descending=True).values
    assert bool(((top[:, 0] - top[:, 1]) > 1e-2).all()), top[:, :2]


def test_masking_an_expert_equals_editing_the_router_weights():
    enc_texts = [" ".join(A + S), " ".join(B + S)]
    loaded = _planted_with_outputs()
    enc = loaded.tokenizer(enc_texts, return_tensors="pt", padding=True)
    routed = []
    with torch.no_grad(), steer_routing(loaded, parse_route("mask:*:1,mask:0:2")):
        handles = loaded.adapter.hook_router(lambda layer, p, index: routed.append(index))  # sees the edit
        masked = loaded.model(**enc).logits
    for h in handles:
        h.remove()
    assert not any(bool((i == 1).any()) for i in routed) and not bool((routed[0] == 2).any())
    with torch.no_grad():  # the same edit in the weights: a router row so negative it is never chosen
        for i, layer in enumerate(loaded.model.model.layers):
            layer.mlp.gate.weight[1] = -1e4
            if i == 0:
                layer.mlp.gate.weight[2] = -1e4
        edited = loaded.model(**enc).logits
    assert torch.equal(masked, edited)


def test_biasing_an_expert_equals_editing_the_router_bias():
    loaded = tiny_moe_loaded("gpt_oss")  # gpt-oss routers have a bias: the edit has an exact twin
    enc = loaded.tokenizer(ENC_TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad(), steer_routing(loaded, parse_route("bias:*:2:0.75,bias:1:0:-0.5")):
        biased = loaded.model(**enc).logits
    with torch.no_grad():
        base = loaded.model(**enc).logits
        for i in loaded.adapter.moe_layers:
            router = loaded.adapter._router(i)
            router.bias[2] += 0.75
            if i == 1:
                router.bias[0] -= 0.5
        edited = loaded.model(**enc).logits
    assert not torch.allclose(base, edited)
    assert torch.allclose(biased, edited, atol=1e-6)


def test_routing_edit_on_generated_positions_leaves_the_prompt_alone():
    loaded = _planted_with_outputs()
    enc = loaded.tokenizer(["a1 a2 a3"], return_tensors="pt")
    with torch.no_grad():
        base = loaded.model(**enc).logits
        with steer_routing(loaded, parse_route("mask:*:0"), positions="generated"):
            prompt_only = loaded.model(**enc).logits  # the whole input is the prompt
            out = loaded.model.generate(**enc, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        with steer_routing(loaded, parse_route("mask:*:0")):
            everywhere = loaded.model(**enc).logits
    # "generated" = positions whose output is a new token: the last prompt position onwards. (Earlier rows
    # move by rounding only: an expert's batch of rows changed, and with it its GEMM's blocking.)
    assert torch.allclose(prompt_only[:, :-1], base[:, :-1], atol=1e-6)
    assert not torch.allclose(prompt_only[:, -1], base[:, -1], atol=1e-3)
    assert not torch.allclose(everywhere[:, :-1], base[:, :-1], atol=1e-3)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


def test_bad_routing_edits_are_one_line_errors():
    loaded = planted_moe(ROUTES, GROUPS)
    for spec, msg in (("mask:0", "bad routing edit"), ("bias:0:1:x", "bad routing edit"), ("mask:0:9", "out of range"),
                      ("mask:7:1", "not an MoE layer")):  # fmt: skip
        with pytest.raises(LangneuronsError, match=msg):
            with steer_routing(loaded, parse_route(spec)):
                pass


def test_routing_analysis_of_the_planted_moe(tmp_path):
    from langneurons.analysis.routing import js_divergence, routing_analysis

    loaded = planted_moe(ROUTES, GROUPS)
    stats = record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    result = routing_analysis(stats, reference="aa", top=2)
    for lang, texts in (("aa", AA), ("bb", BB)):
        _, routed = planted_truth(texts)
        n = sum(len(t.split()) for t in texts)
        want = (routed.double() / (2 * n)).tolist()
        assert result["usage"][lang] == [[round(x, 6) for x in want]] * 2
    # aa uses experts 0 and 1 almost only; bb 2 and 3: far apart, and aa is its own reference
    assert result["js_divergence"]["aa"] == [0.0, 0.0]
    pa, pb = (planted_truth(t)[1].tolist() for t in (AA, BB))
    pa, pb = [x / sum(pa) for x in pa], [x / sum(pb) for x in pb]
    kl = lambda p, m: sum(x * math.log2(x / y) for x, y in zip(p, m, strict=True) if x > 0)  # noqa: E731
    mid = [(x + y) / 2 for x, y in zip(pa, pb, strict=True)]
    want_js = (kl(pa, mid) + kl(pb, mid)) / 2
    assert result["js_divergence"]["bb"] == [pytest.approx(want_js, abs=1e-6)] * 2 and want_js > 0.4
    assert {(r["layer"], r["expert"]) for r in result["specific_experts"]["aa"]} <= {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert {r["expert"] for r in result["specific_experts"]["bb"]} <= {2, 3}
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert float(js_divergence(p, q)) == pytest.approx(1.0) and float(js_divergence(p, p)) == 0.0


def test_routing_command_and_report(tmp_path):
    from typer.testing import CliRunner

    from langneurons.cli import app
    from langneurons.reporting import write_report

    run = tmp_path / "run"
    record(planted_moe(ROUTES, GROUPS), corpus(), run, settings(), progress=False)
    runner = CliRunner()
    res = runner.invoke(app, ["routing", str(run), "-o", str(run / "routing.json"), "--reference", "aa",
                              "--figure", str(tmp_path / "routing.png")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "routing.png").read_bytes()[:4] == b"\x89PNG"
    again = runner.invoke(app, ["routing", str(run), "-o", str(run / "routing.json"), "--reference", "aa"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = runner.invoke(app, ["routing", str(run), "-o", str(tmp_path / "r.json"), "--reference", "xx"])
    assert bad.exit_code == 2 and "reference language" in bad.output
    paths = write_report(run, tmp_path / "figs", "png")
    assert any(p.name == "routing.png" for p in paths)


def test_routing_needs_an_moe_run(tmp_path):
    from test_record import GROUPS as DENSE_GROUPS
    from tiny import planted_model

    from langneurons.analysis.routing import routing_analysis

    stats = record(planted_model(DENSE_GROUPS, num_layers=1), corpus(), tmp_path / "d", settings(), progress=False)
    with pytest.raises(LangneuronsError, match="no routing"):
        routing_analysis(stats, reference="aa")


def test_moe_statistics_merge_resume_and_round_trip(tmp_path, monkeypatch):
    from langneurons.data import Corpus
    from langneurons.formats.stats import load_stats, merge_stats
    from langneurons.recording import recorder

    loaded = planted_moe(ROUTES, GROUPS)
    whole = record(loaded, corpus(), tmp_path / "whole", settings(), progress=False)
    back = load_stats(tmp_path / "whole")
    assert set(back.extra) == {"routed_tokens", "router_probability", "resid_sum", "resid_norm_sum"}
    assert torch.equal(back.extra["routed_tokens"], whole.extra["routed_tokens"])
    halves = [Corpus("t", {lang: pairs[:3] for lang, pairs in corpus().items.items()}),
              Corpus("t", {lang: pairs[3:] for lang, pairs in corpus().items.items()})]  # fmt: skip
    merged = merge_stats([record(loaded, c, tmp_path / f"h{i}", settings(), progress=False)
                          for i, c in enumerate(halves)])  # fmt: skip
    assert torch.equal(merged.count, whole.count)
    assert torch.equal(merged.extra["routed_tokens"], whole.extra["routed_tokens"])
    # interrupted after 3 units (checkpointed after each), then resumed: the same totals
    real, calls = recorder._run_unit, []

    def interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recorder, "_run_unit", interrupt)
    with pytest.raises(KeyboardInterrupt):
        record(loaded, corpus(), tmp_path / "r", settings(checkpoint_every_units=1), progress=False)
    assert (tmp_path / "r" / recorder.CHECKPOINT_FILE).exists()
    monkeypatch.setattr(recorder, "_run_unit", real)
    resumed = record(loaded, corpus(), tmp_path / "r", settings(checkpoint_every_units=1), progress=False)
    assert torch.equal(resumed.count, whole.count)
    assert torch.equal(resumed.extra["routed_tokens"], whole.extra["routed_tokens"])
    assert torch.allclose(resumed.extra["router_probability"], whole.extra["router_probability"])
    assert torch.allclose(resumed.resid_sum, whole.resid_sum)
    assert torch.allclose(resumed.resid_norm_sum, whole.resid_norm_sum)


def test_ppl_route_row_and_expert_neuron_rows(tmp_path):
    from langneurons.evaluation.ppl import PPLSettings, ppl_matrix

    loaded = _planted_with_outputs()
    stats = record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    ns = identify(stats, "lape", top_rate=4 / 64, filter_rate=0.5, bar_ratio=0.5)
    s = PPLSettings(site="act", controls=False, batch_size=2, max_length=32, route="mask:*:0,mask:*:1")
    result = ppl_matrix(loaded, ns, corpus(), s, progress=False)
    assert result["interventions"] == ["none", "route", "neurons:aa", "neurons:bb"]
    # every aa and shared word is routed to expert 0 or 1: the mask moves them all; bb words keep {2, 3}
    # (BOS has an all-zero router row: its tie may or may not move; padding is not counted)
    for lang, texts in (("aa", AA), ("bb", BB)):
        words = [w for t in texts for w in t.split()]
        moving = sum(w not in B for w in words)
        effect = result["routing"][lang]
        assert effect["routing_decisions"] == 2 * (len(words) + len(texts))  # 2 MoE layers, + BOS
        moved = round(effect["routing_changed"] * effect["routing_decisions"]) / 2  # per layer
        assert moving <= moved <= moving + len(texts)
    # masking experts 0 and 1 re-routes every aa-text token (aa and shared words) but only bb-text's shared words
    # (counted below): both perplexities move
    delta = result["delta_relative"]["route"]
    assert delta["aa"] != 0 and delta["bb"] != 0
    assert result["provenance"]["settings"]["route"] == "mask:*:0,mask:*:1"


def test_steering_generation_with_routing_edits():
    from langneurons.evaluation.steer import SteerSettings, generate
    from langneurons.intervention.routing import routing_summary

    loaded = _planted_with_outputs()
    prompts = ["a1 a2", "a3 s1 a4"]
    # +100 beats the planted lead of 10·√V ≈ 53: at the generated positions every token whose planted
    # experts are not {2, 3} (every word but the bb words) is re-routed to {2, 3}, by construction
    s = SteerSettings(max_new_tokens=4, batch_size=2, route="bias:*:2:100,bias:*:3:100", route_positions="generated")
    base = generate(loaded, prompts, [], s, route=False)
    steered = generate(loaded, prompts, [], s)
    assert [g["prompt_ids"] for g in base] == [g["prompt_ids"] for g in steered]
    steps = {g["routing_decisions"] // 2 for g in steered}  # both MoE layers at every decoding step
    assert len(steps) == 1 and 1 <= steps.pop() <= s.max_new_tokens  # the prompt's own positions are not counted
    for g in steered:
        assert g["routing_moved"] >= 2  # the last prompt word (a2, a4) is an aa word: it moves in both layers
        if len(g["ids"]) == s.max_new_tokens:  # no EOS: every token fed back is known
            words = [VOCAB[t] for t in [g["prompt_ids"][-1], *g["ids"][:-1]] if t >= 4]  # specials: router ties
            must_move = 2 * sum(w not in B for w in words)
            assert must_move <= g["routing_moved"] <= must_move + 2 * (s.max_new_tokens - len(words))
    summary = routing_summary(steered)
    total = sum(g["routing_decisions"] for g in steered)
    assert summary["routing_changed"] == pytest.approx(sum(g["routing_moved"] for g in steered) / total)
    assert summary["routing_changed"] >= 4 / total  # the first step's aa words move in both layers at least
    assert summary["router_logit_range"][1] == pytest.approx(10 * V**0.5, rel=1e-5)
    assert [g["ids"] for g in base] != [g["ids"] for g in steered]  # experts 2, 3 write other columns


def test_a_routing_bias_too_small_to_move_any_expert_is_reported():
    from langneurons.evaluation.steer import SteerSettings, generate
    from langneurons.intervention.routing import routing_summary, routing_warning

    loaded = _planted_with_outputs()
    s = SteerSettings(max_new_tokens=3, batch_size=2, route="bias:*:2:30,bias:*:3:30")  # 30 < the lead of 53
    steered = generate(loaded, ["a1 a2", "a3 s1 a4"], [], s)
    summary = routing_summary(steered)
    assert summary["routing_changed"] == 0.0 and summary["routing_decisions"] > 0
    message = routing_warning(summary)
    assert message is not None and "changed no expert choice" in message and "52.9" in message
    assert routing_warning({**summary, "routing_changed": 0.25}) is None


def test_pooled_sentence_vectors_of_expert_neurons_equal_the_planted_means():
    from tiny import V

    from langneurons.analysis.similarity import similarity
    from langneurons.recording.pooled import record_pooled

    loaded = planted_moe(ROUTES, GROUPS)
    pooled = record_pooled(loaded, corpus(), site="act", batch_size=2, max_length=64, progress=False)
    on, off = (float(torch.nn.functional.silu(torch.tensor(x * V**0.5))) for x in (1.0, -1.0))
    for row, (lang, text) in enumerate([("aa", t) for t in AA] + [("bb", t) for t in BB]):
        words = text.split()
        want = torch.zeros(4 * F_E)
        for w in words:
            for e, routed_words in ROUTES.items():
                if w in routed_words:
                    for j in range(F_E):
                        want[e * F_E + j] += on if w in GROUPS.get((e, j), ()) else off
        want /= len(words)
        assert pooled.row_languages[row] == lang
        for layer in range(2):
            assert torch.allclose(pooled.pooled[row, layer], want, atol=1e-5), (row, layer)
    assert set(similarity(pooled)["per_layer"]) >= {"lrds", "sads"}


def test_expert_neuron_edits_follow_positions_and_stay_selected_during_generate():
    loaded = _planted_with_outputs()
    adapter = loaded.adapter
    enc = loaded.tokenizer(["a1 a2 a3"], return_tensors="pt")
    mask = torch.zeros(adapter.num_layers, adapter.intermediate_size, dtype=torch.bool)
    mask[1, 0 * F_E + 0] = mask[1, 1 * F_E + 5] = True  # fire on a1 / a2 in experts 0 and 1
    rows = []
    with torch.no_grad():
        base = loaded.model(**enc).logits
        with intervene(loaded, deactivate(mask, 0.0, positions="generated")):
            out = loaded.model(**enc).logits  # only the last prompt position produces a new token
            assert torch.equal(out[:, :-1], base[:, :-1]) and not torch.allclose(out[:, -1], base[:, -1], atol=1e-3)
        with intervene(loaded, deactivate(mask, 0.0)):
            assert not torch.equal(loaded.model(**enc).logits, base)
        handles = adapter.hook_blocks("act", lambda layer, x, r: rows.append(x.shape[0]))
        loaded.model.generate(**enc, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        for h in handles:
            h.remove()
    assert loaded.model.config._experts_implementation == "langneurons"
    # prompt forward: 4 tokens × top-2 rows per layer; then one token × top-2 per decoding step
    assert rows == [8, 8] + [2, 2] * 2


def test_ppl_warns_when_a_routing_bias_moves_no_expert(tmp_path):
    from typer.testing import CliRunner

    from langneurons.cli import app

    loaded = _planted_with_outputs()
    folder = tmp_path / "model"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    text = tmp_path / "text"
    text.mkdir()
    (text / "aa.txt").write_text("\n".join(AA) + "\n")
    (text / "bb.txt").write_text("\n".join(BB) + "\n")
    from langneurons.models.loading import load_model

    stats = record(load_model(str(folder), device="cpu"), corpus(), tmp_path / "run", settings(), progress=False)
    identify(stats, "lape", top_rate=4 / 64, filter_rate=0.5, bar_ratio=0.5).save(tmp_path / "set.json")
    args = ["ppl", "--model", str(folder), "--neurons", str(tmp_path / "set.json"), "--corpus", str(text),
            "--no-controls", "--device", "cpu", "--batch-size", "2"]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--route", "bias:*:2:1", "-o", str(tmp_path / "small.json")])
    assert res.exit_code == 0, res.output
    assert "changed no expert choice" in res.output and "52.9" in res.output  # the router's logit range
    small = json.loads((tmp_path / "small.json").read_text())["routing"]
    assert all(small[lang]["routing_changed"] == 0.0 for lang in ("aa", "bb"))
    res = CliRunner().invoke(app, [*args, "--route", "mask:*:0", "-o", str(tmp_path / "mask.json")])
    assert res.exit_code == 0 and "changed no expert choice" not in res.output, res.output
