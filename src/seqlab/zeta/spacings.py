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
VALIDATE_BLOCK = 1 << 24
MMAP_BYTES = 1 << 28  # splits larger than this (256 MB, 67M spacings) are memory-mapped by load_split


def validate(spacings, what="spacings", max_spacing=MAX_SPACING):
    """Raise UserError naming the first non-finite, non-positive or > max_spacing value.
    (max_spacing: 10 for zeta spacings; a dataset may record another cap as meta["max_spacing"].)"""
    s = np.asarray(spacings)
    for i0 in range(0, s.size, VALIDATE_BLOCK):  # in blocks: no full-size temporaries for a 500M set
        b = s[i0: i0 + VALIDATE_BLOCK]
        bad = ~np.isfinite(b) | (b <= 0) | (b > max_spacing)
        if bad.any():
            i = i0 + int(np.argmax(bad))
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


def load_split(data_dir, split, mmap=None):
    """float32 tensor (n_windows, seq_len) of one split, with one-line errors for bad folders.
    mmap: map the file instead of reading it (torch.load(mmap=True): pages are read on use and the
    data is never held twice); None = only for files over MMAP_BYTES."""
    d = Path(data_dir)
    if not d.is_dir():
        raise UserError(f"data dir {d} does not exist; build it with scripts/prepare_continuous_2M.py --out-dir {d}")
    f = d / f"{split}.pt"
    if not f.is_file():
        raise UserError(f"{f} is missing: {d} is not a spacing dataset (train.pt, val.pt, meta.pt)")
    if mmap is None:
        mmap = f.stat().st_size > MMAP_BYTES
    try:
        x = torch.load(f, weights_only=True, mmap=bool(mmap))
    except Exception as e:
        raise UserError(f"{f} cannot be read ({type(e).__name__}); rebuild the dataset") from None
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.numel() == 0:
        raise UserError(f"{f} must hold a non-empty 2-D tensor (n_windows, seq_len); rebuild the dataset")
    x = x.float()  # a no-op for the float32 files this module writes (a mapped tensor stays mapped)
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


def height_of_count(n):
    """Height T (float64 array) where the smooth zero count theta(T)/pi + 1 equals n - 1/2, i.e.
    about where zero number n sits (|error| < a few mean spacings, from S(T)). Newton on
    (T/2pi) log(T/2pi e) + 7/8 = n - 1/2, the Riemann-von Mangoldt main terms."""
    n = np.asarray(n, dtype=np.float64)
    target = n - 0.5 - 7 / 8
    t = 2 * np.pi * np.maximum(n, 2.0) / np.log(np.maximum(n, 2.0) + 1) + 14.0   # above the root: Newton goes down
    for _ in range(60):
        x = t / (2 * np.pi)
        f = x * np.log(x / np.e) - target
        t = np.maximum(t - f / (np.log(x) / (2 * np.pi)), 14.0)
    return t


def train_heights(meta, n_train):
    """(n_train,) heights of the lower zero of each spacing of the flattened train stream: spacing i
    lies between zeros first + i and first + i + 1 (first = meta['first_zero'], default 1)."""
    first = int(meta.get("first_zero", 1))
    return height_of_count(first + np.arange(n_train))


def select_train(n_train, meta, fraction=None, heights=None):
    """[lo, hi) indices of the train stream to train on: the last `fraction` of it (the heights
    nearest val), or the spacings whose lower zero lies in heights = (T_lo, T_hi) (either may be None).
    None of both: the whole stream."""
    if fraction is not None and heights is not None:
        raise UserError("give --train-fraction or --train-heights, not both")
    if fraction is not None:
        return n_train - max(1, int(round(fraction * n_train))), n_train
    if heights is None:
        return 0, n_train
    if "gamma_min" not in meta:
        raise UserError("--train-heights needs a zeta dataset whose meta records its zeros (gamma_min); "
                        "this one does not: use --train-fraction")
    t = train_heights(meta, n_train)
    lo_t, hi_t = heights
    keep = np.ones(n_train, dtype=bool)
    if lo_t is not None:
        keep &= t >= lo_t
    if hi_t is not None:
        keep &= t < hi_t
    idx = np.nonzero(keep)[0]
    if len(idx) == 0:
        raise UserError(f"--train-heights {lo_t}:{hi_t} selects no train spacing (the train stream spans heights "
                        f"{t[0]:.6g} .. {t[-1]:.6g})")
    return int(idx[0]), int(idx[-1]) + 1
