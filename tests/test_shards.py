"""`record --shards S`: per-shard counts add up to the unchanged totals and equal each shard recorded alone."""

from __future__ import annotations

import pytest
import torch
from test_record import AA, BB, GROUPS, settings
from tiny import planted_model

from langneurons.data import Corpus
from langneurons.errors import LangneuronsError
from langneurons.formats.shards import SHARDS_FILE, load_shards, shard_of_sentences
from langneurons.formats.stats import load_stats
from langneurons.recording import record

AA2, BB2 = AA + [t[::-1] for t in AA] + AA[:2], BB + BB[::-1] + BB[:3]  # 12 and 13 sentences


def corpus(aa=AA2, bb=BB2) -> Corpus:
    return Corpus(
        "test", {"aa": [(str(i), t) for i, t in enumerate(aa)], "bb": [(str(i), t) for i, t in enumerate(bb)]}
    )


def test_shard_rule_is_contiguous_blocks():
    assert shard_of_sentences(10, 4).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert shard_of_sentences(10, 4, 3, 6).tolist() == [1, 1, 2]
    sizes = torch.bincount(shard_of_sentences(1003, 20))
    assert sizes.numel() == 20 and int(sizes.max() - sizes.min()) <= 1


@pytest.mark.parametrize("packing", [False, True])
def test_shards_add_up_and_equal_each_shard_recorded_alone(tmp_path, packing):
    loaded = planted_model(GROUPS, num_layers=2)
    kw = {"batch_size": 3, "chunk_batches": 2, "packing": packing}
    plain = record(loaded, corpus(), tmp_path / "plain", settings(**kw), progress=False)
    sharded = record(loaded, corpus(), tmp_path / "sharded", settings(**kw, shards=4), progress=False)
    for name in ("count", "sum", "sum_sq", "n_tokens"):  # the totals are exactly today's
        assert torch.equal(getattr(plain, name), getattr(sharded, name)), name
    shards = load_shards(tmp_path / "sharded", load_stats(tmp_path / "sharded"))
    assert shards.count.dtype == torch.int32 and tuple(shards.count.shape) == (4, 2, 2, plain.intermediate_size)
    assert torch.equal(shards.count.sum(0, dtype=torch.int64), plain.count)
    assert sharded.manifest["shards"]["count"] == 4
    if packing:  # packed context differs from recording a shard alone; the counts still add up
        return
    for s in range(4):  # ground truth: the sentences of shard s, recorded on their own
        part = {lang: [t for t, sh in zip(texts, shard_of_sentences(len(texts), 4).tolist(), strict=True) if sh == s]
                for lang, texts in (("aa", AA2), ("bb", BB2))}  # fmt: skip
        alone = record(loaded, corpus(part["aa"], part["bb"]), tmp_path / f"s{s}", settings(), progress=False)
        assert torch.equal(shards.count[s].to(torch.int64), alone.count)
        assert torch.equal(shards.n_tokens[s], alone.n_tokens)


def test_too_few_sentences_and_stale_shards_are_refused(tmp_path):
    loaded = planted_model(GROUPS, num_layers=1)
    with pytest.raises(LangneuronsError, match="at least 20 sentences per language"):
        record(loaded, corpus(), tmp_path / "a", settings(shards=20), progress=False)
    with pytest.raises(LangneuronsError, match="at least 2"):
        settings(shards=1).validate()
    record(loaded, corpus(), tmp_path / "b", settings(shards=3), progress=False)
    record(loaded, corpus(AA2[:-1]), tmp_path / "c", settings(), progress=False)
    (tmp_path / "c" / SHARDS_FILE).write_bytes((tmp_path / "b" / SHARDS_FILE).read_bytes())
    with pytest.raises(LangneuronsError, match="stale"):
        load_shards(tmp_path / "c", load_stats(tmp_path / "c"))
    record(loaded, corpus(), tmp_path / "b", settings(), progress=False, overwrite=True)
    assert not (tmp_path / "b" / SHARDS_FILE).exists()  # --overwrite without shards leaves no stale file


def test_one_process_equals_torchrun_and_killed_then_resumed(tmp_path):
    """Shards are a function of the sentence, not of who counted it or when: all three files are equal."""
    import signal
    import subprocess
    import sys

    from test_distributed import make_inputs, run_env
    from test_resume import command, start_and_interrupt

    from langneurons.recording.recorder import CHECKPOINT_FILE

    model, corpus_dir = make_inputs(tmp_path)
    with_shards = ["--shards", "6"]
    one = subprocess.run([*command(model, corpus_dir, tmp_path / "one"), *with_shards], capture_output=True,
                         text=True, env=run_env(), timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    many_cmd = [*launcher, *command(model, corpus_dir, tmp_path / "many")[1:], *with_shards]
    many = subprocess.run(many_cmd, capture_output=True, text=True, env=run_env(), timeout=300)
    assert many.returncode == 0, many.stderr
    killed = tmp_path / "killed"
    cmd = [*command(model, corpus_dir, killed), *with_shards]
    proc = start_and_interrupt(cmd, killed / CHECKPOINT_FILE, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL and not (killed / "manifest.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=300)
    assert again.returncode == 0, again.stderr
    a, b, c = (load_shards(tmp_path / n, load_stats(tmp_path / n)) for n in ("one", "many", "killed"))
    for name in ("count", "n_tokens"):
        assert torch.equal(getattr(a, name), getattr(b, name)) and torch.equal(getattr(a, name), getattr(c, name))
    shards = a
    assert bool((shards.n_tokens > 0).all()) and shards.num_shards == 6


@pytest.mark.parametrize("model", ["planted", "qwen2_moe", "deepseek_v3"])
def test_moe_shards_add_up_and_equal_each_shard_recorded_alone(tmp_path, model):
    """Per-(shard, expert) counts of routed experts, shared experts and dense layers of an MoE model."""
    from test_moe import GROUPS as MOE_GROUPS
    from test_moe import ROUTES
    from tiny_moe import planted_moe, tiny_moe_loaded

    loaded = planted_moe(ROUTES, MOE_GROUPS) if model == "planted" else tiny_moe_loaded(model)
    kw = {"batch_size": 3, "chunk_batches": 2}
    plain = record(loaded, corpus(), tmp_path / "plain", settings(**kw), progress=False)
    sharded = record(loaded, corpus(), tmp_path / "sharded", settings(**kw, shards=4), progress=False)
    for name in ("count", "sum", "sum_sq", "n_tokens"):
        assert torch.equal(getattr(plain, name), getattr(sharded, name)), name
    shards = load_shards(tmp_path / "sharded", load_stats(tmp_path / "sharded"))
    assert torch.equal(shards.count.sum(0, dtype=torch.int64), plain.count)
    assert int(plain.count.sum()) > 0
    for s in range(4):
        part = {lang: [t for t, sh in zip(texts, shard_of_sentences(len(texts), 4).tolist(), strict=True) if sh == s]
                for lang, texts in (("aa", AA2), ("bb", BB2))}  # fmt: skip
        alone = record(loaded, corpus(part["aa"], part["bb"]), tmp_path / f"s{s}", settings(), progress=False)
        assert torch.equal(shards.count[s].to(torch.int64), alone.count), s
    if model == "planted":  # the bootstrap runs on expert neurons like on dense ones
        from langneurons.identification.stability import bootstrap

        result = bootstrap(sharded, shards, "lape", {"top_rate": 4 / 64, "filter_rate": 0.5, "bar_ratio": 0.5},
                           resamples=20, seed=0)  # fmt: skip
        assert result.frequency.shape[-1] == plain.intermediate_size
        assert (result.frequency[0, :, 0] == 1).all() and (result.frequency[1, :, 2 * 8 + 3] == 1).all()
