"""Zero sets too large for one file or one run: shards on disk, resumable, streamed into a spacing dataset.

A build of zeros n = start .. start+count-1 is cut into shards of `shard` zeros; shard i holds
zeros a_i .. a_i + c_i - 1 in <shard_dir>/zeros_<a_i>_<last>.npy with its JSON sidecar (files.save_zeros,
written atomically). A shard whose file and sidecar exist and whose sha256 matches is never computed
again, so a killed build resumes where it stopped. Each shard is certified on its own (every index
once, increasing: Rosser's rule or Turing's method); consecutive shards meet at consecutive indices.
The dataset is then streamed shard by shard: spacings across a shard boundary use the last zero of the
previous shard, and only the float32 windows are held in memory (2 GB for 500M zeros).
"""
import math
import time
from pathlib import Path

import numpy as np

from seqlab.zeta import files as zeta_io, zeros as zeta
from seqlab.zeta.spacings import validate

STAT_BLOCK = 1 << 24  # spacings per block of the streamed statistics


def plan(start, count, shard):
    """[(first index, count)] of the shards covering zeros start .. start+count-1."""
    return [(a, min(shard, start + count - a)) for a in range(start, start + count, shard)]


def shard_path(shard_dir, a, c):
    return Path(shard_dir) / f"zeros_{a}_{a + c - 1}.npy"


def build(start, count, shard_dir, shard, workers=1, info=None, log=print):
    """Compute every missing shard of zeros start .. start+count-1 into shard_dir; returns
    {"paths", "computed", "reused", "wall_s", "rate"} (rate: zeros per second over the computed shards).
    info: extra sidecar fields (versions, ...). One process pool serves all shards."""
    shard_dir = Path(shard_dir)
    parts = plan(start, count, shard)
    paths = [shard_path(shard_dir, a, c) for a, c in parts]
    todo = [(a, c, p) for (a, c), p in zip(parts, paths) if zeta_io.load_zeros(p, a, c) is None]
    reused = len(parts) - len(todo)
    if reused and log:
        log(f"{reused} of {len(parts)} shards already complete in {shard_dir} (sha256 verified): not recomputed")
    pool = zeta.make_pool(workers) if workers > 1 and todo else None
    t_all, done = time.time(), 0
    try:
        for i, (a, c, p) in enumerate(todo):
            t = time.time()
            gamma, checks = zeta.compute_zeros(a, c, workers=workers, pool=pool)
            wall = time.time() - t
            zeta_io.save_zeros(p, gamma, dict(info or {}, start=a, checks=_jsonable(checks), wall_s=round(wall, 2),
                                              workers=workers), overwrite=True)
            done += c
            if log:
                el = time.time() - t_all
                log(f"shard {i + 1}/{len(todo)}: zeros {a:,}..{a + c - 1:,} in {wall:.1f} s ({c / wall:,.0f} zeros/s); "
                    f"ETA {el / done * sum(x[1] for x in todo[i + 1:]) / 60:.1f} min")
    finally:
        if pool is not None:
            pool.terminate()
    wall = time.time() - t_all
    return {"paths": paths, "computed": len(todo), "reused": reused, "wall_s": wall,
            "rate": done / wall if done else None}


def _jsonable(checks):
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in checks.items()}


def spacing_blocks(paths):
    """Unfolded spacings (float64), one block per shard, continuing across shard boundaries."""
    from seqlab.zeta.zeros import unfolded_spacings
    prev = None
    for p in paths:
        g = np.load(p, mmap_mode="r")
        yield unfolded_spacings(g if prev is None else np.concatenate([[prev], g]))
        prev = float(g[-1])


def windows(paths, n_spacings, seq_len, val_fraction):
    """(train, val, rest): float32 arrays (n_windows, seq_len) filled from the shards' spacings without
    holding the spacing stream (the last int(val_fraction * n_windows) windows are val), and the float64
    spacings past the last whole window (fewer than seq_len; statistics count them, windows do not)."""
    n = n_spacings // seq_len
    n_val = int(val_fraction * n)
    train = np.empty((n - n_val, seq_len), dtype=np.float32)
    val = np.empty((n_val, seq_len), dtype=np.float32)
    flat = (train.reshape(-1), val.reshape(-1))
    cut, end, pos, rest = train.size, n * seq_len, 0, []
    for p, s in zip(paths, spacing_blocks(paths)):
        validate(s, what=f"spacings of {Path(p).name} (0 = its first zero)")
        if pos + len(s) > end:  # spacings past the last whole window
            rest.append(s[max(0, end - pos):])
        s = s[: max(0, end - pos)]
        a = min(len(s), max(0, cut - pos))  # the part that goes to train
        flat[0][pos: pos + a] = s[:a]
        if len(s) > a:
            flat[1][pos + a - cut: pos + len(s) - cut] = s[a:]
        pos += len(s)
    return train, val, np.concatenate(rest) if rest else np.zeros(0)


def statistics(parts, max_lag=5):
    """mean, std, min, max and the autocorrelation at lags 1..max_lag (the definitions of
    spacings.statistics) of the stream made of `parts` (arrays, in order), in float64 blocks of STAT_BLOCK."""
    parts = [np.asarray(p).reshape(-1) for p in parts]
    n = sum(p.size for p in parts)

    def blocks():
        for p in parts:
            for i in range(0, p.size, STAT_BLOCK):
                yield p[i: i + STAT_BLOCK].astype(np.float64)
    tot, lo, hi = 0.0, math.inf, -math.inf
    for b in blocks():
        tot += float(b.sum())
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
    mean = tot / n
    sq, lag, carry = 0.0, np.zeros(max_lag), np.zeros(0)
    for b in blocks():
        d = b - mean
        sq += float((d * d).sum())
        x, m = np.concatenate([carry, d]), len(carry)
        for k in range(1, max_lag + 1):  # the pairs (i, i + k) whose second element is in this block
            i0 = max(0, m - k)
            lag[k - 1] += float((x[i0: len(x) - k] * x[i0 + k:]).sum())
        carry = x[-max_lag:]
    var = sq / n
    return {"mean": mean, "std": math.sqrt(var), "min": lo, "max": hi,
            "autocorr": [float(lag[k - 1] / (n - k) / var) for k in range(1, max_lag + 1)]}
