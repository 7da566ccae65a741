"""DiffMean: residual sums equal a hand computation, a planted language direction is recovered and
steers, directional ablation removes it, the file round-trips and the CLI writes it."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import COMMON, VOCAB, WORDS, tiny_model, word_tokenizer
from transformers import AutoConfig, AutoModelForCausalLM
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.evaluation.steer import SteerSettings, generate
from langneurons.formats.directions import DirectionSet
from langneurons.formats.stats import load_stats, merge_stats, save_stats
from langneurons.identification.diffmean import diffmean
from langneurons.intervention import ablate_direction, add_direction, intervene, random_direction_control
from langneurons.models.loading import wrap_model
from langneurons.recording import RecordSettings, record

AA = ["a1 a2 s1 a3", "a0 a0", "s2 a5 a6 a7 s3 s4", "a4 a1", "a1 s0 a2 a3 a4 a5 a6 a7"]
BB = ["b1 s1", "b0 b2 b3 b4 b5", "s5 s6 b6", "b7 b7 b7 s7", "b3 b1"]
H = 256  # wide enough that a random direction is nearly orthogonal to the planted one (|cos| ~ 1/16)


def corpus() -> Corpus:
    return Corpus("t", {lang: [(str(i), t) for i, t in enumerate(texts)] for lang, texts in (("aa", AA), ("bb", BB))})


def settings(**kw) -> RecordSettings:
    return RecordSettings(batch_size=2, max_length=64, **kw)


def planted_residual_model(seed: int = 0):
    """A LLaMA whose residual stream is its embedding (attention and MLP outputs zero) and whose
    embeddings carry a planted language direction v: +2v for aa words, −2v for bb words, plus small
    noise; the LM head reads v, so +v makes it say aa words and −v bb words."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(H, generator=gen)
    v /= v.norm()
    config = AutoConfig.for_model(
        "llama", **COMMON, hidden_size=H, intermediate_size=8, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128, tie_word_embeddings=False,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    sign = {w: 1.0 for w in WORDS["aa"]} | {w: -1.0 for w in WORDS["bb"]}
    with torch.no_grad():
        emb = 0.05 * torch.randn(len(VOCAB), H, generator=gen)
        head = torch.zeros(len(VOCAB), H)
        for i, word in enumerate(VOCAB):
            emb[i] += 2.0 * sign.get(word, 0.0) * v
            head[i] = 5.0 * sign.get(word, 0.0) * v + 0.01 * torch.randn(H, generator=gen)
        model.model.embed_tokens.weight.copy_(emb)
        model.lm_head.weight.copy_(head)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return wrap_model(model, word_tokenizer(), "planted-residual"), v


def hand_residual_sums(loaded, texts):
    """Sum of each decoder layer's output over every text token (BOS excluded), one sentence at a time."""
    layers = loaded.adapter.layers
    sums = torch.zeros(len(layers), loaded.adapter.hidden_size, dtype=torch.float64)
    norms = torch.zeros(len(layers), dtype=torch.float64)
    for text in texts:
        seen = {}
        handles = [
            layer.register_forward_hook(
                lambda m, a, o, i=i, seen=seen: seen.__setitem__(i, o[0] if isinstance(o, tuple) else o)
            )
            for i, layer in enumerate(layers)
        ]
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            loaded.model(input_ids=ids)
        for h in handles:
            h.remove()
        first = int(ids[0, 0] == loaded.tokenizer.bos_token_id)  # GPT-2's tokenizer adds no BOS
        for i in range(len(layers)):
            h = seen[i][0, first:].double()
            sums[i] += h.sum(0)
            norms[i] += h.norm(dim=1).sum()
    return sums, norms


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2"])
def test_residual_sums_equal_a_hand_computation(tmp_path, family):
    loaded = tiny_model(family)
    stats = record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    assert stats.has_residual
    for k, texts in enumerate((AA, BB)):
        sums, norms = hand_residual_sums(loaded, texts)
        # batched and one-sentence float32 forwards differ by ~1e-6 per token; a sum whose terms cancel keeps
        # that absolute error, so the bound grows with the tokens summed
        atol = 2e-6 * sum(len(t.split()) for t in texts)
        torch.testing.assert_close(stats.resid_sum[k], sums, rtol=1e-5, atol=atol)
        torch.testing.assert_close(stats.resid_norm_sum[k], norms, rtol=1e-5, atol=atol)
    again = load_stats(tmp_path / "run")  # saved and read back
    assert torch.equal(again.resid_sum, stats.resid_sum)


def test_no_residual_setting_and_merge(tmp_path):
    loaded = tiny_model("llama")
    plain = record(loaded, corpus(), tmp_path / "a", settings(residual=False), progress=False)
    assert not plain.has_residual and not load_stats(tmp_path / "a").has_residual
    with pytest.raises(LangneuronsError, match="no residual-stream sums"):
        diffmean(load_stats(tmp_path / "a"))
    # merging halves adds the residual sums like the counts; a run without them makes the merge drop them
    whole = record(loaded, corpus(), tmp_path / "w", settings(), progress=False)
    items = corpus().items
    halves = [Corpus(f"h{i}", {lang: rows[i * 3 : (i + 1) * 3] for lang, rows in items.items()}) for i in (0, 1)]
    parts = [record(loaded, c, tmp_path / c.name, settings(), progress=False) for c in halves]
    merged = merge_stats(parts)
    torch.testing.assert_close(merged.resid_sum, whole.resid_sum, rtol=1e-5, atol=1e-5)  # other batches: fp32 noise
    torch.testing.assert_close(merged.resid_norm_sum, whole.resid_norm_sum, rtol=1e-5, atol=1e-5)
    assert not merge_stats([parts[0], record(loaded, halves[1], tmp_path / "p", settings(residual=False),
                                             progress=False)]).has_residual  # fmt: skip


def test_planted_direction_is_recovered(tmp_path):
    loaded, v = planted_residual_model()
    stats = record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    ds = diffmean(stats)
    for layer in range(ds.num_layers):
        assert float(torch.dot(ds.unit("aa", layer), v)) > 0.99
        assert float(torch.dot(ds.unit("bb", layer), v)) < -0.99
    # direction = μ_aa − μ_bb; r_l = mean over languages of the mean ‖embedding‖ of their tokens
    mu = stats.resid_sum / stats.n_tokens.view(-1, 1, 1).double()
    torch.testing.assert_close(ds.directions[0], (mu[0] - mu[1]).float())
    emb = loaded.model.model.embed_tokens.weight.double()
    per_lang = [emb[[VOCAB.index(w) for t in texts for w in t.split()]].norm(dim=1).mean() for texts in (AA, BB)]
    torch.testing.assert_close(float(ds.resid_norm[1]), float(sum(per_lang) / 2), rtol=1e-5, atol=1e-5)
    ds.save(tmp_path / "dm.json")
    back = DirectionSet.load(tmp_path / "dm.json")
    assert torch.equal(back.directions, ds.directions) and back.languages == ["aa", "bb"]


def test_adding_the_direction_steers_the_planted_model(tmp_path):
    loaded, _ = planted_residual_model()
    ds = diffmean(record(loaded, corpus(), tmp_path / "run", settings(), progress=False))
    s = SteerSettings(max_new_tokens=3, batch_size=2)
    prompts = ["b1 s1 b2", "b3 b4"]  # ending on a bb word: the planted direction, not noise, picks the next word
    words = {w: lang for lang in ("aa", "bb") for w in WORDS[lang]}

    def langs(ivs):
        return {words.get(w) for g in generate(loaded, prompts, ivs, s) for w in g["text"].split()}

    assert langs([]) == {"bb"}
    assert langs([add_direction(ds, "aa", [0], 2.0)]) == {"aa"}
    control = random_direction_control(add_direction(ds, "aa", [0], 2.0), seed=1)
    assert langs([control]) == {"bb"}  # the same norm in a random direction does not switch
    torch.testing.assert_close(control.vectors[0].norm(), add_direction(ds, "aa", [0], 2.0).vectors[0].norm())


def test_ablation_projects_the_direction_out(tmp_path):
    loaded, v = planted_residual_model()
    ds = diffmean(record(loaded, corpus(), tmp_path / "run", settings(), progress=False))
    seen = {}
    handle = loaded.adapter.layers[1].register_forward_hook(lambda m, a, o: seen.__setitem__("h", o))
    ids = loaded.tokenizer(["a1 a2 b1"], return_tensors="pt")["input_ids"]
    out = {}
    with torch.no_grad():
        loaded.model(input_ids=ids)
        before = seen["h"].clone()
        for centered in (True, False):
            with intervene(loaded, [ablate_direction(ds, "aa", centered=centered)]):
                loaded.model(input_ids=ids)
            out[centered] = seen["h"].clone()
    handle.remove()
    u, c = ds.unit("aa", 1), ds.mean[1]
    assert ids[0, 0] == loaded.tokenizer.bos_token_id
    assert float((before[:, 1:] @ u).abs().max()) > 1.5
    for centered in (True, False):  # BOS (never counted, so outside the estimate) is left as it was
        assert torch.equal(out[centered][:, 0], before[:, 0])
    after, before = {k: v[:, 1:] for k, v in out.items()}, before[:, 1:]
    # about the languages' mean (default): nothing is left along u but the mean's own component
    torch.testing.assert_close(after[True] @ u, torch.full_like(after[True] @ u, float(c @ u)), atol=1e-4, rtol=0)
    torch.testing.assert_close(after[True], before - ((before - c) @ u).unsqueeze(-1) * u)
    torch.testing.assert_close(after[False], before - (before @ u).unsqueeze(-1) * u)  # about 0


def test_centered_ablation_spares_a_massive_offset():
    """A residual stream with one massive shared coordinate (as in Gemma-3): projecting a random direction
    out about 0 moves every coordinate by ~offset/H; about the mean it only removes the small variation."""
    from langneurons.intervention.directions import DirectionIntervention, apply_direction

    gen = torch.Generator().manual_seed(0)
    h = 0.1 * torch.randn(5, 64, generator=gen)
    h[:, 0] += 3000.0
    u = torch.randn(64, generator=gen)
    u /= u.norm()
    centre = torch.zeros(64)
    centre[0] = 3000.0
    plain = apply_direction(DirectionIntervention({0: u}, "ablate"), 0, h)
    centred = apply_direction(DirectionIntervention({0: u}, "ablate", centers={0: centre}), 0, h)
    assert float((plain - h).abs().max()) > 10.0
    assert float((centred - h).abs().max()) < 0.5


def test_identify_diffmean_cli(tmp_path):
    loaded = tiny_model("llama")
    record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    out = tmp_path / "dm.json"
    result = CliRunner().invoke(app, ["identify", str(tmp_path / "run"), "--method", "diffmean", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["format"] == "langneurons-directions/1" and data["site"] == "residual"
    assert len(data["norms"]["aa"]) == loaded.adapter.num_layers
    assert (tmp_path / "dm.safetensors").exists()
    bad = CliRunner().invoke(
        app, ["identify", str(tmp_path / "run"), "-m", "diffmean", "-o", str(out), "--top-rate", "0.1"]
    )
    assert bad.exit_code == 2
    stats = load_stats(tmp_path / "run")
    del stats.extra["resid_sum"], stats.extra["resid_norm_sum"]
    save_stats(tmp_path / "old", stats)
    old = CliRunner().invoke(app, ["identify", str(tmp_path / "old"), "-m", "diffmean", "-o", str(tmp_path / "x.json")])
    assert old.exit_code == 2 and "no residual-stream sums" in old.output


def saved_direction_set(tmp_path):
    """The planted residual model saved to ``tmp_path/model``, its DiffMean set identified by the CLI from a
    recording (``tmp_path/dm.json``) and a two-line prompt file (``tmp_path/prompts.txt``): (model path, set)."""
    from langneurons.models.loading import load_model

    planted, _ = planted_residual_model()
    planted.model.save_pretrained(tmp_path / "model")
    planted.tokenizer.save_pretrained(tmp_path / "model")
    loaded = load_model(str(tmp_path / "model"), device="cpu")
    record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    dm = tmp_path / "dm.json"
    assert CliRunner().invoke(app, ["identify", str(tmp_path / "run"), "-m", "diffmean", "-o", str(dm)]).exit_code == 0
    (tmp_path / "prompts.txt").write_text("b1 s1 b2\nb3 b4\n")
    return str(tmp_path / "model"), dm


def test_steer_and_translate_cli_with_directions(tmp_path):
    model, dm = saved_direction_set(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["steer", "--model", model, "--directions", str(dm), "--from", "bb", "--to", "aa",
                              "--layers", "0,1", "--strength", "2", "--prompts", str(tmp_path / "prompts.txt"),
                              "--max-new-tokens", "3", "--device", "cpu",
                              "--out", str(tmp_path / "s.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "s.json").read_text())
    steered = data["results"]["aa"]["strengths"]
    assert set(steered) == {"2 @ layer 0", "2 @ layer 1"}
    for key in steered:  # every generated word is an aa word; the random direction's are bb words
        assert all(w in WORDS["aa"] for g in steered[key]["steered"]["generations"] for w in g["text"].split())
        assert all(w in WORDS["bb"] for g in steered[key]["random"]["generations"] for w in g["text"].split())
    default = ["steer", "--model", model, "--directions", str(dm), "--from", "bb", "--to", "aa", "--prompts",
               str(tmp_path / "prompts.txt"), "--max-new-tokens", "2", "--out", str(tmp_path / "d.json")]  # fmt: skip
    assert runner.invoke(app, default).exit_code == 0
    swept = json.loads((tmp_path / "d.json").read_text())["results"]["aa"]["strengths"]
    # the default sweep: α ∈ {0.05, 0.1, 0.25} × the layers at ¼, ½, ¾ of the depth (0, 1, 1 of 2 layers)
    assert set(swept) == {f"{a:g} @ layer {layer}" for a in (0.05, 0.1, 0.25) for layer in (0, 1)}
    both = ["steer", "--model", model, "--directions", str(dm), "--neurons", str(dm), "--to", "aa",
            "--out", str(tmp_path / "x.json")]  # fmt: skip
    res = runner.invoke(app, both)
    assert res.exit_code == 2 and "exactly one of --neurons, --heads and --directions" in res.output
    bad_layer = ["steer", "--model", model, "--directions", str(dm), "--to", "aa", "--layers", "7",
                 "--out", str(tmp_path / "y.json")]  # fmt: skip
    res = runner.invoke(app, bad_layer)
    assert res.exit_code == 2 and "out of range" in res.output
    par = tmp_path / "par"
    par.mkdir()
    (par / "aa.txt").write_text("\n".join(AA) + "\n")
    (par / "bb.txt").write_text("\n".join(BB) + "\n")
    res = runner.invoke(app, ["translate", "--model", model, "--directions", str(dm), "--pairs", "aa-bb",
                              "--corpus", str(par), "--sentences", "3", "--shots", "1", "--max-new-tokens", "3",
                              "--bootstrap", "10", "--device", "cpu", "-o", str(tmp_path / "t.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    tr = json.loads((tmp_path / "t.json").read_text())
    assert tr["conditions"] == ["none", "off:bb", "random:bb"] and "bb" in tr["selectivity"]


def test_record_cli_no_residual(tmp_path):
    loaded = tiny_model("llama")
    loaded.model.save_pretrained(tmp_path / "model")
    loaded.tokenizer.save_pretrained(tmp_path / "model")
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "aa.txt").write_text("\n".join(AA) + "\n")
    (texts / "bb.txt").write_text("\n".join(BB) + "\n")
    base = ["record", "--model", str(tmp_path / "model"), "--corpus", str(texts), "--max-length", "64",
            "--device", "cpu"]  # fmt: skip
    for flag, expected in (("--residual", True), ("--no-residual", False)):
        res = CliRunner().invoke(app, [*base, flag, "--out", str(tmp_path / flag)])
        assert res.exit_code == 0, res.output
        stats = load_stats(tmp_path / flag)
        assert stats.has_residual is expected and stats.manifest["settings"]["residual"] is expected


def test_moe_recording_sums_the_residual_beside_the_routing(tmp_path):
    from tiny_moe import MOE_FAMILIES, tiny_moe_loaded

    loaded = tiny_moe_loaded(MOE_FAMILIES[0])
    stats = record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    assert stats.has_residual and {"routed_tokens", "router_probability"} <= set(stats.extra)
    for k, texts in enumerate((AA, BB)):
        sums, norms = hand_residual_sums(loaded, texts)
        # batched and one-sentence float32 forwards differ by ~1e-6 per token; a sum whose terms cancel keeps
        # that absolute error, so the bound grows with the tokens summed
        atol = 2e-6 * sum(len(t.split()) for t in texts)
        torch.testing.assert_close(stats.resid_sum[k], sums, rtol=1e-5, atol=atol)
        torch.testing.assert_close(stats.resid_norm_sum[k], norms, rtol=1e-5, atol=atol)
    again = load_stats(tmp_path / "run")
    assert set(again.extra) == set(stats.extra) and torch.equal(again.resid_sum, stats.resid_sum)


def test_identify_diffmean_default_out_and_steer_directions_refused_under_torchrun(tmp_path, monkeypatch):
    loaded = tiny_model("llama")
    record(loaded, corpus(), tmp_path / "run", settings(), progress=False)
    runner = CliRunner()
    res = runner.invoke(app, ["identify", str(tmp_path / "run"), "-m", "diffmean"])
    assert res.exit_code == 0, res.output
    dm = tmp_path / "run" / "diffmean.json"
    assert dm.exists()
    again = runner.invoke(app, ["identify", str(tmp_path / "run"), "-m", "diffmean"])  # the same: kept
    assert again.exit_code == 0 and "is up to date (same statistics); kept it" in again.output, again.output
    other = runner.invoke(app, ["identify", str(tmp_path / "run"), "-m", "diffmean", "--languages", "bb,aa"])
    assert other.exit_code == 2 and "of other inputs: languages" in other.output and "--overwrite" in other.output
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = runner.invoke(app, ["steer", "--directions", str(dm), "--to", "aa"])
    assert res.exit_code == 2 and "without torchrun" in res.output
