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

from seqlab.core import device, registry
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


def _cuda_device(device):
    """The CUDA device this process trains on (index filled in), or None when it does not use CUDA.
    device None means the current CUDA device whenever CUDA is available."""
    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def rng_state(device=None):
    """Every RNG this process draws from: Python, NumPy, torch CPU, and the CUDA generator of its own
    device only (not every visible GPU: a run resumed on a pod with fewer GPUs must still load)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        # keys as int64, not NumPy's uint32: torch 2.4 (the floor) can neither save nor load a uint32 tensor
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    cuda = _cuda_device(device)
    if cuda is not None:
        state["cuda"] = torch.cuda.get_rng_state(cuda)
    return state


def set_rng_state(state, device=None):
    """Restore rng_state(); returns a one-line note when the CUDA state could not be restored as
    saved (a different machine), else None. Older checkpoints hold a list with one CUDA state per
    GPU that was visible; the entry of this process's device is used when the list has it."""
    random.setstate(_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))   # int64 keys, or uint32 in older files
    torch.set_rng_state(state["torch"])
    saved, cuda = state.get("cuda"), _cuda_device(device)
    if saved is None:
        return None if cuda is None else "the checkpoint holds no CUDA RNG state; the CUDA generator starts from --seed"
    if cuda is None:
        return "the checkpoint's CUDA RNG state is not restored: this run does not use CUDA"
    if isinstance(saved, torch.Tensor):
        torch.cuda.set_rng_state(saved, cuda)
        return None
    n_here = torch.cuda.device_count()
    if cuda.index < len(saved):
        torch.cuda.set_rng_state(saved[cuda.index], cuda)
        if len(saved) == n_here:
            return None
        return (f"the checkpoint holds CUDA RNG states of {len(saved)} GPU(s), this machine has {n_here}; "
                f"restored the one of {cuda}")
    return (f"the checkpoint holds CUDA RNG states of {len(saved)} GPU(s), none for {cuda} "
            f"(this machine has {n_here}); the CUDA generator starts from --seed")


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def periodic(folder):
    """The ckpt_<step>.pt files of a run folder, oldest step first."""
    found = [(int(p.stem[5:]), p) for p in Path(folder).glob("ckpt_*.pt") if p.stem[5:].isdigit()]
    return [p for _, p in sorted(found)]


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


def open_for_eval(path, family=None, device_name="cpu", data_dir=None):
    """What an eval or diagnose script starts from: (model in eval mode on `device_name`, checkpoint
    dict, dataset folder: `data_dir` if given, else the one the run trained on)."""
    model, ckpt = load_model(path, family)
    model.to(device.pick(device_name))
    return model, ckpt, data_dir or ckpt["data_info"]["data_dir"]


def load_model(path, family=None, map_location="cpu"):
    """(model in eval mode, checkpoint dict) from any checkpoint file."""
    ckpt = load(path, family, map_location)
    model = registry.build(ckpt["family"], ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt
