"""Statistics on responses (METHODS.md §18): prompt/response corpora, the boundary rule, chat templates."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import FAMILIES, tiny_model, word_tokenizer
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from langneurons.data import Corpus, load_corpus
from langneurons.errors import LangneuronsError
from langneurons.recording import RecordSettings, record
from langneurons.recording.spans import apply_chat_template, encode_spans, token_spans

# (prompt, response) per language of the tiny vocabulary; the response carries its own leading space
TURNS = {
    "aa": [("a1 a2 s1", " a3 a4"), ("s2 a5", " a6 a7 s3 s4 a0"), ("a4", " a1 s0")],
    "bb": [("b1 s1 b2 b3", " b4"), ("b0", " b2 b3 b4 b5 s5 s6"), ("s5 s6 b6 b7", " b7 s7")],
}


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def qa_file(tmp_path, **extra) -> str:
    records = [{"lang": lang, "prompt": p, "response": r, **extra} for lang, pairs in TURNS.items() for p, r in pairs]
    return write_jsonl(tmp_path / "qa.jsonl", records)


def plain(texts: dict[str, list[str]]) -> Corpus:
    return Corpus("plain", {lang: [(str(i), t) for i, t in enumerate(ts)] for lang, ts in texts.items()})


def settings(**kw) -> RecordSettings:
    return RecordSettings(**{"batch_size": 1, "chunk_batches": 2, "max_length": 64, "residual": False, **kw})


@pytest.mark.parametrize("family", FAMILIES)
def test_response_counts_equal_full_minus_prefix(tmp_path, family):
    """Zhang et al.'s `full − prefix`, built by hand from two plain-text runs, equals `--count response`."""
    loaded = tiny_model(family)
    qa = load_corpus(qa_file(tmp_path))
    response = record(loaded, qa, None, settings(count="response"), progress=False)
    full = record(loaded, plain({k: [p + r for p, r in v] for k, v in TURNS.items()}), None, settings(), progress=False)
    prefix = record(loaded, plain({k: [p for p, _ in v] for k, v in TURNS.items()}), None, settings(), progress=False)
    words = [sum(len(r.split()) for _, r in TURNS[lang]) for lang in TURNS]
    assert response.n_tokens.tolist() == words == (full.n_tokens - prefix.n_tokens).tolist()
    assert torch.equal(response.count, full.count - prefix.count)
    assert torch.allclose(response.sum, full.sum - prefix.sum, atol=1e-4)
    assert torch.allclose(response.sum_sq, full.sum_sq - prefix.sum_sq, atol=1e-4)
    assert response.manifest["settings"]["count"] == "response"
    assert "beyond the prompt's own tokens" in response.manifest["counted"]
    # prompt + response = all, and `all` over the records is the plain full-text run
    prompt = record(loaded, qa, None, settings(count="prompt"), progress=False)
    assert torch.equal(prompt.count, prefix.count)
    assert torch.equal(record(loaded, qa, None, settings(), progress=False).count, full.count)


def merging_tokenizer() -> PreTrainedTokenizerFast:
    """Characters plus the merge a+b → "ab": a prompt ending in "a" before a response starting with "b"
    tokenizes differently alone and joined."""
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, "a": 4, "b": 5, "c": 6, "ab": 7, " ": 8}
    tok = Tokenizer(models.BPE(vocab, [("a", "b")], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")  # fmt: skip


def test_boundary_rule_merged_token_counts_as_response():
    tok = merging_tokenizer()
    text = "cca" + "bc"  # prompt "cca", response "bc": "a"+"b" merge into "ab"
    assert tok(text)["input_ids"] == [6, 6, 7, 6]
    prompt, response = token_spans(tok, text, (0, 3, 3, 5), False)
    assert response == (2, 4)  # "ab" (the merged boundary token) and "c"
    assert prompt == (0, 2)
    # no merge: the response starts right after the prompt's own tokens (= full − prefix)
    prompt, response = token_spans(tok, "cc " + "bc", (0, 3, 3, 5), False)
    assert (prompt, response) == ((0, 3), (3, 5))
    batch = encode_spans(tok, ["cca" + "bc"], [(0, 3, 3, 5)], "response", False, 16, False)
    assert batch.input_ids[0][batch.counted[0]].tolist() == [7, 6]


TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}s5 {{ m['content'] }} <eos> "
    "{% elif m['role'] == 'user' %}s6 {{ m['content'] }} <eos> "
    "{% else %}s7 {{ m['content'] }} <eos> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}s7 {% endif %}"
)


def templated_tokenizer():
    tok = word_tokenizer()
    tok.chat_template = TEMPLATE
    return tok


def test_chat_template_counts_only_the_assistant_tokens(tmp_path):
    tok = templated_tokenizer()
    qa = load_corpus(qa_file(tmp_path, system="s0 s1"))
    chat = apply_chat_template(qa, tok)
    assert chat.templated and chat.texts("aa")[0] == "<bos>s5 s0 s1 <eos> s6 a1 a2 s1 <eos> s7  a3 a4 <eos> "
    for count, part in (("response", 1), ("prompt", 0)):
        for lang, pairs in TURNS.items():
            batch = encode_spans(tok, chat.texts(lang), chat.spans[lang], count, True, 64, False)
            for row, pair in enumerate(pairs):
                got = tok.convert_ids_to_tokens(batch.input_ids[row][batch.counted[row]].tolist())
                assert got == pair[part].split()  # no s5/s6/s7 marker, no <eos>, no <bos>


def test_chat_template_recording_equals_the_assistant_span(tmp_path):
    """Recording through the template counts what the template puts at the response's positions."""
    loaded = tiny_model("llama")
    loaded.tokenizer.chat_template = TEMPLATE
    chat = apply_chat_template(load_corpus(qa_file(tmp_path)), loaded.tokenizer)
    stats = record(loaded, chat, None, settings(count="response"), progress=False)
    assert stats.n_tokens.tolist() == [sum(len(r.split()) for _, r in TURNS[lang]) for lang in TURNS]
    assert "template's own tokens count as neither" in stats.manifest["counted"]
    everything = record(loaded, chat, None, settings(), progress=False)
    markers = [sum(4 + len((p + r).split()) for p, r in TURNS[lang]) for lang in TURNS]  # s6 <eos> s7 <eos>
    assert everything.n_tokens.tolist() == markers


def test_template_less_tokenizer_is_refused(tmp_path):
    with pytest.raises(LangneuronsError, match="has no chat template"):
        apply_chat_template(load_corpus(qa_file(tmp_path)), word_tokenizer())


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"lang": "aa", "prompt": "a1", "response": "a2"}, {"lang": "aa", "response": "a3"}],
         r"qa.jsonl:2: .*'prompt'"),
        ([{"lang": "aa", "prompt": "a1", "response": "a2"}, {"lang": "aa", "prompt": "a1", "response": " "}],
         r"qa.jsonl:2: empty 'response'"),
        ([{"lang": "aa", "prompt": "", "response": "a2"}], r"qa.jsonl:1: empty 'prompt'"),
        ([{"lang": "aa", "prompt": "a1", "response": "a2"}, {"lang": "aa", "prompt": "a1"}],
         r"qa.jsonl:2: no 'response', but earlier records have one"),
        ([{"lang": "aa", "text": "a1"}, {"lang": "aa", "prompt": "a1", "response": "a2"}],
         r"qa.jsonl:2: a 'prompt' record among 'text' records"),
        ([{"lang": "aa", "prompt": "a1", "response": 3}], r"qa.jsonl:1: 'response' must be a string"),
    ],
)
def test_bad_records_name_their_line(tmp_path, records, message):
    with pytest.raises(LangneuronsError, match=message):
        load_corpus(write_jsonl(tmp_path / "qa.jsonl", records))


def test_count_response_needs_responses(tmp_path):
    loaded = tiny_model("llama")
    with pytest.raises(LangneuronsError, match="plain text"):
        record(loaded, plain({"aa": ["a1"]}), None, settings(count="response"), progress=False)
    prompts = load_corpus(write_jsonl(tmp_path / "p.jsonl", [{"lang": "aa", "prompt": "a1"}]))
    with pytest.raises(LangneuronsError, match="no responses"):
        record(loaded, prompts, None, settings(count="response"), progress=False)
    with pytest.raises(LangneuronsError, match="--packing"):
        record(loaded, load_corpus(qa_file(tmp_path)), None, settings(count="response", packing=True), progress=False)


def test_selection_keeps_turns_aligned(tmp_path):
    qa = load_corpus(qa_file(tmp_path), ["bb"], 2)
    assert qa.languages == ["bb"] and [t.prompt for t in qa.turns["bb"]] == ["b1 s1 b2 b3", "b0"]
    assert qa.texts("bb") == ["b1 s1 b2 b3 b4", "b0 b2 b3 b4 b5 s5 s6"] and len(qa.spans["bb"]) == 2


# ---- the command line and the model's own answers -------------------------------------------------
def cli(*args: str):
    from typer.testing import CliRunner

    from langneurons.cli.app import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("model")
    loaded = tiny_model("llama")
    loaded.tokenizer.chat_template = TEMPLATE
    loaded.model.save_pretrained(root)
    loaded.tokenizer.save_pretrained(root)
    return str(root)


def test_cli_refuses_before_the_model_loads(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "aa.txt").write_text("a1 a2\n")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"lang": "aa", "prompt": "a1"}])
    cases = [
        (["--corpus", str(corpus), "--count", "response"], "needs a prompt/response corpus"),
        (["--corpus", prompts, "--count", "response"], "has prompts but no responses"),
        (["--corpus", str(corpus), "--generate"], "--generate needs prompts"),
        (["--corpus", str(corpus), "--chat-template"], "--chat-template needs prompts"),
        (["--corpus", prompts, "--count", "everything"], "--count must be"),
        (["--corpus", qa_file(tmp_path), "--packing", "--count", "response"], "--packing"),
    ]
    for args, message in cases:
        result = cli("record", "--model", "embedded", *args, "-o", str(tmp_path / "run"))
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "loading model" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_cli_template_less_model_is_refused(tmp_path):
    loaded = tiny_model("llama")
    loaded.model.save_pretrained(tmp_path / "m")
    loaded.tokenizer.save_pretrained(tmp_path / "m")
    result = cli("record", "--model", str(tmp_path / "m"), "--corpus", qa_file(tmp_path), "--chat-template",
                 "--count", "response", "-o", str(tmp_path / "run"))  # fmt: skip
    assert result.exit_code != 0 and "has no chat template" in result.output
    assert len(result.output.strip().splitlines()[-1]) < 300 and "Traceback" not in result.output


def test_generate_saves_deterministic_answers_and_counts_them(tmp_path, saved_model):
    records = [{"lang": lang, "prompt": p} for lang, v in TURNS.items() for p, _ in v]
    prompts = write_jsonl(tmp_path / "p.jsonl", records)
    runs = []
    for name in ("one", "two"):
        result = cli("record", "--model", saved_model, "--corpus", prompts, "--generate", "--max-new-tokens", "5",
                     "--count", "response", "--batch-size", "2", "--no-residual", "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        runs.append(tmp_path / name)
    answers = [(run / "answers.jsonl").read_text() for run in runs]
    assert answers[0] == answers[1]  # greedy: the same answers every time
    records = [json.loads(line) for line in answers[0].splitlines()]
    assert [(r["lang"], r["prompt"]) for r in records] == [(k, p) for k, v in TURNS.items() for p, _ in v]
    meta = json.loads((runs[0] / "answers.json").read_text())
    assert meta["max_new_tokens"] == 5 and meta["decoding"] == "greedy"
    # the counts are the response counts of the saved answers read back as a corpus
    from langneurons.formats.stats import load_stats
    from langneurons.models.loading import load_model

    stats = load_stats(runs[0])
    again = record(load_model(saved_model, device="cpu", dtype="float32"), load_corpus(str(runs[0] / "answers.jsonl")),
                   None, settings(count="response", batch_size=2), progress=False)  # fmt: skip
    assert torch.equal(stats.n_tokens, again.n_tokens) and torch.equal(stats.count, again.count)
    assert int(stats.n_tokens.sum()) > 0


def test_generated_answers_stop_and_match_batch_of_one(saved_model):
    from langneurons.models.generation import greedy_answers
    from langneurons.models.loading import load_model

    loaded = load_model(saved_model, device="cpu", dtype="float32")
    prompts = [p for v in TURNS.values() for p, _ in v]
    batched = greedy_answers(loaded, prompts, max_new_tokens=6, batch_size=3)
    assert batched == greedy_answers(loaded, prompts, max_new_tokens=6, batch_size=3)
    assert all(len(loaded.tokenizer(a, add_special_tokens=False)["input_ids"]) <= 6 for a in batched)
    assert all("<eos>" not in a and "<pad>" not in a for a in batched)


def test_generate_with_chat_template_answers_inside_the_template(tmp_path, saved_model):
    from langneurons.models.loading import load_model
    from langneurons.recording.answers import answer

    loaded = load_model(saved_model, device="cpu", dtype="float32")
    prompts = load_corpus(write_jsonl(tmp_path / "p.jsonl", [{"lang": "aa", "prompt": "a1 a2"}]))
    answered = answer(loaded, prompts, tmp_path / "run", max_new_tokens=4, chat_template=True, progress=False)
    chat = apply_chat_template(answered, loaded.tokenizer)
    response = answered.turns["aa"][0].response
    assert chat.texts("aa")[0].startswith("<bos>s6 a1 a2 <eos> s7 " + response.strip())


def test_builtin_tasks_are_prompts_in_every_language():
    from langneurons.data import NTREX_LANGUAGES

    tasks = load_corpus("tasks")
    assert tasks.languages == list(NTREX_LANGUAGES) and not tasks.has_responses and tasks.turns is not None
    arithmetic = [lang for lang in tasks.languages if "arithmetic-0" in tasks.ids(lang)]
    assert len(arithmetic) >= 5
    for lang in tasks.languages:
        ids = tasks.ids(lang)
        assert [i for i in ids if i.startswith("translate-")] == [f"translate-{k}" for k in range(4)]
        assert [i for i in ids if i.startswith("continue-")] == [f"continue-{k}" for k in range(4)]
    de = dict(zip(tasks.ids("de"), tasks.texts("de"), strict=True))
    assert de["translate-2"].startswith("Translate into German.\nEnglish: ") and de["translate-2"].endswith("German:")
    assert "Wie viele Eier" in de["arithmetic-2"]
    only = load_corpus("tasks:arithmetic", ["fr", "zh"])
    assert only.ids("zh") == [f"arithmetic-{k}" for k in range(4)] and only.texts("zh")[0].startswith("问题：安娜")
    with pytest.raises(LangneuronsError, match="unknown task kind"):
        load_corpus("tasks:poetry")


def test_ppl_of_the_response_given_the_prompt_is_full_minus_prefix(tmp_path):
    from langneurons.evaluation.nll import sentence_nll
    from langneurons.recording.spans import span_arguments

    loaded = tiny_model("qwen2")
    qa = load_corpus(qa_file(tmp_path))
    for lang, pairs in TURNS.items():
        nll, tokens = sentence_nll(loaded, qa.texts(lang), 2, 64, None, **span_arguments(qa, lang, "response"))
        full, full_tokens = sentence_nll(loaded, [p + r for p, r in pairs], 2, 64)
        prefix, prefix_tokens = sentence_nll(loaded, [p for p, _ in pairs], 2, 64)
        assert tokens.tolist() == [len(r.split()) for _, r in pairs] == (full_tokens - prefix_tokens).tolist()
        assert torch.allclose(nll, full - prefix, atol=1e-4)
        assert span_arguments(plain({lang: ["a1"]}), lang, "response") == {}


def test_ppl_command_counts_the_response(tmp_path, saved_model):
    import langneurons as ln
    from langneurons.models.loading import load_model

    qa = qa_file(tmp_path)
    stats = record(load_model(saved_model, device="cpu", dtype="float32"), load_corpus(qa), tmp_path / "run",
                   settings(count="response"), progress=False)  # fmt: skip
    ln.identify(stats, "lape", out=tmp_path / "set.json", top_rate=0.1)
    out = tmp_path / "ppl.json"
    args = ["ppl", "--neurons", str(tmp_path / "set.json"), "--model", saved_model, "--corpus", qa, "-o", str(out)]
    (tmp_path / "txt").mkdir()
    for lang in TURNS:
        (tmp_path / "txt" / f"{lang}.txt").write_text("a1 a2\n")
    result = cli(*args, "--corpus", str(tmp_path / "txt"), "--count", "response")  # plain text
    assert result.exit_code != 0 and "prompt/response corpus" in result.output and "loading model" not in result.output
    result = cli(*args, "--count", "response")
    assert result.exit_code == 0, result.output
    ppl = json.loads(out.read_text())
    assert ppl["tokens"] == {lang: sum(len(r.split()) for _, r in TURNS[lang]) for lang in TURNS}
    assert ppl["provenance"]["settings"]["count"] == "response"


def test_similarity_pools_over_the_response(tmp_path):
    from langneurons.recording.pooled import record_pooled

    loaded = tiny_model("gemma3_text")
    qa = load_corpus(qa_file(tmp_path))
    pooled = record_pooled(loaded, qa, None, batch_size=2, max_length=64, count="response", progress=False)
    assert pooled.n_tokens.tolist() == [len(r.split()) for lang in TURNS for _, r in TURNS[lang]]
    assert pooled.manifest["settings"]["count"] == "response"
    stats = record(loaded, qa, None, settings(count="response"), progress=False)
    for k, lang in enumerate(TURNS):
        rows = [i for i, row_lang in enumerate(pooled.row_languages) if row_lang == lang]
        total = (pooled.pooled[rows].double() * pooled.n_tokens[rows].view(-1, 1, 1)).sum(0)
        assert torch.allclose(total, stats.sum[k], rtol=1e-4, atol=1e-3)


def test_api_answer_then_record_the_response(tmp_path, saved_model):
    import langneurons as ln

    model = ln.load_model(saved_model, device="cpu", dtype="float32")
    prompts = ln.load_corpus(write_jsonl(tmp_path / "p.jsonl", [{"lang": "aa", "prompt": "a1 a2"},
                                                                 {"lang": "bb", "prompt": "b1"}]))  # fmt: skip
    answered = ln.answer(model, prompts, tmp_path / "own", max_new_tokens=4, progress=False)
    assert answered.has_responses and (tmp_path / "own" / "answers.jsonl").exists()
    assert ln.answer(model, prompts, tmp_path / "own", max_new_tokens=4, progress=False).turns == answered.turns
    stats = ln.record(model, answered, count="response", chat_template=True, residual=False, progress=False)
    expected = [len(model.tokenizer(t.response.strip(), add_special_tokens=False)["input_ids"])
                for lang in answered.languages for t in answered.turns[lang]]  # fmt: skip
    assert stats.n_tokens.tolist() == expected


def test_torchrun_ranks_share_the_answers(tmp_path, saved_model):
    """Two ranks answer their shares of the batches: the same answers and counts as one process."""
    import subprocess
    import sys

    from test_distributed import run_env

    from langneurons.formats.stats import load_stats

    records = [{"lang": lang, "prompt": p} for lang, v in TURNS.items() for p, _ in v] * 2
    prompts = write_jsonl(tmp_path / "p.jsonl", records)
    args = ["record", "--model", saved_model, "--corpus", prompts, "--generate", "--max-new-tokens", "4",
            "--count", "response", "--batch-size", "2", "--no-residual", "--device", "cpu"]  # fmt: skip
    one = subprocess.run([sys.executable, "-m", "langneurons", *args, "-o", str(tmp_path / "one")],
                         capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    many = subprocess.run([*launcher, "-m", "langneurons", *args, "-o", str(tmp_path / "many")],
                          capture_output=True, text=True, env=run_env(), timeout=300)  # fmt: skip
    assert many.returncode == 0, many.stderr
    assert (tmp_path / "one" / "answers.jsonl").read_text() == (tmp_path / "many" / "answers.jsonl").read_text()
    a, b = load_stats(tmp_path / "one"), load_stats(tmp_path / "many")
    assert torch.equal(a.count, b.count) and torch.equal(a.n_tokens, b.n_tokens)


def test_lens_text_reads_the_response_tokens_only(tmp_path):
    """Issue 24 part 4: `lens --task text --count response` reads the positions `record --count response`
    counts (the same boundary rule): as many positions as response (or prompt) words, all = both."""
    from langneurons.analysis.lens_text import text_task

    loaded = tiny_model("llama")
    qa = load_corpus(qa_file(tmp_path))
    words = {lang: sum(len(r.split()) for _, r in TURNS[lang]) for lang in TURNS}
    prompts = {lang: sum(len(p.split()) for p, _ in TURNS[lang]) for lang in TURNS}
    for count, want in (("response", words), ("prompt", prompts)):
        result = text_task(loaded, qa, batch_size=2, max_length=32, progress=False, count=count)
        assert result["count"] == count
        assert {lang: per["positions"] for lang, per in result["share"].items()} == want, count
    every = text_task(loaded, qa, batch_size=2, max_length=32, progress=False)
    assert {lang: per["positions"] for lang, per in every["share"].items()} == {
        lang: words[lang] + prompts[lang] for lang in TURNS}  # fmt: skip


def test_attribute_scores_the_response_tokens_only(tmp_path):
    """Issue 24 part 4: `attribute --count response` takes the NLL of the response tokens given the prompt (the
    same positions `record --count response` counts); all = prompt + response."""
    from langneurons.recording.attribute import attribute
    from langneurons.recording.attribution import AttributionSettings

    loaded = tiny_model("llama")
    qa = load_corpus(qa_file(tmp_path))
    words = {lang: sum(len(r.split()) for _, r in TURNS[lang]) for lang in TURNS}
    prompts = {lang: sum(len(p.split()) for p, _ in TURNS[lang]) for lang in TURNS}
    got = {}
    for count in ("response", "prompt", "all"):
        s = AttributionSettings(units=("neurons",), batch_size=2, max_length=32, count=count)
        got[count] = attribute(loaded, qa, None, s, progress=False)
    assert got["response"].meta["tokens"] == words
    assert got["prompt"].meta["tokens"] == prompts
    assert got["all"].meta["tokens"] == {lang: words[lang] + prompts[lang] for lang in TURNS}
    assert got["response"].meta["nll"] != got["all"].meta["nll"]
    with pytest.raises(Exception, match="--count must be all, response or prompt"):
        AttributionSettings(count="answers").check()
