"""Checkpoints: atomic writes and the one loader for every family.

A checkpoint is a dict: format_version, family, model_config, model, optimizer, scaler,
step, best (metric, value, step), trainer (plateau state), rng, data (sampler position),
hooks, train_config, manifest. Only tensors and plain Python values are stored, so files
load with torch.load(weights_only=True).
"""
import os
import random
from pathlib import Path

import numpy as np
import torch

from seqlab.core import registry
from seqlab.core.errors import UserError

FORMAT_VERSION = 1


def save_atomic(obj, path):
    """torch.save to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def rng_state():
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def strip_compile_prefix(state_dict):
    return {k.replace("_orig_mod.", "", 1) if k.startswith("_orig_mod.") else k: v for k, v in state_dict.items()}


def load(path, family=None, map_location="cpu"):
    """Open a checkpoint of any family; refuse missing, corrupt, foreign or wrong-family files.

    family: the family the caller needs (a str or a tuple of accepted names), or None for any.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated/garbage files
        raise UserError(f"checkpoint {path} cannot be read: corrupt, truncated or not a torch file ({type(e).__name__}); "
                        "use another checkpoint (best.pt / last.pt) or re-train") from None
    if (not isinstance(ckpt, dict) or not isinstance(ckpt.get("format_version"), int)
            or not isinstance(ckpt.get("family"), str) or not isinstance(ckpt.get("model"), dict)):
        raise UserError(f"{path} is not a checkpoint of this repo (no format_version/family/model)")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path} has checkpoint format {ckpt['format_version']}, newer than this code "
                        f"({FORMAT_VERSION}); update the repo")
    accepted = (family,) if isinstance(family, str) else family
    if accepted is not None and ckpt["family"] not in accepted:
        raise UserError(f"{path} is a '{ckpt['family']}' checkpoint; this script needs "
                        f"{' or '.join(repr(a) for a in accepted)}")
    if ckpt["family"] not in registry.FAMILIES:
        raise UserError(f"{path} has unknown family '{ckpt['family']}'")
    ckpt["model"] = strip_compile_prefix(ckpt["model"])
    return ckpt


def load_model(path, family=None, map_location="cpu"):
    """(model in eval mode, checkpoint dict) from any checkpoint file."""
    ckpt = load(path, family, map_location)
    model = registry.build(ckpt["family"], ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt
