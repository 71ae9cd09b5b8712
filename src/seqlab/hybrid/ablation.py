"""Component ablation of a trained hybrid: how much each layer and branch is worth, in bits/char.

A component is switched off by dropping its residual update (the layer's `off` set, see
seqlab.hybrid.model); its state still advances, so the layers after it read exactly what they
would read had the component never written to the residual stream. The val split is streamed
as in training: contiguous tracks, chunk by chunk, state carried across chunks.
"""
import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from seqlab.hybrid.streams import doc_starts, stream_tracks

KIND_NAMES = {"R": "RWKV", "M": "Mamba", "A": "attention", "P": "R+M blend"}


@torch.no_grad()
def chunk_losses(model, ids, n_tracks, context, max_chunks=0, doc_sep=""):
    """Summed next-char cross-entropy (nats) of every (track, chunk) block, streaming contiguous tracks
    with carried state (fresh at the start): float64 array (n_tracks * n_chunks,), `context` chars each."""
    dev = next(model.parameters()).device
    tracks = stream_tracks(ids, n_tracks, context, max_chunks)
    resets = torch.from_numpy(doc_starts(tracks.reshape(-1).numpy(), doc_sep)).view(tracks.shape) if doc_sep else None
    state, out = None, []
    for s in range(0, tracks.shape[1] - 1, context):
        x, y = tracks[:, s:s + context].to(dev), tracks[:, s + 1:s + context + 1].to(dev)
        reset = resets[:, s:s + context].to(dev) if resets is not None else None
        logits, state = model(x, state, reset)
        nll = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")          # (tracks, context)
        out.append(nll.double().sum(1).cpu().numpy())
    return np.stack(out, 1).reshape(-1)


def components(model):
    """(name, [(layer index, part), ...]) of every ablation: each part of each layer, then all layers of each kind."""
    out = []
    for i, layer in enumerate(model.layers):
        for part in layer.PARTS:
            label = KIND_NAMES[layer.kind] + (" layer" if part == "layer" else f" {part}")
            out.append((f"{i}:{layer.kind} {label}", [(i, part)]))
    for kind in model.config.layout:
        idx = [i for i, k in enumerate(model.config.layout) if k == kind]
        name = f"all {kind} ({KIND_NAMES[kind]}) layers"
        if len(idx) > 1 and not any(n == name for n, _ in out):
            out.append((name, [(i, "layer") for i in idx]))
    return out


@contextlib.contextmanager
def switched_off(model, parts):
    """Inside the block, the given (layer index, part) updates are dropped; restored afterwards."""
    try:
        for i, part in parts:
            model.layers[i].off.add(part)
        yield model
    finally:
        for i, part in parts:
            model.layers[i].off.discard(part)


def bootstrap_mean(delta, weight, n_boot=1000, seed=0):
    """Ratio-of-sums mean sum(delta) / sum(weight) over blocks and its percentile bootstrap 95% interval
    (blocks resampled with replacement, n_boot times): (mean, low, high), in delta's units per weight unit."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(delta), size=(n_boot, len(delta)))
    boots = delta[idx].sum(1) / weight[idx].sum(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(delta.sum() / weight.sum()), float(lo), float(hi)


def ablate(model, ids, n_tracks, context, max_chunks=0, doc_sep="", n_boot=1000, seed=0):
    """Delta bits/char of switching off each component (components()), on the same val blocks.

    Delta = (loss with the component off - loss of the full model) / ln 2, per scored char; the 95%
    interval resamples (track, chunk) blocks of `context` chars (paired: the same blocks for both).
    Returns {"base_bpc", "chars", "blocks", "rows": [{name, parts, bpc, delta_bpc, ci95}]}.
    """
    was_training = model.training
    model.eval()
    base = chunk_losses(model, ids, n_tracks, context, max_chunks, doc_sep)
    chars = np.full(len(base), float(context))
    rows = []
    for name, parts in components(model):
        with switched_off(model, parts):
            loss = chunk_losses(model, ids, n_tracks, context, max_chunks, doc_sep)
        mean, lo, hi = bootstrap_mean((loss - base) / math.log(2), chars, n_boot, seed)
        rows.append({"name": name, "parts": [list(p) for p in parts], "bpc": float(loss.sum() / chars.sum() / math.log(2)),
                     "delta_bpc": mean, "ci95": [lo, hi]})
    model.train(was_training)
    return {"base_bpc": float(base.sum() / chars.sum() / math.log(2)), "chars": int(chars.sum()), "blocks": len(base),
            "rows": rows}
