"""Model registry: family name (as stored in checkpoints) -> (config dataclass, model class).

The one checkpoint loader (checkpoint.py) builds any family's model through it. Families are
imported on first use, so the core never imports a family at import time (names, not imports, live here).
"""
import importlib

FAMILIES = {  # family -> (module, config class, model class)
    "char": ("seqlab.text.model", "CharConfig", "CharTransformer"),
    "hybrid": ("seqlab.hybrid.model", "HybridConfig", "HybridLM"),
    "mdn": ("seqlab.mdn.model", "MDNConfig", "SpacingMDN"),
    "mdn_prefix": ("seqlab.mdn.memory", "PrefixConfig", "PrefixMDN"),
    "mdn_postfix": ("seqlab.mdn.memory", "PostfixConfig", "PostfixMDN"),
}


def classes(family):
    """(config class, model class) of `family`."""
    module, config_name, model_name = FAMILIES[family]
    mod = importlib.import_module(module)
    return getattr(mod, config_name), getattr(mod, model_name)


def build(family, config_dict):
    """A fresh model of `family` from a config dict (as stored in checkpoints)."""
    config_cls, model_cls = classes(family)
    return model_cls(config_cls(**config_dict))
