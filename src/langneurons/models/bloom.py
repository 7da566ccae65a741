"""BLOOM: non-gated GELU MLP. Hooks sit on ``gelu_impl``, so both the fast path and the
``slow_but_exact`` path (which slices the down weights and never calls ``dense_4h_to_h``) are seen."""

from langneurons.models.base import Adapter


class BloomAdapter(Adapter):
    model_types = ("bloom",)
    gated = False
    layers_path = "transformer.h"
    act_path = "mlp.gelu_impl"
    down_path = "mlp.dense_4h_to_h"
    intermediate_attr = ()  # always 4 * hidden_size
