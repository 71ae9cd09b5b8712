"""Periodograms of spacing sequences and the prime lines of the explicit formula.

The zero-counting fluctuation S(t) carries, for each prime power p^k, a term cos(t k log p) / ...;
in unfolded units (mean spacing 1 at height T) that is a line at f_p = log(p^k) / log(T / 2 pi)
cycles per spacing in the periodogram of (s - 1). Over a block of spacings the height drifts, so
lines are sharp only in blocks narrow in log T (see DESIGN.md, "What the data holds").
"""
import math

import numpy as np

PRIME_POWERS = (2, 3, 4, 5, 7, 8, 9, 11, 13)


def periodogram(x):
    """(freqs, power) of a real sequence: |rfft(w (x - mean))|^2 / sum(w^2) with a Hann window w,
    at freqs k / n cycles per sample, k = 0 .. n/2 (power in squared units of x per unit frequency)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.hanning(len(x))
    spec = np.fft.rfft(w * (x - x.mean()))
    return np.fft.rfftfreq(len(x)), np.abs(spec) ** 2 / np.sum(w ** 2)


def prime_line(p, height):
    """f_p = log p / log(T / 2 pi), cycles per unfolded spacing, for a prime power p at height T."""
    return math.log(p) / math.log(height / (2 * math.pi))


def peak_near(freqs, power, f0, rel_window=0.02):
    """The frequency of the highest periodogram bin within f0 (1 +- rel_window), refined by a parabola
    through the log power of that bin and its neighbours (sub-bin accuracy), and its peak-to-median
    ratio against the whole periodogram (excluding f = 0). Returns (f_meas, peak_over_median)."""
    sel = np.nonzero((freqs >= f0 * (1 - rel_window)) & (freqs <= f0 * (1 + rel_window)))[0]
    if len(sel) == 0:
        raise ValueError(f"no periodogram bin within {rel_window:.0%} of {f0}: the block is too short")
    k = int(sel[np.argmax(power[sel])])
    f = freqs[k]
    if 0 < k < len(power) - 1:
        a, b, c = np.log(power[k - 1:k + 2] + 1e-300)
        denom = a - 2 * b + c
        if denom < 0:
            f = freqs[k] + 0.5 * (a - c) / denom * (freqs[1] - freqs[0])
    return float(f), float(power[k] / np.median(power[1:]))


def prime_line_table(s, heights, block=2 ** 16, n_blocks=4, primes=PRIME_POWERS, min_height=1e5):
    """Measured against predicted prime lines in `n_blocks` blocks of `block` consecutive spacings,
    spread evenly over the part of the sequence whose heights exceed `min_height` (all of it if none
    do). heights[i]: the height T of spacing i. Returns a list of {block, t_mid, p, f_pred, f_meas,
    rel_err, peak_over_median}; f_pred uses the block's mean height."""
    s, heights = np.asarray(s, dtype=np.float64), np.asarray(heights, dtype=np.float64)
    first = int(np.searchsorted(heights, min_height))
    if len(s) - first < block:
        first = 0
    block = min(block, len(s) - first)
    starts = np.linspace(first, len(s) - block, n_blocks).astype(int) if n_blocks > 1 else np.array([first])
    rows = []
    for b, i0 in enumerate(starts):
        freqs, power = periodogram(s[i0:i0 + block])
        t_mid = float(np.mean(heights[i0:i0 + block]))
        for p in primes:
            f_pred = prime_line(p, t_mid)
            if f_pred >= 0.5:
                continue
            f_meas, ratio = peak_near(freqs, power, f_pred)
            rows.append({"block": b, "t_mid": t_mid, "p": p, "f_pred": f_pred, "f_meas": f_meas,
                         "rel_err": f_meas / f_pred - 1, "peak_over_median": ratio})
    return rows
