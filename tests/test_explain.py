"""Explaining neurons: exact top examples (planted maxima; the same under batching, shards, resume, merge,
a targeted pass), what a neuron writes (a planted unembedding row ranks first), cards, `explain` errors."""

from __future__ import annotations

import json

import pytest
import torch
from test_distributed import make_inputs
from tiny import VOCAB, WORDS, planted_model, tiny_model
from typer.testing import CliRunner

import langneurons as ln
from langneurons.analysis.token_language import TokenLanguages, language_scripts, token_script
from langneurons.analysis.writes import WriteLens, neuron_writes
from langneurons.cli import app
from langneurons.data import Corpus, load_corpus
from langneurons.formats.examples import load_examples, merge_examples
from langneurons.models.loading import load_model
from langneurons.recording import RecordSettings, record
from langneurons.recording.examples import collect_examples

AA = ["a1 a2 s1 a3", "a0 a0", "s2 a5 a6 a7 s3 s4", "a4", "a1 s0 a2 a3 a4 a5 a6 a7", "a7 a7 s1", "a3"]
BB = ["b1 s1", "b0 b2 b3 b4 b5", "s5 s6 b6", "b7 b7 b7 s7", "b3", "s1 b7", "b2 b2"]


def corpus() -> Corpus:
    return Corpus("test", {"aa": [(str(i), t) for i, t in enumerate(AA)],
                           "bb": [(str(i), t) for i, t in enumerate(BB)]})


def settings(**kw) -> RecordSettings:
    return RecordSettings(**{"batch_size": 2, "chunk_batches": 1, "max_length": 64, "examples": 5, **kw})


def planted_ranked() -> tuple:
    """A planted model whose neuron 0 fires on aa words with strength rising with the word's number (a7 the
    largest), and the expected top list from the text alone: value order, ties by (sentence, position)."""
    loaded = planted_model({0: set(WORDS["aa"]), 1: set(WORDS["bb"])}, num_layers=2)
    with torch.no_grad():
        for layer in loaded.model.model.layers:
            for i, word in enumerate(WORDS["aa"]):
                layer.mlp.gate_proj.weight[0, VOCAB.index(word)] = 0.5 + 0.25 * i
    expected = []
    for s, text in enumerate(AA):
        for p, word in enumerate(text.split(), start=1):  # position 0 is BOS
            if word in WORDS["aa"]:
                expected.append((-WORDS["aa"].index(word), s, p))
    return loaded, [(s, p) for _, s, p in sorted(expected)]


def test_top_examples_are_the_planted_maxima():
    loaded, expected = planted_ranked()
    stats = record(loaded, corpus(), None, settings(examples=6), progress=False)
    for layer in (0, 1):
        top = stats.examples.top("aa", layer, 0)
        assert [(s, p) for _, s, p in top] == expected[:6]  # a7 ×4 (sentence 2, 4, 5, 5), then a6, …
        values = [v for v, _, _ in top]
        assert values == sorted(values, reverse=True) and values[0] > values[4]
    assert AA[expected[0][0]].split()[expected[0][1] - 1] == "a7"
    # neuron 0 never fires on bb text: its bb examples are the least negative activations, all tokens kept
    assert len(stats.examples.top("bb", 0, 0)) == 6


def _lists(examples, langs=("aa", "bb"), layers=3, width=48) -> list:
    return [examples.top(lang, layer, j) for lang in langs for layer in range(layers) for j in range(width)]


def _same(a, b, exact: bool) -> None:
    """Equal lists: the same (sentence, position) in the same order; values equal (planted: bit for bit)."""
    assert [[(s, p) for _, s, p in row] for row in a] == [[(s, p) for _, s, p in row] for row in b]
    for x, y in zip(a, b, strict=True):
        if exact:
            assert [v for v, _, _ in x] == [v for v, _, _ in y]
        else:
            assert [v for v, _, _ in x] == pytest.approx([v for v, _, _ in y], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("kind", ["planted", "llama"])
def test_topk_is_the_same_under_batches_shards_resume_merge_and_targeted_pass(tmp_path, monkeypatch, kind):
    # planted: activations depend on the token only, so equal words tie exactly and the (sentence, position)
    # tie-break decides; llama: real values (batched GEMMs round the last bits differently)
    loaded = planted_ranked()[0] if kind == "planted" else tiny_model("llama")
    exact, layers = kind == "planted", loaded.adapter.num_layers

    def lists(examples):
        return _lists(examples, layers=layers)

    whole = record(loaded, corpus(), None, settings(batch_size=1), progress=False).examples
    for kw in ({"batch_size": 3}, {"batch_size": 7, "chunk_batches": 2}, {"shards": 2, "batch_size": 2}):
        _same(lists(record(loaded, corpus(), None, settings(**kw), progress=False).examples), lists(whole), exact)
    # a resumed run: interrupted after 3 units (checkpoint holds the examples so far), then run again
    import langneurons.recording.recorder as recorder

    calls = {"n": 0}
    describe = recorder._describe

    def interrupt(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return describe(*args)

    monkeypatch.setattr(recorder, "_describe", interrupt)
    with pytest.raises(KeyboardInterrupt):
        record(loaded, corpus(), tmp_path / "r", settings(checkpoint_every_units=1), progress=False)
    monkeypatch.setattr(recorder, "_describe", describe)
    assert (tmp_path / "r" / recorder.CHECKPOINT_FILE).exists()
    resumed = record(loaded, corpus(), tmp_path / "r", settings(checkpoint_every_units=1), progress=False)
    _same(lists(resumed.examples), lists(whole), exact)
    _same(lists(load_examples(tmp_path / "r")), lists(whole), exact)
    # merge: the first 4 and the last 3 sentences of each language, recorded apart
    first = Corpus("t", {lang: pairs[:4] for lang, pairs in corpus().items.items()})
    second = Corpus("t", {lang: pairs[4:] for lang, pairs in corpus().items.items()})
    a = record(loaded, first, None, settings(batch_size=3), progress=False)
    b = record(loaded, second, None, settings(batch_size=2), progress=False)
    parts = [(a.examples, a.manifest["sentences"]), (b.examples, b.manifest["sentences"])]
    _same(lists(merge_examples(parts, ["aa", "bb"])), lists(whole), exact)
    # a targeted pass over a few neurons equals the recorded lists of those neurons
    picked = {1: [3, 40], layers - 1: [0]}
    tracker = collect_examples(loaded, corpus(), picked, 5, site="act", sentences={"aa": 7, "bb": 7})
    targeted = tracker.result({"languages": ["aa", "bb"]})
    for layer, idx in picked.items():
        for j in idx:
            _same([targeted.top("bb", layer, j)], [whole.top("bb", layer, j)], exact)
    assert targeted.top("aa", 0, 5) is None  # not tracked


def test_record_examples_refuses_packing_and_negative_k():
    with pytest.raises(ln.LangneuronsError, match="packing"):
        settings(packing=True).validate()
    with pytest.raises(ln.LangneuronsError, match="--examples"):
        settings(examples=-1).validate()


def _langs(loaded) -> TokenLanguages:
    texts = {"aa": [" ".join(WORDS["aa"] + WORDS["shared"])], "bb": [" ".join(WORDS["bb"] + WORDS["shared"])]}
    return TokenLanguages(loaded.tokenizer, ["aa", "bb"], texts)


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2"])
def test_planted_down_column_equal_to_an_unembedding_row_ranks_that_token_first(family):
    loaded = planted_model({0: {"a1"}}) if family == "llama" else tiny_model(family)
    adapter = loaded.adapter
    lens = WriteLens(adapter)
    for word in ("b3", "a5", "s2"):
        row = adapter.unembedding_weight()[VOCAB.index(word)].clone()
        with torch.no_grad():
            adapter.down_weight(1)[:, 7] = row / lens.gain  # g ⊙ column = the token's unembedding row
        writes = neuron_writes(lens, _langs(loaded), 1, 7, k=5)
        assert writes["promoted"][0]["token"] == word
        assert writes["promoted"][0]["token_id"] == VOCAB.index(word)
        assert writes["promoted"][0]["language"] == {"b": "bb", "a": "aa", "s": None}[word[0]]


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "qwen3"])
def test_scores_rank_like_the_final_norm_applied_to_the_column(family):
    loaded = tiny_model(family)
    adapter = loaded.adapter
    lens = WriteLens(adapter)
    scores = lens.scores(2, [5])[0]
    column = adapter.down_column(2, 5)
    with torch.no_grad():
        through = adapter.unembedding_weight() @ adapter.final_norm()(column[None, None])[0, 0]
    assert torch.equal(torch.argsort(scores, descending=True), torch.argsort(through, descending=True))


def test_token_language_rule():
    assert token_script("▁château") == "Latin" and token_script("中国") == "Han" and token_script("カメラ") == "Kana"
    assert token_script("▁123,") is None and token_script("Москва") == "Cyrillic"
    assert language_scripts("zh") == ("Han",) and language_scripts("sr_Latn") == ("Latin",)
    loaded = planted_model({0: {"a1"}})
    langs = _langs(loaded)
    assert langs(VOCAB.index("a3")) == "aa" and langs(VOCAB.index("b0")) == "bb"
    assert langs(VOCAB.index("s1")) is None and langs(VOCAB.index("<bos>")) is None  # shared, special
    assert langs.share([VOCAB.index(w) for w in ("a1", "a2", "b1", "s1")]) == {"aa": 0.5, "bb": 0.25}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    model, corpus_dir = make_inputs(root, sentences=12)
    loaded = load_model(model, device="cpu")
    text = load_corpus(corpus_dir, ["aa", "bb", "cc"], 12)
    record(loaded, text, root / "run", RecordSettings(batch_size=4, max_length=32, examples=4), progress=False)
    ln.identify(root / "run", "lape", out=root / "run" / "lape.json", top_rate=0.2)
    return root, loaded


def test_api_card_schema_repr_and_html(run):
    root, loaded = run
    card = ln.explain(root / "run", "1:3", model=loaded, examples=3, tokens=5)
    assert set(card) >= {"layer", "neuron", "site", "languages", "writes"}
    assert (card["layer"], card["neuron"], card["site"]) == (1, 3, "act")
    stats = ln.load_stats(root / "run")
    for k, lang in enumerate(["aa", "bb", "cc"]):
        entry = card["languages"][lang]
        assert entry["probability"] == pytest.approx(float(stats.probability()[k, 1, 3]))
        assert set(entry) == {"probability", "mean", "top"} and len(entry["top"]) == 3
        for ex, (value, _, p) in zip(entry["top"], stats.examples.top(lang, 1, 3), strict=False):
            assert {"value", "text", "position", "token"} <= set(ex) and ex["position"] == p
            assert ex["token"] == ex["text"].split()[p - 1] and ex["value"] == pytest.approx(value)
    writes = card["writes"]
    assert len(writes["promoted"]) == 5 and {"token", "token_id", "score"} <= set(writes["promoted"][0])
    assert set(writes["language_share"]) == {"aa", "bb", "cc"}
    assert repr(card).startswith("Card(1:3, site act; fires most on") and len(repr(card)) < 200
    assert "<mark>" in card._repr_html_()
    # no examples file: the targeted pass gives the same examples
    again = ln.explain(root / "run", (1, 3), model=loaded, examples=3, tokens=5, targeted=True)
    assert again["languages"] == card["languages"]


def test_explain_set_counts_neurons_that_write_their_language(run, tmp_path):
    root, loaded = run
    result = ln.explain(root / "run", root / "run" / "lape.json", model=loaded, language="aa,bb", top=2,
                        examples=2, tokens=3, out=tmp_path / "cards.json")  # fmt: skip
    ns = ln.load_neurons(root / "run" / "lape.json")
    stats = ln.load_stats(root / "run")
    stats_langs = stats.languages
    for lang in ("aa", "bb"):
        ranked = result["ranked"][lang]
        assert len(ranked) == ns.count(lang)
        k, p = stats_langs.index(lang), stats.probability()
        specificity = [float(p[k, r[0], r[1]] - max(p[i, r[0], r[1]] for i in range(3) if i != k)) for r in ranked]
        assert specificity == sorted(specificity, reverse=True)
        assert all(r[2] == pytest.approx(float(p[k, r[0], r[1]])) for r in ranked)
        table = result["writes_by_layer"]["languages"][lang]
        assert table["neurons"] == ns.count(lang)
        assert [row["neurons"] for row in table["by_layer"]] == ns.counts_per_layer(lang)
    assert len(result["cards"]) <= 4
    data = json.loads((tmp_path / "cards.json").read_text())
    assert data["format"] == "langneurons-cards/1" and len(data["cards"]) == len(result["cards"])


@pytest.mark.parametrize(
    ("value", "message"),
    [("1234", "LAYER:NEURON"), ("a:b", "LAYER:NEURON"), ("1:2:3", "LAYER:NEURON"), ("7:1", "layer 7 is not a layer"),
     ("1:48", "out of range 0..47"), ("-1:3", "not a layer")],
)  # fmt: skip
def test_bad_neuron_is_a_one_line_error_before_the_model_loads(run, value, message):
    root, _ = run
    result = CliRunner().invoke(app, ["explain", str(root / "run"), "--neuron", value, "--model", "/nonexistent"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output


@pytest.mark.parametrize(("extra", "flag"), [(["--language", "aa"], "--language"), (["--top", "3"], "--top"),
                                             (["--run", "x"], "--run")])  # fmt: skip
def test_set_only_flags_with_a_run_directory_are_refused(run, extra, flag):
    root, _ = run
    for args in (["--neuron", "1:2", *extra], extra):
        result = CliRunner().invoke(app, ["explain", str(root / "run"), *args, "--model", "/nonexistent"])
        assert result.exit_code == 2 and result.output.startswith("error:") and flag in result.output, result.output


def test_explain_cli_prints_a_card_and_writes_it(run, tmp_path):
    root, _ = run
    out = tmp_path / "card.json"
    result = CliRunner().invoke(app, ["explain", str(root / "run"), "--neuron", "2:5", "--examples", "2",
                                      "--device", "cpu", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "neuron 2:5" in result.output and "promoted:" in result.output and "p=" in result.output
    card = json.loads(out.read_text())
    assert card["layer"] == 2 and card["neuron"] == 5 and len(card["languages"]["aa"]["top"]) == 2


@pytest.mark.parametrize("family", ["qwen2_moe", "deepseek_v3"])
def test_moe_expert_neurons_keep_their_top_examples_over_routed_tokens(family):
    from tiny_moe import tiny_moe_loaded

    from langneurons.recording.plan import encode

    loaded = tiny_moe_loaded(family)
    adapter = loaded.adapter
    stats = record(loaded, corpus(), None, settings(examples=3), progress=False)
    truth: dict = {}  # (lang, layer, column) -> [(value, sentence, position)] over the tokens that reach it
    for lang in ("aa", "bb"):
        for s, text in enumerate(corpus().texts(lang)):
            batch = encode(loaded.tokenizer, [text], 64, False)
            seen = []
            handles = adapter.hook_blocks("act", lambda layer, x, rows, seen=seen: seen.append((layer, x.clone(),
                                                                                                rows)))
            with torch.inference_mode():
                adapter.body()(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
            for handle in handles:
                handle.remove()
            for layer, x, rows in seen:
                tokens = torch.arange(x.shape[0]) if rows.tokens is None else rows.tokens
                for r in range(x.shape[0]):
                    p = int(tokens[r])
                    if batch.counted[0, p]:
                        g = 0 if rows.groups is None else int(rows.groups[r])
                        for j in range(x.shape[1]):
                            truth.setdefault((lang, layer, rows.start + g * x.shape[1] + j), []).append(
                                (float(x[r, j]), s, p))
    for (lang, layer, column), rows in truth.items():
        expected = sorted(rows, key=lambda t: (-t[0], t[1], t[2]))[:3]
        got = stats.examples.top(lang, layer, column)
        assert [v for v, _, _ in got] == pytest.approx([v for v, _, _ in expected], rel=1e-5, abs=1e-6)
    untouched = [(layer, c) for layer in range(adapter.num_layers) for c in range(adapter.intermediate_size)
                 if ("aa", layer, c) not in truth]  # fmt: skip
    for layer, c in untouched[:20]:  # a column no counted aa token reached keeps no aa example
        assert stats.examples.top("aa", layer, c) == []


def test_torchrun_ranks_keep_the_same_examples_as_one_process(tmp_path):
    import subprocess
    import sys

    from test_distributed import run_env

    model, corpus_dir = make_inputs(tmp_path, sentences=30)
    args = ["record", "--model", model, "--corpus", corpus_dir, "--batch-size", "4", "--chunk-batches", "1",
            "--max-length", "32", "--device", "cpu", "--examples", "3", "--no-residual"]  # fmt: skip
    one = subprocess.run([sys.executable, "-m", "langneurons", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    many = subprocess.run([*launcher, "-m", "langneurons", *args, "--out", str(tmp_path / "many")],
                          capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert many.returncode == 0, many.stderr
    a, b = load_examples(tmp_path / "one"), load_examples(tmp_path / "many")
    langs = ("aa", "bb", "cc")
    _same(_lists(a, langs), _lists(b, langs), exact=False)
    assert a.value.shape == (3, 3, 48, 3) and int((a.sentence >= 0).sum()) == 3 * 3 * 48 * 3


def test_show_prints_the_writes_table_from_the_cards_beside_the_set(run):
    root, loaded = run
    ln.explain(root / "run", root / "run" / "lape.json", model=loaded, language="aa", top=1, examples=1, tokens=2,
               out=root / "run" / "lape.cards.json")  # fmt: skip
    try:
        result = CliRunner().invoke(app, ["show", str(root / "run" / "lape.json")])
        assert result.exit_code == 0, result.output
        assert "write their" in result.output and "all" in result.output
    finally:
        (root / "run" / "lape.cards.json").unlink()


def test_an_interrupted_targeted_pass_resumes_to_the_same_lists(tmp_path, monkeypatch):
    """Issue 21 part 2: the targeted pass checkpoints after every chunk; Ctrl-C, rerun, the same top lists
    as an uninterrupted pass, and the checkpoint is gone; a checkpoint of another pass is not resumed."""
    import langneurons.recording.examples as examples_module

    loaded = planted_ranked()[0]
    picked = {0: [0, 1], 1: [0]}
    kw = {"site": "act", "sentences": {"aa": 7, "bb": 7}, "batch_size": 1}  # 8 sentences a chunk: one per language
    info = {"languages": ["aa", "bb"]}
    whole = collect_examples(loaded, corpus(), picked, 4, **kw).result(info)
    ckpt = tmp_path / "partial.safetensors"
    real = examples_module.write_safetensors

    def save_then_stop(path, tensors, metadata=None):
        real(path, tensors, metadata)
        raise KeyboardInterrupt  # Ctrl-C right after the first chunk was saved

    monkeypatch.setattr(examples_module, "write_safetensors", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        collect_examples(loaded, corpus(), picked, 4, checkpoint=ckpt, **kw)
    assert ckpt.exists()
    saves = []

    def count_saves(path, tensors, metadata=None):
        saves.append(metadata)
        real(path, tensors, metadata)

    monkeypatch.setattr(examples_module, "write_safetensors", count_saves)
    resumed = collect_examples(loaded, corpus(), picked, 4, checkpoint=ckpt, **kw).result(info)
    monkeypatch.setattr(examples_module, "write_safetensors", real)
    assert not ckpt.exists() and len(saves) == 1  # only bb was run again: aa came from the checkpoint
    for lang in ("aa", "bb"):
        for layer, cols in picked.items():
            for j in cols:
                assert resumed.top(lang, layer, j) == whole.top(lang, layer, j), (lang, layer, j)
    # a checkpoint of another pass (other neurons) is ignored, not merged
    monkeypatch.setattr(examples_module, "write_safetensors", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        collect_examples(loaded, corpus(), {0: [1]}, 4, checkpoint=ckpt, **kw)
    monkeypatch.setattr(examples_module, "write_safetensors", real)
    again = collect_examples(loaded, corpus(), picked, 4, checkpoint=ckpt, **kw).result(info)
    assert again.top("bb", 1, 0) == whole.top("bb", 1, 0) and not ckpt.exists()
