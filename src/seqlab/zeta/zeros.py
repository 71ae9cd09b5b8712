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
Beyond n = 13,999,526 Rosser's rule is unproven: there Turing's method (turing.py) proves the count
between two Gram points and blocks may break Rosser's rule. Z itself is in riemann_siegel.py. Work is
split into chunks of Gram indices run by a process pool.
"""
import math
import multiprocessing as mp_
import os

import numpy as np

from seqlab.zeta import turing
from seqlab.zeta.riemann_siegel import ZChunk, theta
from seqlab.zeta.roots import REFINE_TOL, ZetaError, gram_approx, illinois as _illinois, sign_changes as _sign_changes  # noqa: F401

RS_FROM = 500  # zeros n >= RS_FROM by Riemann-Siegel, below by python-flint
ROSSER_LIMIT = 13_999_526  # Rosser's rule is proven for n up to here
MAX_HALVINGS = 16  # a Gram interval is split into at most 2^16 pieces
CHUNK_GRAMS = 4096  # Gram intervals per work chunk
_BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MARGIN = 64  # extra Gram points each side of a chunk (Rosser blocks are far shorter)


# --- lowest zeros --------------------------------------------------------------------------------
def flint_zeros(n, count, prec=64):
    """gamma_n .. gamma_{n+count-1} (float64) from python-flint's certified acb.zeta_zeros."""
    from flint import ctx, acb
    old, ctx.prec = ctx.prec, prec
    try:
        return np.array([float(z.imag.mid()) for z in acb.zeta_zeros(n, count)]) if count > 0 else np.zeros(0)
    finally:
        ctx.prec = old


# --- one chunk ------------------------------------------------------------------------------------
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
    """One unit of work: ("flint", start, count), ("rs", k_a, k_b, n_lo, n_hi) (Rosser blocks) or
    ("turing", k_a, k_b, n_lo, n_hi) (Turing's method) -> (n, gamma, stats)."""
    kind, *rest = args
    if kind == "flint":
        return _flint_job(*rest)
    if kind == "turing":
        return turing.chunk_zeros(*rest)
    return chunk_zeros(*rest)


def plan_chunks(n_lo, n_hi, chunk=CHUNK_GRAMS, lead=MARGIN // 2):
    """Work chunks (k_a, k_b, n_lo, n_hi) covering zeros n_lo <= n < n_hi by Riemann-Siegel. `lead`: Gram
    indices before n_lo - 2 where the first chunk starts (Turing's chunks start up to SEARCH later)."""
    k_first = n_lo - 2 - lead  # the block holding zero n_lo starts at some j <= n_lo - 2
    k_last = n_hi - 1  # a block starting at j holds zeros >= j + 2
    edges = list(range(k_first, k_last, chunk)) + [k_last]
    return [(a, b, n_lo, n_hi) for a, b in zip(edges[:-1], edges[1:])]


def make_pool(workers):
    """A spawn pool of `workers` processes with one BLAS thread each (the caller terminates it)."""
    saved = {v: os.environ.get(v) for v in _BLAS_VARS}
    os.environ.update({v: "1" for v in _BLAS_VARS})  # one BLAS thread per worker process
    try:
        return mp_.get_context("spawn").Pool(workers)
    finally:
        for v, old in saved.items():
            os.environ.pop(v) if old is None else os.environ.__setitem__(v, old)


def choose_method(start, count, method="auto"):
    """"rosser" when every zero is within Rosser's proven range (n <= ROSSER_LIMIT), else "turing"."""
    if method not in ("auto", "rosser", "turing"):
        raise ValueError(f"method must be auto, rosser or turing, got {method!r}")
    if method == "auto":
        return "rosser" if start + count - 1 <= ROSSER_LIMIT else "turing"
    if method == "rosser" and start + count - 1 > ROSSER_LIMIT:
        raise ValueError(f"Rosser's rule is proven only for n <= {ROSSER_LIMIT:,}: use Turing's method")
    return method


def compute_zeros(start, count, workers=1, progress=None, method="auto", pool=None):
    """gamma_n for n = start .. start+count-1 (float64 array) and a dict of checks.

    method: "rosser" (Rosser's rule, proven for n <= 13,999,526), "turing" (Turing's method with
    Trudgian's bound, any height: seqlab.zeta.turing) or "auto" (Rosser where it is proven).
    progress: optional callable(n_done) called as chunks finish. pool: a process pool to use (from
    make_pool; left open), else one of `workers` processes is made and closed here."""
    if start < 1 or count < 1:
        raise ValueError("start and count must be >= 1")
    end = start + count
    method = choose_method(start, count, method)
    out = np.full(count, np.nan)
    seen = np.zeros(count, dtype=np.int64)
    checks = {"method": method, "blocks": 0, "bad_gram": 0, "subdivided": 0, "max_halvings": 0}
    if method == "turing":
        checks.update(rosser_exceptions=0, turing_margin_min=math.inf)
    fl_hi = min(end, RS_FROM)
    jobs = [("flint", start, fl_hi - start)] if start < fl_hi else []
    if max(start, RS_FROM) < end:
        lead = turing.SEARCH + 4 if method == "turing" else MARGIN // 2
        kind = "rs" if method == "rosser" else "turing"
        jobs += [(kind, *c) for c in plan_chunks(max(start, RS_FROM), end, lead=lead)]
    own = pool is None and workers > 1 and len(jobs) > 1
    if own:
        pool = make_pool(workers)
    try:
        for n, gam, st in (pool.imap(_job, jobs) if pool else map(_job, jobs)):
            out[n - start] = gam
            np.add.at(seen, n - start, 1)
            for key in ("blocks", "bad_gram", "subdivided", "rosser_exceptions"):
                if key in st:
                    checks[key] += st[key]
            checks["max_halvings"] = max(checks["max_halvings"], st["max_halvings"])
            if "turing_margin_min" in st:
                checks["turing_margin_min"] = min(checks["turing_margin_min"], st["turing_margin_min"])
            if progress:
                progress(len(n))
    finally:
        if own:
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
