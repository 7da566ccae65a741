"""GGUF loading: user errors, the cache, the SentencePiece-BPE tokenizer, and the embedded Gemma (slow)."""

from __future__ import annotations

import json
import math
import warnings
from importlib.resources import files
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from langneurons.errors import LangneuronsError
from langneurons.models.gguf import cache_dir, embedded_gguf_path, load_gguf

# A toy SentencePiece vocabulary: control tokens, the 256 byte tokens, then pieces with merge scores.
# The scores make "ab" merge first, then "▁ab" before "abc", so "ab abc" must become ab|▁ab|c.
PIECES = {"▁": -10.0, "a": -11.0, "b": -12.0, "c": -13.0, "ab": -1.0, "▁ab": -2.0, "abc": -3.0}
TOKENS = ["<unk>", "<bos>", "<eos>"] + [f"<0x{i:02X}>" for i in range(256)] + list(PIECES) + ["  "]
TYPES = [2, 3, 3] + [6] * 256 + [1] * len(PIECES) + [4]


def write_tiny_gguf(path: Path, arch: str = "llama", blocks: int = 1, ffn: int = 16, seeds: dict | None = None) -> Path:
    """A float32 LLaMA-shaped GGUF with the toy vocabulary (one layer: a few KB, loads in seconds);
    ``seeds`` gives some tensors their own random seed (to make fine-tunes that differ there)."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_block_count(blocks)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(4)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    writer.add_token_scores([0.0] * 259 + list(PIECES.values()) + [0.0])
    writer.add_token_types(TYPES)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_space_prefix(False)
    rng = np.random.default_rng(0)
    shapes = {"token_embd": (len(TOKENS), 8), "output_norm": (8,)}
    for b in range(blocks):
        shapes |= {f"blk.{b}.attn_norm": (8,), f"blk.{b}.ffn_norm": (8,), f"blk.{b}.attn_q": (8, 8),
                   f"blk.{b}.attn_k": (8, 8), f"blk.{b}.attn_v": (8, 8), f"blk.{b}.attn_output": (8, 8),
                   f"blk.{b}.ffn_gate": (ffn, 8), f"blk.{b}.ffn_up": (ffn, 8), f"blk.{b}.ffn_down": (8, ffn)}
    for name, shape in shapes.items():
        values = rng.standard_normal(shape)  # drawn always, so the other tensors stay the same
        if seeds and name in seeds:
            values = np.random.default_rng(seeds[name]).standard_normal(shape)
        writer.add_tensor(f"{name}.weight", values.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LANGNEURONS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_tells_apart_fine_tunes_that_differ_only_in_the_middle(tmp_path: Path, tmp_cache: Path) -> None:
    """Review item 6: two 9 MiB GGUFs equal in their first and last MiB must not share a cache entry."""
    base = write_tiny_gguf(tmp_path / "base.gguf", blocks=3, ffn=32768)
    tuned = write_tiny_gguf(tmp_path / "tuned.gguf", blocks=3, ffn=32768, seeds={"blk.1.ffn_up": 7})
    a, b = base.read_bytes(), tuned.read_bytes()
    assert len(a) == len(b) > 8 * 2**20 and a[: 2**20] == b[: 2**20] and a[-(2**20) :] == b[-(2**20) :] and a != b
    model_a, _ = load_gguf(base)
    model_b, _ = load_gguf(tuned)
    up = [m.model.layers[1].mlp.up_proj.weight for m in (model_a, model_b)]
    assert not torch.equal(up[0], up[1])
    assert len(list((tmp_cache / "converted").iterdir())) == 2
    again, _ = load_gguf(tuned)  # warm: the memoised hash finds the right entry
    assert torch.equal(again.model.layers[1].mlp.up_proj.weight, up[1])
    assert len(json.loads((tmp_cache / "gguf-hashes.json").read_text())) == 2


def test_user_errors_are_one_line(tmp_path: Path, tmp_cache: Path) -> None:
    (tmp_path / "notes.gguf").write_text("not a model\n")
    unsupported = write_tiny_gguf(tmp_path / "x.gguf", "nosucharch")
    for path in [tmp_path / "missing.gguf", tmp_path / "notes.gguf", unsupported]:
        with pytest.raises(LangneuronsError) as caught:
            load_gguf(path)
        assert "\n" not in str(caught.value) and path.name in str(caught.value)
    assert "nosucharch" in str(caught.value)
    assert not list((tmp_cache / "converted").glob("*"))  # a failed conversion leaves nothing behind


def test_tiny_gguf_converts_caches_and_recovers(tmp_path: Path, tmp_cache: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    model, tok = load_gguf(path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert tok.convert_ids_to_tokens(tok("ab abc").input_ids) == ["<bos>", "ab", "▁ab", "c"]
    assert tok.tokenize("a  b") == ["a", "▁▁", "b"]  # user-defined "  " stays whole
    assert tok.tokenize("é") == ["<0xC3>", "<0xA9>"] and tok.decode(tok("é aé").input_ids[1:]) == "é aé"
    assert tok.padding_side == "right" and tok.pad_token is None and tok.unk_token == "<unk>"
    logits = model(**tok("ab abc", return_tensors="pt")).logits

    [converted] = (tmp_cache / "converted").iterdir()
    model2, tok2 = load_gguf(path, dtype=torch.bfloat16)  # warm, from the cache
    assert model2.dtype == torch.bfloat16 and tok2("ab abc").input_ids == tok("ab abc").input_ids
    warm_logits = model2.float()(**tok("ab abc", return_tensors="pt")).logits
    torch.testing.assert_close(warm_logits, logits, atol=0.1, rtol=0.1)

    (converted / "model.safetensors").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="rebuilding"):
        model3, _ = load_gguf(path)
    torch.testing.assert_close(model3(**tok("ab abc", return_tensors="pt")).logits, logits)


@pytest.fixture(scope="session")
def gemma() -> tuple:
    """The embedded Gemma-3-270M, loaded once per session from the default cache (converted on first use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_gguf(embedded_gguf_path())


@pytest.mark.slow
def test_gemma_tokenizer(gemma: tuple) -> None:
    model, tok = gemma
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.config.num_hidden_layers == 18
    assert (cache_dir() / "gguf").is_dir()
    words = ["Hello", "▁world", ",", "▁this", "▁is", "▁a", "▁test", "."]
    assert tok.tokenize("Hello world, this is a test.") == words
    ids = tok("The house is very big").input_ids
    assert ids[0] == tok.bos_token_id == 2 and len(ids) == 6  # every common word is one token
    texts = ["Hello world", "你好，世界！", "مرحبا بالعالم", "नमस्ते दुनिया"]
    texts += ["Ünïcödé 🤖🎉 𝔘𝔫𝔦", " two  spaces\n\t"]
    for text in texts:
        assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text
    assert "<0xF0>" in tok.tokenize("𝔘")  # a rare character falls back to bytes, never <unk>


@pytest.mark.slow
def test_gemma_english_perplexity(gemma: tuple) -> None:
    model, tok = gemma
    lines = files("langneurons").joinpath("data/ntrex/en.txt").read_text(encoding="utf-8").splitlines()[:50]
    nll, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(lines), 10):  # one sentence per sequence, right-padded in batches
            batch = tok(lines[start : start + 10], return_tensors="pt", padding=True)
            keep = batch.attention_mask[:, 1:].bool()  # predicted positions: all but <bos> and padding
            logits = model(**batch).logits[:, :-1][keep].float()
            targets = batch.input_ids[:, 1:][keep]
            nll += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            count += int(keep.sum())
    perplexity = math.exp(nll / count)
    print(f"English NTREX perplexity over {count} tokens: {perplexity:.1f}")
    assert perplexity < 150
