"""BLOOM: non-gated GELU MLP. Hooks sit on ``gelu_impl``, so both the fast path and the
``slow_but_exact`` path (which slices the down weights and never calls ``dense_4h_to_h``) are seen."""

from langneurons.errors import LangneuronsError
from langneurons.models.base import NonGatedAdapter


class BloomAdapter(NonGatedAdapter):
    model_types = ("bloom",)
    act_path = "mlp.gelu_impl"
    intermediate_attr = ()  # always 4 * hidden_size

    def check_heads(self) -> None:
        super().check_heads()
        if getattr(self.config, "slow_but_exact", False) and getattr(self.config, "pretraining_tp", 1) > 1:
            raise LangneuronsError(
                "BLOOM with slow_but_exact and pretraining_tp > 1 slices the attention output projection's "
                "weight and never calls it: its heads cannot be reached (load it with slow_but_exact=False)"
            )
