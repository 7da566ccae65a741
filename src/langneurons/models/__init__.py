"""Models: loading (hub id, local dir, GGUF, the embedded Gemma) and one adapter per family.

Only this package knows where a family keeps its MLP neurons; everything else goes
through :func:`get_adapter` and :meth:`Adapter.hook`.
"""

from __future__ import annotations

from torch import nn

from langneurons.errors import LangneuronsError
from langneurons.models.base import HEADS, SITES, Adapter, BlockFn, Rows, SiteFn
from langneurons.models.bloom import BloomAdapter
from langneurons.models.deepseek import DeepseekV2Adapter, DeepseekV3Adapter
from langneurons.models.falcon import FalconAdapter
from langneurons.models.gemma import GemmaAdapter
from langneurons.models.gpt2 import GPT2Adapter
from langneurons.models.gpt_neox import GPTNeoXAdapter
from langneurons.models.gpt_oss import GptOssAdapter
from langneurons.models.llama import LlamaAdapter
from langneurons.models.mixtral import MixtralAdapter
from langneurons.models.olmoe import OlmoeAdapter
from langneurons.models.opt import OPTAdapter
from langneurons.models.phi import PhiAdapter
from langneurons.models.phi3 import Phi3Adapter
from langneurons.models.qwen_moe import Qwen2MoeAdapter, Qwen3MoeAdapter

ADAPTERS: list[type[Adapter]] = [
    LlamaAdapter,
    GemmaAdapter,
    Phi3Adapter,
    BloomAdapter,
    GPT2Adapter,
    GPTNeoXAdapter,
    OPTAdapter,
    PhiAdapter,
    FalconAdapter,
    # mixture of experts: per-expert neurons through the experts-implementation registry (models/moe.py)
    MixtralAdapter,
    Qwen2MoeAdapter,
    Qwen3MoeAdapter,
    OlmoeAdapter,
    DeepseekV2Adapter,
    DeepseekV3Adapter,
    GptOssAdapter,
]
# MoE families whose experts are not yet covered (per-expert ModuleLists or other layouts).
MOE_TYPES = ("dbrx", "jamba")


def register_adapter(adapter: type[Adapter]) -> type[Adapter]:
    """Add an adapter for a family langneurons does not know (docs/adapters.md); it is tried first, so it
    may also replace a built-in one. Usable as a class decorator."""
    if not (isinstance(adapter, type) and issubclass(adapter, Adapter)) or not adapter.model_types:
        raise LangneuronsError("register_adapter takes an Adapter subclass that names its model_types")
    ADAPTERS.insert(0, adapter)
    return adapter


def supported_model_types() -> list[str]:
    return sorted(t for adapter in ADAPTERS for t in adapter.model_types)


def get_adapter(model: nn.Module) -> Adapter:
    """The adapter for a loaded transformers model, chosen by ``config.model_type``."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter(model)
    if model_type in MOE_TYPES:
        raise LangneuronsError(
            f"mixture-of-experts model {model_type!r} is not supported (its experts are not fused "
            "3-D modules); supported MoE families: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2/v3, gpt_oss"
        )
    raise LangneuronsError(
        f"unsupported architecture {model_type!r} (looked for config.model_type in "
        f"{', '.join(supported_model_types())}): add an adapter of a few lines with "
        "langneurons.register_adapter, see docs/adapters.md"
    )


__all__ = ["ADAPTERS", "HEADS", "SITES", "Adapter", "BlockFn", "Rows", "SiteFn", "get_adapter", "register_adapter",
           "supported_model_types"]
