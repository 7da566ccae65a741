"""On-disk formats: statistics (safetensors + JSON manifest) and neuron sets (JSON)."""
