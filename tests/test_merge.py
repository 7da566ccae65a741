"""`merge` adds runs only when their numbers may be added: same settings, different sentences."""

from __future__ import annotations

import copy

import pytest
import torch
from test_record import corpus, settings
from tiny import tiny_model
from typer.testing import CliRunner

from langneurons.cli import app
from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.stats import Stats, load_stats, merge_stats, save_stats
from langneurons.recording import record


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """Two runs of one model on disjoint halves of one corpus (a legitimate merge)."""
    root = tmp_path_factory.mktemp("merge")
    loaded = tiny_model("llama")
    first = Corpus("t", {lang: pairs[:3] for lang, pairs in corpus().items.items()})
    second = Corpus("t", {lang: pairs[3:] for lang, pairs in corpus().items.items()})
    a = record(loaded, first, root / "a", settings(), progress=False)
    b = record(loaded, second, root / "b", settings(), progress=False)
    return root, load_stats(root / "a"), load_stats(root / "b"), (a, b)


def changed(stats: Stats, path: str, **fields) -> Stats:
    manifest = copy.deepcopy(stats.manifest)
    for key, value in fields.items():
        if key in ("count_bos", "max_length", "packing"):
            manifest["settings"][key] = value
        else:
            manifest[key] = value
    return Stats(stats.count, stats.sum, stats.sum_sq, stats.n_tokens, manifest, path)


def test_disjoint_halves_merge(halves):
    _, a, b, _ = halves
    merged = merge_stats([a, b])
    assert torch.equal(merged.n_tokens, a.n_tokens + b.n_tokens)
    assert merged.manifest["sentences"] == {"aa": 5, "bb": 5}
    assert [p["sentence_ranges"] for p in merged.manifest["merged_from"]] == [
        {"aa": [[0, 3]], "bb": [[0, 3]]},
        {"aa": [[3, 5]], "bb": [[3, 5]]},
    ]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("revision", "v2", "different revision"),
        ("dtype", "bfloat16", "different dtype"),
        ("count_bos", True, "different count_bos"),
        ("max_length", 32, "different max_length"),
        ("packing", True, "different packing"),
        ("counted", "response tokens only (full − prefix)", "different counted tokens"),
        ("sum_available", False, "different sum_available"),
        ("converted_from", {"format": "zhang2025"}, "different conversion"),
        ("site", "down_in", "different site"),
    ],
)
def test_merge_refuses_runs_that_differ_in_a_setting(halves, field, value, message):
    _, a, b, _ = halves
    with pytest.raises(LangneuronsError, match=message):
        merge_stats([a, changed(b, "b2", **{field: value})])


def test_merge_refuses_the_same_sentences_twice(halves):
    _, a, b, _ = halves
    with pytest.raises(LangneuronsError, match="3 of the same 'aa' sentences"):
        merge_stats([a, a])
    # a run merged with a run it already contains
    with pytest.raises(LangneuronsError, match="the same sentences must not be added twice"):
        merge_stats([merge_stats([a, b]), b])
    # the same text under another corpus name is still the same text
    renamed = changed(b, "b-renamed", corpus="elsewhere")
    renamed.manifest["merged_from"] = None
    with pytest.raises(LangneuronsError, match="same 'aa' sentences"):
        merge_stats([b, renamed])
    older = changed(b, "b-older")  # runs recorded before per-sentence hashes: the whole-text hash catches it
    for run in (older, renamed):
        run.manifest.pop("sentence_hashes")
    with pytest.raises(LangneuronsError, match="the same text"):
        merge_stats([older, renamed])


def test_merge_refuses_overlapping_prefixes(tmp_path):
    """100 and 200 first sentences of one corpus overlap: a prefix is never added to a longer prefix."""
    loaded = tiny_model("llama")
    short = record(loaded, Corpus("t", {"aa": corpus().items["aa"][:2]}), tmp_path / "s", settings(), progress=False)
    long = record(loaded, Corpus("t", {"aa": corpus().items["aa"][:4]}), tmp_path / "l", settings(), progress=False)
    with pytest.raises(LangneuronsError, match="2 of the same 'aa' sentences"):
        merge_stats([short, long])
    for run in (short, long):  # runs recorded before per-sentence hashes: by ids
        run.manifest.pop("sentence_hashes")
    with pytest.raises(LangneuronsError, match="sentence 0"):
        merge_stats([short, long])


def test_merge_knows_sentences_not_names(tmp_path):
    """The same sentences under two corpus names (a copied folder; ntrex and a local copy), as a 4- and a
    2-sentence prefix, are refused by content; other sentences under the same name still merge."""
    loaded = tiny_model("llama")
    pairs = corpus().items["aa"]
    four = record(loaded, Corpus("/data/ntrex-copy", {"aa": pairs[:4]}), tmp_path / "a", settings(), progress=False)
    two = record(loaded, Corpus("ntrex:identify", {"aa": pairs[:2]}), tmp_path / "b", settings(), progress=False)
    assert len(four.manifest["sentence_hashes"]["aa"]) == 4
    with pytest.raises(LangneuronsError, match="2 of the same 'aa' sentences"):
        merge_stats([four, two])
    renumbered = [(str(100 + i), text) for i, (_, text) in enumerate(pairs[:2])]  # other ids, same texts
    again = record(loaded, Corpus("/data/ntrex-copy", {"aa": renumbered}), tmp_path / "c", settings(), progress=False)
    with pytest.raises(LangneuronsError, match="same 'aa' sentences"):
        merge_stats([four, again])
    rest = record(loaded, Corpus("/data/ntrex-copy", {"aa": pairs[4:]}), tmp_path / "d", settings(), progress=False)
    merged = merge_stats([four, rest])
    assert int(merged.n_tokens[0]) == int(four.n_tokens[0]) + int(rest.n_tokens[0])
    hashes = [h for part in merged.manifest["merged_from"] for h in part["sentence_hashes"]["aa"]]
    assert len(hashes) == len(set(hashes)) == len(pairs)
    with pytest.raises(LangneuronsError, match="same 'aa' sentences"):  # and a merged run knows its parts
        merge_stats([merged, two])


def test_a_merged_run_keeps_no_shards_entry(tmp_path):
    loaded = tiny_model("llama")
    pairs = corpus().items["aa"]
    a = record(loaded, Corpus("t", {"aa": pairs[:3]}), tmp_path / "a", settings(shards=2), progress=False)
    b = record(loaded, Corpus("t", {"aa": pairs[3:]}), tmp_path / "b", settings(shards=2), progress=False)
    assert "shards" in a.manifest
    assert "shards" not in merge_stats([a, b]).manifest  # no shards file is written for a merge


def test_cli_merge_refusal_is_one_line(halves, tmp_path):
    root, a, _, _ = halves
    other = changed(a, "x", revision="other")
    save_stats(tmp_path / "other", other)
    result = CliRunner().invoke(app, ["merge", str(root / "b"), str(tmp_path / "other"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "different revision" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()
