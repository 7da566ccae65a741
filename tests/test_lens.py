"""The logit lens (docs/methods.md §16): the last layer is the model's own output on every family, a planted
middle layer shows its token's peak there, the word filter, bootstrap intervals, and bad input."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, tiny_model
from tiny_moe import MOE_FAMILIES, tiny_moe_loaded


def _last_layer_matches(loaded) -> None:
    batch = loaded.tokenizer(["a1 b2 s3 a4", "b1 b1"], padding=True, return_tensors="pt")
    logits = loaded.model(**batch).logits
    last = batch.attention_mask.sum(1) - 1
    want = torch.log_softmax(logits[torch.arange(2), last].float(), -1)
    hidden = loaded.adapter.residual_stream(batch.input_ids, batch.attention_mask, last_only=True)
    assert hidden.shape == (2, loaded.adapter.num_layers, loaded.adapter.hidden_size)
    got = torch.log_softmax(loaded.adapter.lens_logits(hidden[:, -1]), -1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # an earlier layer is a different distribution (the lens reads the stream, not the output)
    assert not torch.allclose(torch.log_softmax(loaded.adapter.lens_logits(hidden[:, 0]), -1), want, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_last_layer_is_the_model_output(family):
    _last_layer_matches(tiny_model(family))


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_last_layer_is_the_model_output_moe(family):
    _last_layer_matches(tiny_moe_loaded(family))


def test_softcapping_is_applied():
    loaded = tiny_model("gemma2")
    loaded.model.config.final_logit_softcapping = 0.05  # tiny cap: every logit is squeezed into ±0.05
    _last_layer_matches(loaded)
    hidden = loaded.adapter.residual_stream(torch.tensor([[1, 5, 6]]), last_only=True)
    assert loaded.adapter.lens_logits(hidden[:, 1]).abs().max() <= 0.05


# ---- a planted model: layer 1 (of 3) writes a chosen token, layer 2 overwrites it ------------------------
def planted_lens_model(token: str = "s3", final: str = "b7", strength: float = 12.0):
    """A LLaMA with one-hot embeddings, silent attention and an identity LM head: layer 1's MLP adds
    ``strength`` on ``token``'s coordinate, layer 2's removes it and adds it on ``final``'s."""
    from tiny import COMMON, VOCAB, word_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    from langneurons.models.loading import wrap_model

    v = len(VOCAB)
    config = AutoConfig.for_model(
        "llama", **COMMON, hidden_size=v, intermediate_size=4, num_hidden_layers=3, num_attention_heads=1,
        num_key_value_heads=1, head_dim=v, max_position_embeddings=128, rms_norm_eps=1e-12, tie_word_embeddings=False,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(v))
        act = torch.nn.functional.silu(torch.tensor(v**0.5)).item()  # neuron 0's act·up on any normed one-hot
        for i, layer in enumerate(model.model.layers):
            layer.self_attn.o_proj.weight.zero_()
            for w in (layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight, layer.mlp.down_proj.weight):
                w.zero_()
            layer.mlp.gate_proj.weight[0].fill_(1.0)
            layer.mlp.up_proj.weight[0].fill_(v**-0.5)
            if i == 1:
                layer.mlp.down_proj.weight[VOCAB.index(token), 0] = strength / act
            if i == 2:
                layer.mlp.down_proj.weight[VOCAB.index(token), 0] = -strength / act
                layer.mlp.down_proj.weight[VOCAB.index(final), 0] = strength / act
        model.lm_head.weight.copy_(10 * torch.eye(v) / v**0.5)  # RMSNorm scales a one-hot by √v: logit ≈ 10
    return wrap_model(model, word_tokenizer(), "planted-lens")


def _word_file(path, rows) -> str:
    import json

    path.write_text("".join(json.dumps({"id": c, "lang": lang, "word": w}) + "\n" for c, lang, w in rows))
    return str(path)


def _planted_words(tmp_path, extra=()):
    from langneurons.data.words import load_words

    rows = []
    for k in range(6):
        rows += [(f"c{k}", "en", "b7"), (f"c{k}", "aa", f"a{k}"), (f"c{k}", "bb", "s3")]
    return load_words(_word_file(tmp_path / "words.jsonl", rows + list(extra)))


def test_planted_middle_layer_peaks_there(tmp_path):
    from langneurons.analysis.lens import LensSettings, word_task

    loaded = planted_lens_model()
    words = _planted_words(tmp_path)
    result = word_task(loaded, words, LensSettings(source="aa", target="bb", shots=2, bootstrap=200), progress=False)
    target, english = result["mean"]["target"], result["mean"]["english"]
    assert result["peaks"]["target"]["layer"] == 1 and target[1] > 0.9
    assert target[0] < 0.1 and target[2] < 0.1
    assert result["peaks"]["english"]["layer"] == 2 and english[2] > 0.9
    # the last layer is the model's own output probability of the target token
    from tiny import VOCAB

    batch = loaded.tokenizer([result["prompts"][0]["prompt"]], return_tensors="pt")
    probs = torch.softmax(loaded.model(**batch).logits[0, -1], -1)
    assert result["prompts"][0]["target"][-1] == pytest.approx(probs[VOCAB.index("s3")].item(), abs=1e-5)
    assert result["prompts"][0]["target_ids"] == [VOCAB.index("s3")]
    assert result["words"]["kept"] == 6 and len(result["prompts"]) == 6
    for curve in ("target", "english", "source", "entropy"):
        assert len(result["mean"][curve]) == 3 and len(result["ci"][curve]["low"]) == 3


def test_filter_drops_a_word_whose_first_tokens_coincide(tmp_path):
    from langneurons.analysis.lens import LensSettings, filter_concepts

    loaded = planted_lens_model()
    words = _planted_words(tmp_path, extra=[("same", "en", "s3 b1"), ("same", "aa", "a1"), ("same", "bb", "s3")])
    kept, dropped = filter_concepts(loaded.tokenizer, words, LensSettings(source="aa", target="bb"))
    assert "same" not in kept and [d["id"] for d in dropped] == ["same"]
    assert kept == [f"c{k}" for k in range(6)]


def test_first_token_ids_with_and_without_space():
    from langneurons.analysis.lens import first_token_ids

    class Spaced:  # a tokenizer that splits a leading space into its own token, as Llama-2's does for Han
        def __call__(self, text, add_special_tokens=False):
            class Out:
                input_ids = [0, 7, 8] if text.startswith(" ") else [7, 8]

            return Out()

        def decode(self, ids):
            return {0: " ", 7: "花", 8: "x"}[ids[0]]

    assert first_token_ids(Spaced(), "花") == [7]


def test_bootstrap_interval_by_hand():
    from langneurons.analysis.lens import bootstrap_mean_ci

    # two prompts, 0 and 1: a resampled mean is 0, ½ or 1 (¼, ½, ¼), so with 1000 draws the 2.5 % and
    # 97.5 % quantiles are 0 and 1; a constant column has the constant as both ends
    values = torch.tensor([[0.0, 0.3], [1.0, 0.3]])
    lo, hi = bootstrap_mean_ci(values, resamples=1000, seed=0)
    assert lo[0] == 0.0 and hi[0] == 1.0
    assert lo[1] == pytest.approx(0.3) and hi[1] == pytest.approx(0.3)
    # the same seed gives the same interval; the interval brackets the mean
    values = torch.tensor([[0.1], [0.4], [0.2], [0.9], [0.5]])
    assert bootstrap_mean_ci(values, 500, 3) == bootstrap_mean_ci(values, 500, 3)
    lo, hi = bootstrap_mean_ci(values, 500, 3)
    assert lo[0] < 0.42 < hi[0] and 0.1 <= lo[0] and hi[0] <= 0.9


def test_builtin_word_list():
    from langneurons.data.ntrex import NTREX_LANGUAGES
    from langneurons.data.words import LANGUAGE_NAMES, load_words

    words = load_words()
    assert len(words.words) >= 100
    assert set(words.languages) == set(NTREX_LANGUAGES)
    assert all(len(per) == len(NTREX_LANGUAGES) for per in words.words.values())
    assert set(LANGUAGE_NAMES) >= set(NTREX_LANGUAGES)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "fr", "--to", "xx"], "no words in 'xx'"),
        (["--from", "fr"], "needs --to"),
        (["--to", "zh"], "needs --from"),
        (["--from", "fr", "--to", "fr"], "use --task repetition"),
        (["--task", "poem", "--to", "zh"], "unknown --task"),
        (["--task", "cloze", "--from", "fr", "--to", "zh"], "cloze sentences"),
        (["--task", "text", "--languages", "fr,xx"], "unknown language code(s) xx"),
        (["--task", "text", "--from", "fr"], "--task text reads natural text"),
        (["--to", "zh", "--from", "fr", "--tuned", "missing.safetensors"], "does not exist"),
    ],
)
def test_bad_input_fails_before_the_model_loads(tmp_path, monkeypatch, args, message):
    from typer.testing import CliRunner

    import langneurons.cli.options as opt
    from langneurons.cli import app

    def no_load(self):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(opt.ModelOptions, "load", no_load)
    result = CliRunner().invoke(app, ["lens", *args, "-o", str(tmp_path / "l.json")])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("error:") == 1
    assert not (tmp_path / "l.json").exists()


# ---- tuned lens ----------------------------------------------------------------------------------------
def _tiny_corpus(tmp_path):
    from test_distributed import make_inputs

    from langneurons.data import load_corpus

    _, corpus = make_inputs(tmp_path, sentences=15)
    return load_corpus(corpus)


def test_tuned_lens_lowers_kl_and_resumes_exactly(tmp_path, monkeypatch):
    import langneurons.analysis.tuned_lens as tl
    from langneurons.formats.tuned_lens import TunedLens

    loaded = tiny_model("llama")
    corpus = _tiny_corpus(tmp_path)
    s = tl.TunedLensSettings(steps=40, lr=1e-2, top_k=4, negatives=8, checkpoint_every=10)
    whole = tl.train_tuned_lens(loaded, corpus, s, out=tmp_path / "whole.safetensors", progress=False)
    kl = whole.info["kl_validation"]
    assert sum(kl["tuned"][:-1]) < 0.8 * sum(kl["logit"][:-1])
    assert kl["tuned"][-1] == pytest.approx(kl["logit"][-1], abs=1e-6)  # the last map is the identity
    assert torch.equal(whole.weight[-1], torch.eye(whole.hidden_size))
    # interrupted after the checkpoint at step 20, then the same command: the same maps, bit for bit
    real = tl._checkpoint

    def stop_after_20(path, key, delta, bias, optim, gen, step):
        real(path, key, delta, bias, optim, gen, step)
        if step == 20:
            raise KeyboardInterrupt

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(tl, "_checkpoint", stop_after_20)
    with pytest.raises(KeyboardInterrupt):
        tl.train_tuned_lens(loaded, corpus, s, out=out, progress=False)
    assert (tmp_path / "resumed.safetensors.partial").exists() and not out.exists()
    monkeypatch.setattr(tl, "_checkpoint", real)
    resumed = tl.train_tuned_lens(loaded, corpus, s, out=out, progress=False)
    assert torch.equal(resumed.weight, whole.weight) and torch.equal(resumed.bias, whole.bias)
    assert not (tmp_path / "resumed.safetensors.partial").exists()
    loaded_back = TunedLens.load(out)
    assert torch.equal(loaded_back.weight, whole.weight) and loaded_back.info["steps_done"] == 40
    assert loaded_back.info["model"] == "tiny-llama" and "torch_version" in loaded_back.info


def test_word_task_with_a_tuned_lens_reports_both_kls(tmp_path):
    from langneurons.analysis.lens import LensSettings, word_task
    from langneurons.formats.tuned_lens import TunedLens

    loaded = planted_lens_model()
    words = _planted_words(tmp_path)
    s = LensSettings(source="aa", target="bb", shots=2, bootstrap=50)
    plain = word_task(loaded, words, s, progress=False)
    ident = TunedLens.identity(loaded.adapter.num_layers, loaded.adapter.hidden_size)
    tuned = word_task(loaded, words, s, tuned=ident, progress=False)
    assert tuned["lens"] == "tuned" and set(tuned["kl"]) == {"logit", "tuned"}
    assert tuned["mean"]["target"] == pytest.approx(plain["mean"]["target"], abs=1e-6)  # identity maps
    assert tuned["kl"]["tuned"] == pytest.approx(tuned["kl"]["logit"], abs=1e-5)
    with pytest.raises(Exception, match="train one for this model"):
        word_task(loaded, words, s, tuned=TunedLens.identity(2, 5), progress=False)


def test_text_task_shares(tmp_path):
    from langneurons.analysis.lens_text import text_task

    loaded = planted_lens_model()  # the last layer writes b7 everywhere: bb's own token at the last layer
    corpus = _tiny_corpus(tmp_path)
    result = text_task(loaded, corpus, batch_size=4, max_length=16, progress=False)
    bb = result["share"]["bb"]
    assert bb["own"][-1] == pytest.approx(1.0)  # b7 occurs only in the bb text
    assert result["share"]["aa"]["shares"]["bb"][-1] == pytest.approx(1.0)
    for lang, per in result["share"].items():  # shares over languages + none sum to 1 at every layer
        for layer in range(3):
            total = sum(v[layer] for v in per["shares"].values()) + per["none"][layer]
            assert total == pytest.approx(1.0), lang


def test_token_language_rule():
    from langneurons.analysis.token_language import TokenLanguages, token_script

    texts = {0: "собака", 1: "кіт", 2: "chien", 3: "dog", 4: "的", 5: "です", 6: ", ", 7: "the", 8: "花"}

    class Tok:
        def decode(self, ids):
            return texts[ids[0]]

    seen = {"ru": {0}, "uk": {1, 0}, "fr": {2, 7}, "en": {3, 7}, "zh": {4, 8}, "ja": {8}}
    rule = TokenLanguages(Tok(), ["ru", "uk", "fr", "en", "zh", "ja"], seen=seen)
    assert [rule(i) for i in range(9)] == [None, "uk", "fr", "en", "zh", "ja", None, None, None]
    # one Cyrillic language considered: the script alone decides, corpus or not
    assert TokenLanguages(Tok(), ["ru", "en"])(1) == "ru"
    assert token_script("Hund!") == "Latin" and token_script("12 ,") is None


# ---- the report: lens curves above the neuron classes, one layer axis -----------------------------------
def _fake_lens(num_layers: int, task: str = "translation") -> dict:
    ramp = [i / (num_layers - 1) for i in range(num_layers)]
    bump = [1.0 - abs(i - num_layers / 2) / num_layers for i in range(num_layers)]
    ci = {"low": [max(0.0, v - 0.1) for v in ramp], "high": [v + 0.1 for v in ramp]}
    return {
        "format": "langneurons-lens/1", "task": task, "from": "fr", "to": "zh", "model": "m <b>", "lens": "logit",
        "num_layers": num_layers, "mean": {"target": ramp, "english": bump, "source": bump, "entropy": ramp},
        "ci": {c: ci for c in ("target", "english", "source", "entropy")},
        "peaks": {"target": {"layer": num_layers - 1, "value": 1.0}, "english": {"layer": num_layers // 2,
                                                                              "value": 1.0}},
        "kl": {"logit": ramp[::-1], "tuned": [v / 2 for v in ramp[::-1]]},
        "words": {"list": "builtin:nouns", "kept": 9, "concepts": 10, "prompts": 9},
        "provenance": {"settings": {"shots": 4, "bootstrap": 100}},
    }  # fmt: skip


def test_report_draws_the_lens_above_the_neuron_classes(tmp_path):
    import json
    import re

    from test_analyze import SET, write_run
    from typer.testing import CliRunner

    from langneurons.cli import app

    run = write_run(tmp_path / "run", SET, None, {"lens-fr-zh.json": _fake_lens(SET.num_layers)})
    elsewhere = tmp_path / "de-ru.json"
    elsewhere.write_text(json.dumps(_fake_lens(SET.num_layers) | {"from": "de", "to": "ru"}))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(run), "--lens", str(elsewhere), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    figures = re.findall(r'<figure id="([^"]+)"', page)
    assert {"lens-depth.png", "lens-lens-fr-zh.png", "lens-de-ru.png"} <= set(figures)
    assert "Latent language (logit lens)" in page and "same layer axis" in page
    assert "m &lt;b&gt;" in page and "m <b>" not in page  # escaped by the templates
    assert "KL(final" in page and "translation de→ru" in page
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "langneurons-ppl/1"}))
    result = CliRunner().invoke(app, ["report", str(run), "--lens", str(bad), "-o", str(tmp_path / "r2.html")])
    assert result.exit_code == 2 and "not a lens result" in result.output


def test_lens_section_template_is_packaged():
    from langneurons.reporting.html import environment
    from langneurons.reporting.sections.lens import TEMPLATE

    assert TEMPLATE in environment().list_templates()


def test_api_lens_returns_a_result_with_a_short_repr(tmp_path):
    import langneurons as ln

    loaded = planted_lens_model()
    words = _planted_words(tmp_path)
    result = ln.lens(loaded, "translation", source="aa", to="bb", words=words.name, shots=2, bootstrap=50,
                     progress=False)  # fmt: skip
    text = repr(result)
    assert text.startswith("Result(lens (logit) translation aa→bb, 6 prompts, 3 layers; peaks p_target 1.00@1")
    assert len(text) < 200 and result.kind == "lens"
    with pytest.raises(ln.LangneuronsError, match="needs to="):
        ln.lens(loaded, "translation", source="aa", words=words.name, progress=False)


def test_torchrun_lens_equals_one_process(tmp_path):
    """Prompts split over 2 ranks in fixed batches: the same curves as one process, bit for bit."""
    import json
    import subprocess
    import sys

    from test_distributed import make_inputs, run_env

    model, _ = make_inputs(tmp_path, sentences=2)
    rows = []
    for k in range(8):
        rows += [(f"c{k}", "en", f"b{k}"), (f"c{k}", "aa", f"a{k}"), (f"c{k}", "bb", f"s{k}")]
    words = _word_file(tmp_path / "w.jsonl", rows)
    args = ["lens", "--model", model, "--from", "aa", "--to", "bb", "--words", words, "--shots", "2",
            "--batch-size", "3", "--bootstrap", "50", "--device", "cpu", "--no-figure"]  # fmt: skip
    one = subprocess.run([sys.executable, "-m", "langneurons", *args, "-o", str(tmp_path / "one.json")],
                         capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    many = subprocess.run([*launcher, "-m", "langneurons", *args, "-o", str(tmp_path / "many.json")],
                          capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert many.returncode == 0, many.stderr
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "many"))
    assert a["mean"] == b["mean"] and a["ci"] == b["ci"] and a["prompts"] == b["prompts"]
    assert len(a["prompts"]) == 8 and b["provenance"]["processes"] == 2


def test_cloze_and_repetition_prompts(tmp_path):
    import json

    from langneurons.analysis.lens import LensSettings, build_prompts, filter_concepts
    from langneurons.data.words import load_words

    lines = []
    for k in range(4):
        lines += [{"id": f"c{k}", "lang": "en", "word": "b7"},
                  {"id": f"c{k}", "lang": "bb", "word": f"s{k}", "cloze": f"a{k} ___ a{k}"}]  # fmt: skip
    path = tmp_path / "cloze.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    words = load_words(path)
    s = LensSettings(task="cloze", source="bb", target="bb", shots=2)
    kept, _ = filter_concepts(planted_lens_model().tokenizer, words, s)
    prompts = build_prompts(words, kept, s)
    last = prompts[0]["prompt"].splitlines()
    assert len(last) == 3 and last[-1] == 'a0 ___ a0 Answer: "' and last[0].endswith('"')
    rep = build_prompts(words, kept, LensSettings(task="repetition", target="bb", shots=2))
    assert rep[1]["prompt"].splitlines()[-1] == 'bb: "s1" - bb: "'


def test_depth_figure_with_moe_routing_panel():
    import warnings

    from test_analyze import SET

    from langneurons.reporting.lens_figure import lens_depth_figure

    n = SET.num_layers
    routing = {"reference": "en", "moe_layers": list(range(n)),
               "js_divergence": {"en": [0.0] * n, "fr": [0.1 * i / n for i in range(n)]}}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = lens_depth_figure([_fake_lens(n), _fake_lens(n, "text") | {"share": {"fr": {
            "own": [0.5] * n, "en": [0.1] * n}}}], SET, routing)  # fmt: skip
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
