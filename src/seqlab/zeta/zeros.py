"""Nontrivial zeros 1/2 + i gamma_n of the Riemann zeta function, certifiably complete, vectorised.

Method (Edwards, "Riemann's zeta function", ch. 6-8; Brent 1979; Odlyzko 1987):
  - Gram points g_k: theta(g_k) = k pi. g_k is "good" when (-1)^k Z(g_k) > 0.
  - A Rosser block [g_j, g_k) runs between consecutive good Gram points; it holds zeros
    n = j+2 .. k+1 (so exactly k - j of them): Rosser's rule, true for every n <= 13,999,526.
  - We count the sign changes of Z in each block at its Gram points; a block with fewer than
    k - j is subdivided (each Gram interval halved, again and again) until the count is exactly
    k - j; no count, or more sign changes than k - j, raises ZetaError. So no zero is missed
    or counted twice, even in close pairs.
  - Each sign change is refined by the Illinois method (regula falsi that halves the stale end)
    to a bracket narrower than REFINE_TOL.
  - Zeros n < RS_FROM come from python-flint's certified acb.zeta_zeros: below t ~ 800 the
    Riemann-Siegel remainder C_0..C_4 is too coarse for 1e-10.
Z itself is in zeta_rs.py. Work is split into chunks of Gram indices run by a process pool.
"""
import math
import multiprocessing as mp_
import os

import numpy as np

from seqlab.zeta.riemann_siegel import ZChunk, theta, theta_prime

RS_FROM = 500  # zeros n >= RS_FROM by Riemann-Siegel, below by python-flint
ROSSER_LIMIT = 13_999_526  # Rosser's rule is proven for n up to here
REFINE_TOL = 1e-12  # bracket width in t at which a root counts as refined
MAX_HALVINGS = 16  # a Gram interval is split into at most 2^16 pieces
CHUNK_GRAMS = 4096  # Gram intervals per work chunk
_BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MARGIN = 64  # extra Gram points each side of a chunk (Rosser blocks are far shorter)


class ZetaError(RuntimeError):
    """A Rosser block could not be resolved (would mean a bug, a precision loss, or a failure of RH)."""


# --- lowest zeros --------------------------------------------------------------------------------
def flint_zeros(n, count, prec=64):
    """gamma_n .. gamma_{n+count-1} (float64) from python-flint's certified acb.zeta_zeros."""
    from flint import ctx, acb
    old, ctx.prec = ctx.prec, prec
    try:
        return np.array([float(z.imag.mid()) for z in acb.zeta_zeros(n, count)]) if count > 0 else np.zeros(0)
    finally:
        ctx.prec = old


# --- Gram points -----------------------------------------------------------------------------------
def gram_approx(k):
    """g_k in float64 (accurate to ~1e-9 at k ~ 2e6; used only to place chunk bases), k >= 0.
    theta is convex for t > 7, so Newton from a start to the right of the root converges."""
    k = np.asarray(k, dtype=np.float64)
    t = 2 * math.pi * math.e * (k + 10)
    for _ in range(60):
        t = t - (theta(t) - k * math.pi) / theta_prime(t)
    return t


# --- one chunk ------------------------------------------------------------------------------------
def _illinois(zc, a, b, fa, fb, tol=REFINE_TOL, max_iter=200):
    """Roots of Z in brackets [a, b] (arrays, fa fb < 0): the Illinois variant of regula falsi."""
    a, b, fa, fb = a.copy(), b.copy(), fa.copy(), fb.copy()
    side = np.zeros(len(a), dtype=np.int8)  # which end was kept last time (-1 a, +1 b)
    active = np.abs(b - a) > tol
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        A, Bv, FA, FB = a[idx], b[idx], fa[idx], fb[idx]
        c = Bv - FB * (Bv - A) / (FB - FA)
        c = np.where((c > A) & (c < Bv), c, 0.5 * (A + Bv))  # guard against round-off
        fc = zc.z(c)
        left = np.sign(fc) == np.sign(FA)  # root in [c, b]: replace a
        exact = fc == 0
        # Illinois: when the same end survives twice, halve its function value
        keep_b = left & (side[idx] == 1)
        keep_a = ~left & (side[idx] == -1)
        fb[idx] = np.where(keep_b, FB / 2, FB)
        fa[idx] = np.where(keep_a, FA / 2, FA)
        a[idx] = np.where(left, c, A)
        fa[idx] = np.where(left, fc, fa[idx])
        b[idx] = np.where(~left, c, Bv)
        fb[idx] = np.where(~left, fc, fb[idx])
        side[idx] = np.where(left, 1, -1)
        a[idx[exact]] = b[idx[exact]] = c[exact]
        active[idx] = np.abs(b[idx] - a[idx]) > tol
    else:
        raise ZetaError(f"root refinement did not converge for {int(active.sum())} brackets")
    with np.errstate(invalid="ignore", divide="ignore"):
        root = b - fb * (b - a) / (fb - fa)
    return np.where(np.isfinite(root) & (root >= a) & (root <= b), root, 0.5 * (a + b))


def _sign_changes(zc, h_left, h_right, halvings):
    """Evaluate Z on 2^halvings equal pieces of each interval; return (counts, brackets)."""
    p = 2**halvings
    frac = np.arange(p + 1) / p
    x = h_left[:, None] + (h_right - h_left)[:, None] * frac[None, :]  # (I, p+1)
    f = zc.z(x.ravel()).reshape(x.shape)
    ch = np.signbit(f[:, 1:]) != np.signbit(f[:, :-1])
    r, c = np.nonzero(ch)
    return ch.sum(axis=1), (r, x[r, c], x[r, c + 1], f[r, c], f[r, c + 1])


def chunk_zeros(k_a, k_b, n_lo, n_hi):
    """Zeros in the Rosser blocks whose left good Gram point j has k_a <= j < k_b, keeping those
    with index n_lo <= n < n_hi. Returns (n, gamma) arrays and a dict of counts."""
    ks = np.arange(k_a - MARGIN, k_b + MARGIN + 1)
    t0 = float(np.floor(gram_approx(ks[0]) - 1.0))
    zc = ZChunk(t0)
    g = zc.gram(ks)
    zc.cover(g[0] - 0.5, g[-1] + 0.5)
    zg = zc.z(g)
    good = np.flatnonzero(np.where(ks % 2 == 0, zg, -zg) > 0)
    gk = ks[good]
    own = np.flatnonzero((gk >= k_a) & (gk < k_b))
    if own.size == 0 or own[-1] + 1 >= len(gk):
        raise ZetaError(f"no good Gram point bracket around Gram indices {k_a}..{k_b}: widen MARGIN")
    j_idx, k_idx = good[own], good[own + 1]  # positions in ks of each block's ends
    length = k_idx - j_idx
    # sign changes between consecutive Gram points, summed per block
    sc = np.signbit(zg[1:]) != np.signbit(zg[:-1])
    cs = np.concatenate([[0], np.cumsum(sc)])
    count = cs[k_idx] - cs[j_idx]
    if (count > length).any():
        b = int(np.argmax(count > length))
        raise ZetaError(f"Rosser block g_{ks[j_idx[b]]}..g_{ks[k_idx[b]]} has {count[b]} sign changes, "
                        f"more than its {length[b]} zeros")
    # block of each Gram interval [g_i, g_{i+1}) (blocks are contiguous: k_idx[b] == j_idx[b+1]); -1 outside
    pos = np.arange(len(ks))
    block_of = np.where((pos >= j_idx[0]) & (pos < k_idx[-1]), np.searchsorted(j_idx, pos, side="right") - 1, -1)
    ok = count == length
    bracket_parts = []
    ivals = np.flatnonzero(sc & (block_of[:-1] >= 0) & ok[np.maximum(block_of[:-1], 0)])
    bracket_parts.append((block_of[ivals], g[ivals], g[ivals + 1], zg[ivals], zg[ivals + 1]))
    todo = np.flatnonzero(~ok)
    halvings = 0
    while todo.size:
        halvings += 1
        if halvings > MAX_HALVINGS:
            b = todo[0]
            raise ZetaError(f"Rosser block g_{ks[j_idx[b]]}..g_{ks[k_idx[b]]} (t = {t0 + g[j_idx[b]]:.6f}.."
                            f"{t0 + g[k_idx[b]]:.6f}) shows fewer sign changes than its {length[b]} zeros "
                            f"after splitting each Gram interval into 2^{MAX_HALVINGS} pieces")
        iv = np.flatnonzero(np.isin(block_of, todo))  # the Gram intervals of unresolved blocks
        cnt, (r, xa, xb, fa, fb) = _sign_changes(zc, g[iv], g[iv + 1], halvings)
        per_block = np.bincount(block_of[iv], weights=cnt, minlength=len(j_idx)).astype(int)
        if (per_block[todo] > length[todo]).any():
            b = todo[int(np.argmax(per_block[todo] > length[todo]))]
            raise ZetaError(f"Rosser block g_{ks[j_idx[b]]}..g_{ks[k_idx[b]]} has more sign changes than zeros")
        done = todo[per_block[todo] == length[todo]]
        sel = np.isin(block_of[iv[r]], done)
        bracket_parts.append((block_of[iv[r]][sel], xa[sel], xb[sel], fa[sel], fb[sel]))
        todo = todo[per_block[todo] != length[todo]]
    blk, a, b, fa, fb = (np.concatenate(p) for p in zip(*bracket_parts))
    order = np.argsort(a)
    blk, a, b, fa, fb = blk[order], a[order], b[order], fa[order], fb[order]
    # zero index: block (j, k) holds n = j+2 .. k+1 in increasing order
    first = np.searchsorted(blk, np.arange(len(j_idx)))  # blocks are in increasing order of t
    if not (np.diff(blk) >= 0).all():
        raise ZetaError("zeros of consecutive Rosser blocks interleave: precision loss")
    n = ks[j_idx][blk] + 2 + (np.arange(len(blk)) - first[blk])
    keep = (n >= n_lo) & (n < n_hi)
    h = _illinois(zc, a[keep], b[keep], fa[keep], fb[keep])
    stats = {"blocks": int(len(j_idx)), "bad_gram": int(len(ks) - len(good)), "subdivided": int((~ok).sum()),
             "max_halvings": halvings}
    return n[keep], t0 + h, stats


def _flint_job(start, count):
    stats = {"blocks": 0, "bad_gram": 0, "subdivided": 0, "max_halvings": 0}
    return np.arange(start, start + count), flint_zeros(start, count), stats


def _job(args):
    """One unit of work: ("flint", start, count) or ("rs", k_a, k_b, n_lo, n_hi) -> (n, gamma, stats)."""
    kind, *rest = args
    return _flint_job(*rest) if kind == "flint" else chunk_zeros(*rest)


def plan_chunks(n_lo, n_hi, chunk=CHUNK_GRAMS):
    """Work chunks (k_a, k_b, n_lo, n_hi) covering zeros n_lo <= n < n_hi by Riemann-Siegel."""
    k_first = n_lo - 2 - MARGIN // 2  # the block holding zero n_lo starts at some j <= n_lo - 2
    k_last = n_hi - 1  # a block starting at j holds zeros >= j + 2
    edges = list(range(k_first, k_last, chunk)) + [k_last]
    return [(a, b, n_lo, n_hi) for a, b in zip(edges[:-1], edges[1:])]


def compute_zeros(start, count, workers=1, progress=None):
    """gamma_n for n = start .. start+count-1 (float64 array) and a dict of checks.

    progress: optional callable(n_done) called as chunks finish."""
    if start < 1 or count < 1:
        raise ValueError("start and count must be >= 1")
    end = start + count
    if end - 1 > ROSSER_LIMIT:
        raise ValueError(f"Rosser's rule is proven only for n <= {ROSSER_LIMIT:,}")
    out = np.full(count, np.nan)
    seen = np.zeros(count, dtype=np.int64)
    checks = {"blocks": 0, "bad_gram": 0, "subdivided": 0, "max_halvings": 0}
    fl_hi = min(end, RS_FROM)
    jobs = [("flint", start, fl_hi - start)] if start < fl_hi else []
    if max(start, RS_FROM) < end:
        jobs += [("rs", *c) for c in plan_chunks(max(start, RS_FROM), end)]
    pool = None
    if workers > 1 and len(jobs) > 1:
        saved = {v: os.environ.get(v) for v in _BLAS_VARS}
        os.environ.update({v: "1" for v in _BLAS_VARS})  # one BLAS thread per worker process
        try:
            pool = mp_.get_context("spawn").Pool(workers)
        finally:
            for v, old in saved.items():
                os.environ.pop(v) if old is None else os.environ.__setitem__(v, old)
    try:
        for n, gam, st in (pool.imap(_job, jobs) if pool else map(_job, jobs)):
            out[n - start] = gam
            np.add.at(seen, n - start, 1)
            for key in ("blocks", "bad_gram", "subdivided"):
                checks[key] += st[key]
            checks["max_halvings"] = max(checks["max_halvings"], st["max_halvings"])
            if progress:
                progress(len(n))
    finally:
        if pool is not None:
            pool.terminate()
    if (seen != 1).any():
        i = int(np.argmax(seen != 1))
        raise ZetaError(f"zero n = {start + i} was found {seen[i]} times (expected once)")
    if not (np.diff(out) > 0).all():
        i = int(np.argmax(np.diff(out) <= 0))
        raise ZetaError(f"zeros n = {start + i} and {start + i + 1} are not increasing")
    checks.update({"each_index_once": True, "strictly_increasing": True})
    return out, checks


# --- unfolding ------------------------------------------------------------------------------------
def unfold(gamma):
    """x_n = theta(gamma_n)/pi + 1, the smooth part of the zero counting function N(t) (mean gap 1).
    float64; absolute rounding ~1e-16 x_n (use unfolded_spacings for gaps)."""
    return theta(gamma) / math.pi + 1


def unfolded_spacings(gamma):
    """s_n = x_{n+1} - x_n = (theta(gamma_{n+1}) - theta(gamma_n)) / pi, without cancellation."""
    from seqlab.zeta.riemann_siegel import theta_diff
    g = np.asarray(gamma, dtype=np.float64)
    return theta_diff(g[:-1], np.diff(g)) / math.pi
