"""Model registry: family name -> (config dataclass, model class), used by the one checkpoint loader."""
from seqlab.models.char import CharConfig, CharTransformer
from seqlab.models.hybrid import HybridConfig, HybridLM
from seqlab.models.mdn import MDNConfig, SpacingMDN
from seqlab.models.mdn_memory import PostfixConfig, PostfixMDN, PrefixConfig, PrefixMDN

REGISTRY = {
    "char": (CharConfig, CharTransformer),
    "hybrid": (HybridConfig, HybridLM),
    "mdn": (MDNConfig, SpacingMDN),
    "mdn_prefix": (PrefixConfig, PrefixMDN),
    "mdn_postfix": (PostfixConfig, PostfixMDN),
}


def build(family, config_dict):
    """A fresh model of `family` from a config dict (as stored in checkpoints)."""
    config_cls, model_cls = REGISTRY[family]
    return model_cls(config_cls(**config_dict))
