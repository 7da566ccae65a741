"""OPT: no MLP module; fc1 → activation_fn → fc2 sit on the decoder layer and see 2-D [B·T, F] inputs."""

from langneurons.models.base import Adapter


class OPTAdapter(Adapter):
    model_types = ("opt",)
    gated = False
    layers_path = "model.decoder.layers"
    act_path = "activation_fn"
    down_path = "fc2"
    intermediate_attr = ("ffn_dim",)
