"""BLOOM: non-gated GELU MLP. Hooks sit on ``gelu_impl``, so both the fast path and the
``slow_but_exact`` path (which slices the down weights and never calls ``dense_4h_to_h``) are seen."""

from langneurons.models.base import NonGatedAdapter


class BloomAdapter(NonGatedAdapter):
    model_types = ("bloom",)
    act_path = "mlp.gelu_impl"
    intermediate_attr = ()  # always 4 * hidden_size
