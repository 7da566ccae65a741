"""OPT: no MLP module; fc1 → activation_fn → fc2 sit on the decoder layer and see 2-D [B·T, F] inputs."""

from langneurons.models.base import NonGatedAdapter


class OPTAdapter(NonGatedAdapter):
    model_types = ("opt",)
    layers_path = "model.decoder.layers"
    act_path = "activation_fn"
    down_path = "fc2"
    intermediate_attr = ("ffn_dim",)
    final_norm_path = "model.decoder.final_layer_norm"
    o_path = "self_attn.out_proj"

    def final_transform(self, hidden):
        """The final norm (absent in OPT-350m style models) and the ``project_out`` to the embedding width."""
        hidden = super().final_transform(hidden)
        project = getattr(self.model.model.decoder, "project_out", None)
        return hidden if project is None else project(hidden)
