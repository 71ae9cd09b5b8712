"""Model registry: family name -> (config dataclass, model class), used by the one checkpoint loader."""
from seqlab.models.char import CharConfig, CharTransformer

REGISTRY = {
    "char": (CharConfig, CharTransformer),
}


def build(family, config_dict):
    """A fresh model of `family` from a config dict (as stored in checkpoints)."""
    config_cls, model_cls = REGISTRY[family]
    return model_cls(config_cls(**config_dict))
