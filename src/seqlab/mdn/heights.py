"""Heights of the zeros behind each spacing: the input of the height-aware SpacingMDN (+height).

L = log(T / 2 pi), T the height of the lower zero of a spacing, from the smooth zero count
(seqlab.zeta.spacings.height_of_count; off by a few mean spacings at most, a relative error in L
below 1e-5 above T = 100). They are computed from meta.pt (first_zero, n_train, seq_len), not
stored: every zeta dataset built so far works unchanged, nothing is added to the data folder, and
the numbers cannot disagree with the spacings they belong to.
"""
import math

import numpy as np
import torch

from seqlab.core.errors import UserError
from seqlab.zeta import spacings as spacing_data


def split_start(meta, split):
    """Index in the whole spacing stream of the split's first spacing (train first, then val)."""
    return 0 if split == "train" else int(meta["n_train"]) * int(meta["seq_len"])


def log_heights_at(meta, split, idx):
    """float64 L = log(T / 2 pi) of the lower zero of the split's spacings at indices idx."""
    if "gamma_min" not in meta:
        raise UserError("height inputs need a zeta dataset whose meta records its zeros (gamma_min); this one does not")
    first = int(meta.get("first_zero", 1)) + split_start(meta, split)
    return np.log(spacing_data.height_of_count(first + np.asarray(idx)) / (2 * math.pi))


def log_heights(meta, split, n, start=0):
    """(n - start,) L of the split's spacings start..n-1 (a range, so a run on part of a 500M-spacing
    set never builds an array of all of them)."""
    return log_heights_at(meta, split, np.arange(start, n))


def normaliser(meta):
    """(center, scale) mapping the train stream's L range onto [-1, 1]: fixed at model build, kept in
    the config, so a checkpoint normalises val and generated heights the same way."""
    n = int(meta["n_train"]) * int(meta["seq_len"])
    lo, hi = log_heights_at(meta, "train", [0, n - 1])
    return float((lo + hi) / 2), float(max((hi - lo) / 2, 1e-3))


def split_windows(data_dir, split, length, stride=None):
    """(N, length) float32 L of the windows mdn_eval.windows(split, length, stride) cuts."""
    from seqlab.mdn import evaluate as mdn_eval
    meta = spacing_data.load_meta(data_dir)
    n = spacing_data.load_split(data_dir, split).numel()
    h = torch.from_numpy(log_heights(meta, split, n).astype(np.float32))[None]
    return mdn_eval.windows(h, length, stride)


def uses_height(config):
    """Does the model take heights (a +height input, or an AR path that moves with the height)?"""
    return "+height" in getattr(config, "input_features", "") or bool(getattr(config, "ar_height_scale", 0))


class AtHeight(torch.nn.Module):
    """A height-aware model read at one height L = log(T / 2 pi) for every window: what the telescope
    scripts (kernels, head ablation, generated spectra) pass it. Val spans a narrow range of L (0.8%
    on continuous_2M), so one height, the mean of the windows read, stands for all of them."""

    def __init__(self, model, log_height):
        super().__init__()
        self.model, self.log_height, self.config = model, float(log_height), model.config
        self.family = model.family

    def scored_positions(self, T):
        return self.model.scored_positions(T)

    def forward(self, x, **kwargs):
        kwargs.setdefault("height", torch.full((x.size(0),), self.log_height, device=x.device))
        return self.model(x, **kwargs)


def readable(model, meta, val_idx):
    """The model as the telescope scripts run it: itself, or, if it takes heights, AtHeight at the mean
    L of the val spacings at indices val_idx (returned as the second value, else None)."""
    if not uses_height(model.config):
        return model, None
    L = float(np.mean(log_heights_at(meta, "val", val_idx)))
    return AtHeight(model, L), L
