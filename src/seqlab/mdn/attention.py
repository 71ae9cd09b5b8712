"""Attention of an MDN model on request, and attention kernels by lag.

    with attention.recorded(model) as maps:
        model(x)
    scores, weights = maps[layer]        # each (B, nh, L, L); L = tokens (slots included for PREFIX/POSTFIX)

Nothing changes when not asked: the shared block (seqlab/core/transformer.py) runs its fused
attention unless `keep_attention` is set, and only `recorded` sets it, for the duration of the
`with`. `heads_removed` zeroes chosen heads' outputs before the output projection (ablation).

Glossary: lag d = t - j >= 0 between the query token t and the key token j (d = 0: itself).
"""
from contextlib import contextmanager

import numpy as np
import torch

from seqlab.core.transformer import CausalSelfAttention


def attention_layers(model):
    """The model's CausalSelfAttention modules, in layer order."""
    return [m for m in model.modules() if isinstance(m, CausalSelfAttention)]


@contextmanager
def recorded(model):
    """Inside the block every forward stores, per layer, (scores, weights) (B, nh, L, L) on cpu:
    scores = q.k / sqrt(hs) before the mask (the logits), weights = softmax after the mask.
    Yields a list that holds the last forward's pairs, one per layer."""
    layers = attention_layers(model)
    for a in layers:
        a.keep_attention = True
    rec = Recording(layers)
    try:
        yield rec
    finally:
        rec.freeze()  # the last forward's maps stay readable after the block
        for a in layers:
            a.keep_attention = False
            a.attention = None


class Recording:
    """maps[i]: (scores, weights) of layer i from the last forward, on cpu."""

    def __init__(self, layers):
        self.layers, self.frozen = layers, None

    def freeze(self):
        if all(getattr(a, "attention", None) is not None for a in self.layers):
            self.frozen = [self[i] for i in range(len(self.layers))]

    def __getitem__(self, i):
        if self.frozen is not None:
            return self.frozen[i]
        return tuple(t.cpu() for t in self.layers[i].attention)

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return (self[i] for i in range(len(self.layers)))


@contextmanager
def heads_removed(model, heads):
    """Inside the block the heads in `heads` (an iterable of (layer, head)) contribute nothing:
    their output is multiplied by 0 before the output projection (the projection's bias stays)."""
    layers = attention_layers(model)
    for a in layers:
        a.head_mask = torch.ones(a.n_head)
    for layer, head in heads:
        layers[layer].head_mask[head] = 0.0
    try:
        yield
    finally:
        for a in layers:
            a.head_mask = None


def by_lag(mat, n_data, max_lag, offset=0, min_t=None):
    """Means over query positions of a (N, nh, L, L) attention quantity as a function of lag.

    The data tokens are offset .. offset + n_data - 1 (offset = M for PREFIX). For each window and
    head, entry d is the mean of mat[t, t - d] over query positions t >= min_t (default max_lag, so
    that every lag 0..max_lag is averaged over the same queries). Returns (N, nh, max_lag + 1)."""
    min_t = max_lag if min_t is None else min_t
    t = torch.arange(min_t, n_data)
    d = torch.arange(max_lag + 1)
    rows, cols = offset + t[:, None], offset + t[:, None] - d[None, :]           # (Tq, D)
    return mat[:, :, rows, cols].mean(2)                                         # (N, nh, D)


@torch.no_grad()
def kernels_by_lag(model, wins, max_lag=64, batch_size=32, forward_kwargs=None):
    """Attention kernels of every layer and head against lag d = 0..max_lag, per window.

    score kernel:  mean over queries t of the row-centred pre-softmax score
                   z[t, t-d] - mean_{j <= t} z[t, j] (logit units; the softmax ignores row offsets);
    weight kernel: mean over queries t of the post-softmax weight w[t, t-d] (probability).
    Queries are positions t >= max_lag of the data tokens (all lags present). wins (N, T+1): the
    model reads the first T. Returns {"score": (N, n_layer, nh, D), "weight": (...)} numpy arrays."""
    dev = next(model.parameters()).device
    T = wins.size(1) - 1
    offset = model.config.n_memory_slots if model.family == "mdn_prefix" else 0
    out = {"score": [], "weight": []}
    with recorded(model) as maps:
        for i in range(0, len(wins), batch_size):
            model(wins[i:i + batch_size, :T].to(dev), **(forward_kwargs or {}))
            sc, wt = [], []
            for scores, weights in maps:
                L = scores.size(-1)
                causal = torch.ones(L, L, dtype=torch.bool).tril()
                row_mean = (scores * causal).sum(-1, keepdim=True) / causal.sum(-1, keepdim=True)
                sc.append(by_lag(scores - row_mean, T, max_lag, offset))
                wt.append(by_lag(weights, T, max_lag, offset))
            out["score"].append(torch.stack(sc, 1))
            out["weight"].append(torch.stack(wt, 1))
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def bootstrap_band(per_window, n_boot=200, level=0.95, seed=0):
    """(mean, lo, hi) over axis 0 of per-window curves: the mean and a percentile bootstrap
    interval of the mean from resampling windows with replacement."""
    x = np.asarray(per_window, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    means = np.stack([x[i].mean(0) for i in idx])
    a = (1 - level) / 2
    return x.mean(0), np.quantile(means, a, axis=0), np.quantile(means, 1 - a, axis=0)
