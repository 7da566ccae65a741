"""Load a causal LM from a hub id (with revision), a local directory, a GGUF file or ``embedded``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from langneurons.errors import LangneuronsError
from langneurons.models import Adapter, get_adapter
from langneurons.modelspec import EMBEDDED, EMBEDDED_NAME, check_hub_model, check_model_spec, dtype_name, hub_offline

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A model ready for recording and interventions, and the facts a manifest needs about it."""

    model: nn.Module
    tokenizer: object
    adapter: Adapter
    name: str
    revision: str | None
    device: torch.device
    dtype: torch.dtype

    def __repr__(self) -> str:
        a = self.adapter
        dtype = str(self.dtype).removeprefix("torch.")
        return (
            f"LoadedModel({self.name!r}, {a.family}, {a.num_layers} layers × {a.intermediate_size} neurons, "
            f"{dtype} on {self.device})"
        )

    def describe(self) -> dict[str, object]:
        """The model facts every result file records."""
        return {
            "model": self.name,
            "revision": self.revision,
            "family": self.adapter.family,
            "num_layers": self.adapter.num_layers,
            "intermediate_size": self.adapter.intermediate_size,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device.type,
            **(self.adapter.describe() if self.adapter.is_moe else {}),
        }

    @property
    def max_length(self) -> int:
        cfg = self.adapter.config
        for attr in ("max_position_embeddings", "n_positions", "seq_length"):
            if getattr(cfg, attr, None):
                return int(getattr(cfg, attr))
        return 2048


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise LangneuronsError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LangneuronsError(f"device {device!r} asked for, but CUDA is not available here")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    dtype = dtype_name(dtype)  # fp16, bf16, fp32 and half are aliases
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def load_model(
    spec: str,
    *,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> LoadedModel:
    """Load ``spec`` (``embedded``, ``*.gguf``, a local directory, a hub id, or a LoRA adapter folder) in eval
    mode. A folder holding ``adapter_config.json`` (peft) loads its base model (the config's
    ``base_model_name_or_path``: any spec above) and merges the adapter into it."""
    if (Path(spec).expanduser() / "adapter_config.json").is_file():
        return _load_lora(Path(spec).expanduser(), revision=revision, device=device, dtype=dtype,
                          trust_remote_code=trust_remote_code, device_map=device_map)  # fmt: skip
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if spec == EMBEDDED or spec.endswith(".gguf"):
        from langneurons.models.gguf import embedded_gguf_path, load_gguf

        path = embedded_gguf_path() if spec == EMBEDDED else Path(spec)
        if not path.is_file():
            raise LangneuronsError(f"GGUF file {spec} does not exist")
        model, tokenizer = load_gguf(path, dtype=torch_dtype)
        name = EMBEDDED_NAME if spec == EMBEDDED else str(path)
    else:
        model, tokenizer = _load_transformers(spec, revision, torch_dtype, trust_remote_code, device_map)
        name = spec
    if device_map is None:
        model.to(dev)
    model.eval().requires_grad_(False)
    adapter = get_adapter(model)
    _prepare_tokenizer(tokenizer)
    return LoadedModel(model, tokenizer, adapter, name, revision, dev, torch_dtype)


def _load_lora(folder: Path, **kwargs) -> LoadedModel:
    """The base model of a peft LoRA adapter folder with the adapter merged into its weights."""
    import json

    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError):
        raise LangneuronsError(f"{folder}/adapter_config.json names no base_model_name_or_path") from None
    if not base:
        raise LangneuronsError(f"{folder}/adapter_config.json names no base_model_name_or_path")
    loaded = load_model(str(base), **kwargs)
    try:
        from peft import PeftModel
    except ImportError:
        raise LangneuronsError("a LoRA adapter folder needs peft: pip install peft") from None
    try:
        merged = PeftModel.from_pretrained(loaded.model, str(folder)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise LangneuronsError(f"cannot apply the adapter in {folder}: {_first_line(exc)}") from None
    merged.eval().requires_grad_(False)
    name = f"{loaded.name} + LoRA {folder}"
    return LoadedModel(merged, loaded.tokenizer, get_adapter(merged), name, loaded.revision, loaded.device,
                       loaded.dtype)  # fmt: skip


def quiet_transformers() -> None:
    """Keep transformers' and the hub's own progress bars and warnings out of our output (CLI use)."""
    import warnings

    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()
    warnings.filterwarnings("ignore", module=r"transformers(\.|$)")
    warnings.filterwarnings("ignore", module=r"huggingface_hub(\.|$)")


def _load_transformers(spec, revision, torch_dtype, trust_remote_code, device_map):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    check_model_spec(spec)
    check_hub_model(spec)
    local = Path(spec).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise LangneuronsError(f"{spec} is not a model directory (no config.json)")
    if local.exists():
        spec = str(local)
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    if hub_offline() or local.exists():
        kwargs["local_files_only"] = True  # one attempt, no retries against an unreachable hub
    try:
        config = AutoConfig.from_pretrained(spec, **kwargs)
    except (OSError, ValueError) as exc:
        hint = " (HF_HUB_OFFLINE is set: only models already in the cache load)" if hub_offline() else ""
        raise LangneuronsError(f"cannot load model {spec!r}: {_first_line(exc)}{hint}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec, config=config, dtype=torch_dtype, device_map=device_map, **kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(spec, **kwargs)
    except (OSError, ValueError) as exc:
        raise LangneuronsError(f"cannot load model {spec!r}: {_first_line(exc)}") from None
    return model, tokenizer


def _prepare_tokenizer(tokenizer) -> None:
    """Right padding (positions stay aligned) and a pad token even where the model has none."""
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def wrap_model(model: nn.Module, tokenizer, name: str, revision: str | None = None) -> LoadedModel:
    """Use an already-built model (e.g. made from a config, or edited in memory) with langneurons."""
    adapter = get_adapter(model)
    model.eval().requires_grad_(False)
    _prepare_tokenizer(tokenizer)
    param = next(model.parameters())
    return LoadedModel(model, tokenizer, adapter, name, revision, param.device, param.dtype)


def from_transformers(model: object, tokenizer: object = None) -> LoadedModel:
    """A model you loaded with ``transformers`` (a ``...ForCausalLM``; quantised, dispatched with a
    ``device_map`` or wrapped by PEFT), with its tokenizer (read from the model's folder when omitted)."""
    if isinstance(model, LoadedModel):
        return model
    if hasattr(model, "get_base_model") and callable(model.get_base_model):  # a PEFT model: adapters stay on
        model = model.get_base_model()
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise LangneuronsError(
            f"load_model takes a spec (str) or a transformers model, got {type(model).__name__}"
        )
    if not hasattr(model, "get_output_embeddings") or model.get_output_embeddings() is None:
        raise LangneuronsError(
            f"{type(model).__name__} has no language-model head: pass the ...ForCausalLM model "
            "(e.g. AutoModelForCausalLM.from_pretrained(...)), not its decoder body (model.model)"
        )
    name = str(getattr(model.config, "_name_or_path", "") or model.config.model_type)
    if tokenizer is None:
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        except Exception:  # noqa: BLE001 - any failure means: ask for it
            raise LangneuronsError(
                f"no tokenizer found for {name!r}: pass it, load_model(model, tokenizer)"
            ) from None
    return wrap_model(model, tokenizer, name)  # an unknown family: a one-line error naming its model type
