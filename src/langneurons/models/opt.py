"""OPT: no MLP module; fc1 → activation_fn → fc2 sit on the decoder layer and see 2-D [B·T, F] inputs."""

from langneurons.models.base import NonGatedAdapter


class OPTAdapter(NonGatedAdapter):
    model_types = ("opt",)
    layers_path = "model.decoder.layers"
    act_path = "activation_fn"
    down_path = "fc2"
    intermediate_attr = ("ffn_dim",)
    o_path = "self_attn.out_proj"
