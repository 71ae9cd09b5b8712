"""Spacing datasets (family 2): non-overlapping windows of unfolded spacings (mean 1).

A folder holds train.pt and val.pt, float32 tensors (n_windows, seq_len), and meta.pt, a dict.
The last int(val_fraction * n_windows) windows are val ("val_tail": the highest ordinates).
"""
from pathlib import Path

import numpy as np
import torch

from seqlab.core.errors import UserError

SEQ_LEN = 256
MAX_SPACING = 10.0


def validate(spacings, what="spacings", max_spacing=MAX_SPACING):
    """Raise UserError naming the first non-finite, non-positive or > max_spacing value.
    (max_spacing: 10 for zeta spacings; a dataset may record another cap as meta["max_spacing"].)"""
    s = np.asarray(spacings)
    bad = ~np.isfinite(s) | (s <= 0) | (s > max_spacing)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{what}[{i}] = {s[i]!r} is not a valid unfolded spacing "
                        f"(must be finite, > 0 and <= {max_spacing}); check the input ordinates")


def statistics(spacings, max_lag=5):
    """mean, std, min, max and the autocorrelation of the spacings at lags 1..max_lag."""
    s = np.asarray(spacings, dtype=np.float64)
    d = s - s.mean()
    var = float((d * d).mean())
    acf = [float((d[:-k] * d[k:]).mean() / var) for k in range(1, max_lag + 1)]
    return {"mean": float(s.mean()), "std": float(s.std()), "min": float(s.min()), "max": float(s.max()),
            "autocorr": acf}


def to_windows(spacings, seq_len=SEQ_LEN, val_fraction=0.1):
    """(train, val) float32 tensors of non-overlapping windows; the tail windows are val."""
    s = np.asarray(spacings, dtype=np.float64)
    n = len(s) // seq_len
    n_val = int(val_fraction * n)
    if n - n_val < 1 or n_val < 1:
        raise UserError(f"{len(s)} spacings make {n} windows of {seq_len}: too few for a train/val split; use more zeros")
    w = torch.from_numpy(s[: n * seq_len].reshape(n, seq_len).astype(np.float32))
    return w[: n - n_val].clone(), w[n - n_val:].clone()


def write(out_dir, train, val, meta, overwrite=False):
    out = Path(out_dir)
    if (out / "meta.pt").exists() and not overwrite:
        raise UserError(f"{out} already holds a spacing dataset; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    from seqlab.core.checkpoint import save_atomic
    save_atomic(train, out / "train.pt")
    save_atomic(val, out / "val.pt")
    save_atomic(meta, out / "meta.pt")


def load_split(data_dir, split):
    """float32 tensor (n_windows, seq_len) of one split, with one-line errors for bad folders."""
    d = Path(data_dir)
    if not d.is_dir():
        raise UserError(f"data dir {d} does not exist; build it with scripts/prepare_continuous_2M.py --out-dir {d}")
    f = d / f"{split}.pt"
    if not f.is_file():
        raise UserError(f"{f} is missing: {d} is not a spacing dataset (train.pt, val.pt, meta.pt)")
    try:
        x = torch.load(f, weights_only=True)
    except Exception as e:
        raise UserError(f"{f} cannot be read ({type(e).__name__}); rebuild the dataset") from None
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.numel() == 0:
        raise UserError(f"{f} must hold a non-empty 2-D tensor (n_windows, seq_len); rebuild the dataset")
    x = x.float()
    validate(x.flatten().numpy(), what=str(f), max_spacing=load_meta(d).get("max_spacing", MAX_SPACING))
    return x


def load_meta(data_dir):
    f = Path(data_dir) / "meta.pt"
    return torch.load(f, weights_only=True) if f.is_file() else {}


def prepare(spacings, out_dir, *, source, extra_meta=None, seq_len=SEQ_LEN, val_fraction=0.1, overwrite=False):
    """Validate spacings, cut them into windows, write train.pt/val.pt/meta.pt; returns meta.

    meta: n_spacings, spacing_mean/std/min/max, autocorr (lags 1..5, over all spacings), seq_len,
    n_train, n_val, val_type ("val_tail"), source, dtype, plus extra_meta (e.g. n_zeros, sha256;
    extra_meta["max_spacing"] replaces the cap of 10 in validate, here and in load_split)."""
    out = Path(out_dir)
    if (out / "meta.pt").exists() and not overwrite:
        raise UserError(f"{out} already holds a spacing dataset; pass --overwrite to replace it")
    max_spacing = (extra_meta or {}).get("max_spacing", MAX_SPACING)
    validate(spacings, max_spacing=max_spacing)
    train, val = to_windows(spacings, seq_len=seq_len, val_fraction=val_fraction)
    st = statistics(spacings)
    meta = dict(extra_meta or {})
    meta.update({"n_spacings": int(len(spacings)), "spacing_mean": st["mean"], "spacing_std": st["std"],
                 "spacing_min": st["min"], "spacing_max": st["max"], "autocorr": st["autocorr"],
                 "seq_len": int(seq_len), "n_train": int(train.shape[0]), "n_val": int(val.shape[0]),
                 "val_type": "val_tail", "val_fraction": float(val_fraction), "source": source, "dtype": "float32"})
    write(out, train, val, meta, overwrite=overwrite)
    return meta
