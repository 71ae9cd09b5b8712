"""Zero tables on disk: float64 .npy + JSON sidecar, reading text tables, and their validation.

A zeros file `X.npy` holds gamma_start .. gamma_{start+count-1} (float64, the ordinates of the
zeros 1/2 + i gamma_n); `X.json` next to it says how they were obtained (method, start, count,
gamma range, checks passed, wall time, versions) and the sha256 of the .npy bytes.
"""
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from seqlab.core.errors import UserError
from seqlab.zeta.riemann_siegel import theta

FIRST_ZERO = 14.134725141734693  # gamma_1
WINDOW = 50  # ordinates per window of the count check
COUNT_SLACK = 3.0  # |S(t)| stays far below this for t < 1e10 (max |S| seen there is about 3.3 at 1e22)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar_path(path):
    return Path(path).with_suffix(".json")


def read_table(path):
    """Ordinates from a text table (one per line, e.g. Odlyzko's files) or a .npy file, validated.
    Returns (gamma float64 array, inferred index of the first zero)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p} does not exist")
    if p.suffix == ".npy":
        try:
            g = np.load(p, allow_pickle=False)
        except Exception as e:
            raise UserError(f"{p} cannot be read as .npy ({type(e).__name__})") from None
        if g.ndim != 1 or g.size == 0 or not np.issubdtype(g.dtype, np.number):
            raise UserError(f"{p} must hold a non-empty 1-D numeric array, got shape {g.shape} dtype {g.dtype}")
        g = g.astype(np.float64)
        where = "entry"
        base = 0
    else:
        vals = []
        with open(p, "r", encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                text = line.strip()
                if not text:
                    raise UserError(f"{p} line {i} is blank: expected one ordinate per line")
                try:
                    vals.append(float(text))
                except ValueError:
                    raise UserError(f"{p} line {i}: {text[:40]!r} is not a number") from None
        if not vals:
            raise UserError(f"{p} is empty")
        g = np.array(vals)
        where = "line"
        base = 1
    start = validate_ordinates(g, f"{p} {where}", base)
    return g, start


def validate_ordinates(g, where="entry", base=0):
    """Check that g could be consecutive zeta-zero ordinates; return the index n of g[0].

    Finite, >= gamma_1, strictly increasing, and the count plausible: by the Riemann-von Mangoldt
    formula zero n sits where theta(t)/pi + 1 ~ n - 1/2 (the difference, -S(t), is a few units at
    most), so every ordinate's position must agree with its predicted index within COUNT_SLACK.
    Errors name the first bad entry as `{where} {i + base}`."""
    g = np.asarray(g, dtype=np.float64)
    bad = ~np.isfinite(g)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{where} {i + base}: {g[i]} is not a finite number")
    bad = g <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{where} {i + base}: {g[i]} is not positive (ordinates gamma_n > 0)")
    bad = g < FIRST_ZERO - 1e-6
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{where} {i + base}: {g[i]} is below the first zeta zero {FIRST_ZERO:.6f}")
    dec = np.diff(g) <= 0
    if dec.any():
        i = int(np.argmax(dec)) + 1
        raise UserError(f"{where} {i + base}: {float(g[i])!r} is not greater than the previous ordinate {float(g[i - 1])!r} "
                        "(the table must be strictly increasing)")
    predicted = theta(g) / math.pi + 1.5  # ~ index of each ordinate, up to -S(t)
    offset = predicted - np.arange(len(g))
    W = min(WINDOW, len(g))
    start = int(round(float(np.mean(offset[:W]))))  # the table's first ordinates fix its first index
    bad = np.abs(offset - start) > COUNT_SLACK
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{where} {i + base}: {float(g[i])!r} is zero number ~{predicted[i]:.1f} by the Riemann-von Mangoldt "
                        f"formula, but its position makes it number {start + i}: zeros are missing or duplicated "
                        "before it")
    # S(t) averages out over a few dozen zeros (|mean over 50| < 0.05 for the first 2M zeros), so a
    # single missing or extra ordinate shows as a shift of the window mean by up to 1
    c = np.concatenate([[0.0], np.cumsum(offset - start)])
    drift = (c[W:] - c[:-W]) / W
    bad = np.abs(drift) > 0.3
    if bad.any():
        i0 = int(np.argmax(bad))
        lo, hi = max(i0 - W, 0), min(i0 + 2 * W, len(g))
        i, missing = _locate_count_error(g, start, lo, hi)
        what = "a zero is missing before it" if missing else "it is not a zeta zero (extra or duplicated)"
        raise UserError(f"{where} {i + base}: {float(g[i])!r}: the count of ordinates disagrees with the Riemann-von "
                        f"Mangoldt formula here; {what}")
    return max(start, 1)


def _locate_count_error(g, start, lo, hi):
    """(first index i in [lo, hi) where g departs from the true zeros start+lo.., whether a zero is
    missing there): the true zeros of the window are computed with seqlab.zeta.zeros and compared in
    unfolded units (tolerance 0.1 mean spacings)."""
    from seqlab.zeta import zeros as zeta
    n0 = start + lo
    if n0 < 1:
        return lo, True
    ref, _ = zeta.compute_zeros(n0, hi - lo)
    x, xr = theta(g[lo:hi]) / math.pi, theta(ref) / math.pi
    off = np.abs(x - xr) > 0.1
    j = int(np.argmax(off)) if off.any() else 0
    return lo + j, bool(x[j] > xr[j])


def save_zeros(path, gamma, info, overwrite=False):
    """Write gamma (float64) to path (.npy) atomically, then the JSON sidecar with info + sha256."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(gamma, dtype=np.float64))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    info = dict(info, file=path.name, sha256=sha256(path), dtype="float64", count=int(len(gamma)),
                gamma_min=float(gamma[0]), gamma_max=float(gamma[-1]))
    sidecar_path(path).write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_zeros(path, need_start=1, need_count=None):
    """(gamma, info) from a zeros .npy with its sidecar, or None unless it is complete and intact:
    the sidecar exists, its sha256 matches, and it covers zeros need_start .. need_start+need_count-1.
    Returns only that range."""
    path = Path(path)
    side = sidecar_path(path)
    if not (path.is_file() and side.is_file()):
        return None
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    start, count = info.get("start"), info.get("count")
    if not isinstance(start, int) or not isinstance(count, int) or info.get("sha256") != sha256(path):
        return None
    need_count = count - (need_start - start) if need_count is None else need_count
    if need_start < start or need_start + need_count > start + count or need_count < 1:
        return None
    g = np.load(path, allow_pickle=False)
    return g[need_start - start: need_start - start + need_count], info
