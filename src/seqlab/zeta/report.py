"""Sanity report of an unfolded-spacing dataset against random-matrix theory: markdown + one PNG.

Every statistic is computed on the spacings s_n (mean 1) and unfolded positions x_n = cumsum(s):
    histogram        density of s vs the GUE Wigner surmise (32/pi^2) s^2 exp(-4 s^2/pi) and Poisson exp(-s)
    autocorrelation  corr(s_n, s_{n+k}), k = 1..5 (dimensionless), vs a sampled GUE reference
    pair correlation R_2(x) = #{(i<j): x_j - x_i in [x, x+dx)} / (n dx) vs Montgomery 1 - (sin pi x / pi x)^2
    number variance  Sigma^2(L) = Var #{x_n in [a, a+L)} over a grid of a, vs GUE (sine kernel)
    entropy          differential entropy of the spacing marginal, nats (histogram plug-in, bin 0.01),
                     vs the Wigner surmise's closed form gamma_E + ln(pi/2) - 1/2 = 0.52880
    prime lines      per block of 2^16 consecutive spacings above T = 1e5 (log T moves < 0.5% in one):
                     the periodogram peak of (s - 1) near f_p = log p / log(T/2pi) cycles per spacing
                     (seqlab.zeta.spectra), p = 2, 3, 4, 5, 7, 8, 9, 11, 13, T the block's mean height
    AR transfer      least-squares AR(p) fitted on height block i, mean Gaussian NLL (nats per spacing)
                     of its one-step forecasts on block j: how local in height the best linear predictor is
Heights: T of the lower zero of each spacing from the smooth count (spacings.height_of_count).
"""
import json
import math
from pathlib import Path

import numpy as np

from seqlab.zeta import rmt, spectra
from seqlab.zeta.spacings import height_of_count, statistics

L_GRID = np.array([0.25, 0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30])


def pair_correlation(s, x_max=3.0, n_bins=120):
    """(bin centres, R_2) from the spacings s: pairs of unfolded points at distance < x_max."""
    x = np.concatenate([[0.0], np.cumsum(np.asarray(s, dtype=np.float64))])
    edges = np.linspace(0, x_max, n_bins + 1)
    counts = np.zeros(n_bins)
    for k in range(1, len(x)):
        d = x[k:] - x[:-k]
        if d.min() >= x_max:
            break
        counts += np.histogram(d, edges)[0]
    return (edges[1:] + edges[:-1]) / 2, counts / (len(x) * (edges[1] - edges[0]))


def number_variance(s, L=L_GRID, n_starts=200_000):
    """Sigma^2(L) for each L: variance of the count of unfolded points in [a, a+L), a on a uniform grid."""
    x = np.concatenate([[0.0], np.cumsum(np.asarray(s, dtype=np.float64))])
    out = []
    for Li in np.atleast_1d(L):
        a = np.linspace(x[0], x[-1] - Li, n_starts)
        c = np.searchsorted(x, a + Li) - np.searchsorted(x, a)
        out.append(float(c.var()))
    return np.array(out)


def marginal_entropy(s, bin_width=0.01):
    """Plug-in differential entropy (nats) of the spacing density from a histogram of bin width 0.01."""
    s = np.asarray(s, dtype=np.float64)
    counts = np.bincount(np.floor(s / bin_width).astype(np.int64))
    p = counts[counts > 0] / len(s)
    return float(-(p * np.log(p / bin_width)).sum())


def ks_wigner(s, max_points=200_000):
    """Kolmogorov-Smirnov distance sup |F_emp - F_Wigner| (on an evenly thinned sample if large)."""
    s = np.sort(np.asarray(s, dtype=np.float64)[:: max(1, len(s) // max_points)])
    F = rmt.wigner_cdf(s)
    n = len(s)
    return float(max(np.max(np.arange(1, n + 1) / n - F), np.max(F - np.arange(n) / n)))


def compute(s, gue_matrices=100, gue_size=400, seed=0):
    """All report numbers as a dict (see the module docstring for definitions and units)."""
    s = np.asarray(s, dtype=np.float64)
    st = statistics(s)
    gue = rmt.gue_unfolded_spacings(gue_matrices, gue_size, np.random.default_rng(seed))
    g = gue - gue.mean(axis=1, keepdims=True)
    gue_acf = [float((g[:, :-k] * g[:, k:]).mean() / (g * g).mean()) for k in range(1, 6)]
    xc, r2 = pair_correlation(s)
    sel = xc > 0.05
    nv = number_variance(s)
    return {
        "n_spacings": int(len(s)), "mean": st["mean"], "std": st["std"], "min": st["min"], "max": st["max"],
        "autocorr": st["autocorr"], "gue_autocorr": gue_acf,
        "gue_sample": f"{gue_matrices} GUE matrices of size {gue_size}, central half of each spectrum",
        "wigner_std": math.sqrt(3 * math.pi / 8 - 1), "ks_wigner": ks_wigner(s),
        "pair_corr_x": xc, "pair_corr": r2,
        "pair_corr_max_abs_dev": float(np.abs(r2[sel] - rmt.montgomery_pair_correlation(xc[sel])).max()),
        "number_variance_L": L_GRID, "number_variance": nv, "gue_number_variance": rmt.gue_number_variance_exact(L_GRID),
        "entropy": marginal_entropy(s), "wigner_entropy": rmt.WIGNER_ENTROPY,
    }


def prime_blocks(heights, n, block=2 ** 16, n_blocks=6, min_height=1e5):
    """Start indices of n_blocks blocks of `block` spacings spread evenly over the spacings at
    heights >= min_height (over all of them when fewer than one block lies that high)."""
    first = int(np.searchsorted(heights, min_height))
    if n - first < block:
        first = 0
    block = min(block, n - first)
    return np.linspace(first, n - block, n_blocks).astype(int), block


def prime_lines(s, heights, block=2 ** 16, n_blocks=6, min_height=1e5):
    """Rows {block, t_mid, p, f_pred, f_meas, rel_err, peak_over_median} for every block of
    prime_blocks (spectra.prime_line_table on each), and the block starts."""
    starts, block = prime_blocks(heights, len(s), block, n_blocks, min_height)
    rows = []
    for b, i0 in enumerate(starts):
        for row in spectra.prime_line_table(s[i0:i0 + block], heights[i0:i0 + block], block=block, n_blocks=1,
                                            min_height=0.0):
            rows.append(dict(row, block=b))
    return rows, [int(i) for i in starts], block


def ar_transfer(s, heights, n_blocks=12, p=60):
    """AR(p) fitted by least squares on each of n_blocks consecutive equal blocks, scored on every block:
    nll[i][j] = mean of 0.5 log(2 pi v_i) + e^2 / (2 v_i) over block j's one-step errors e of fit i
    (v_i its residual variance on block i), nats per spacing. Returns {"t_mid", "nll", "p", "block_len"}."""
    n = len(s) // n_blocks
    blocks = [np.asarray(s[i * n:(i + 1) * n], dtype=np.float64) for i in range(n_blocks)]
    lagged = lambda x: np.lib.stride_tricks.sliding_window_view(x, p + 1)   # (n - p, p + 1): lags then target
    fits = []
    for x in blocks:
        m = x.mean()
        w = lagged(x - m)
        phi = np.linalg.lstsq(w[:, :p], w[:, p], rcond=None)[0]
        fits.append((m, phi, float(np.mean((w[:, p] - w[:, :p] @ phi) ** 2))))
    nll = np.zeros((n_blocks, n_blocks))
    for j, x in enumerate(blocks):
        for i, (m, phi, v) in enumerate(fits):
            w = lagged(x - m)
            e = w[:, p] - w[:, :p] @ phi
            nll[i, j] = float(np.mean(0.5 * math.log(2 * math.pi * v) + e * e / (2 * v)))
    t_mid = [float(np.mean(heights[i * n:(i + 1) * n])) for i in range(n_blocks)]
    return {"t_mid": t_mid, "nll": nll.tolist(), "p": p, "block_len": n}


def plot_prime_lines(s, starts, block, rows, path, title):
    """One periodogram panel per block (log power against frequency), predicted lines dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = len(starts)
    fig, axes = plt.subplots(k, 1, figsize=(11, 2.3 * k), sharex=True)
    for b, (ax, i0) in enumerate(zip(np.atleast_1d(axes), starts)):
        f, pw = spectra.periodogram(s[i0:i0 + block])
        keep = (f > 0.02) & (f < 0.3)
        ax.semilogy(f[keep], pw[keep], lw=0.4, color="0.3")
        mine = [r for r in rows if r["block"] == b]
        for r in mine:
            ax.axvline(r["f_pred"], color="C3", ls="--", lw=0.7)
            ax.text(r["f_pred"], ax.get_ylim()[1], f" {r['p']}", color="C3", fontsize=7, va="top")
        worst = max(abs(r["rel_err"]) for r in mine if r["p"] in (2, 3, 5, 7))
        ax.set_title(f"block {b}: spacings {i0:,}..{i0 + block - 1:,}, mean T = {mine[0]['t_mid']:.4g}; "
                     f"max |f_meas/f_pred - 1| for p = 2, 3, 5, 7: {worst:.3%}", fontsize=8)
        ax.set_ylabel("power")
    np.atleast_1d(axes)[-1].set_xlabel("frequency (cycles per unfolded spacing); dashed: log p / log(T/2pi)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_transfer(tr, path, title):
    """The AR transfer matrix as an image: row = block fitted on, column = block scored."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nll = np.array(tr["nll"])
    fig, ax = plt.subplots(figsize=(8, 6.5))
    im = ax.imshow(nll, cmap="viridis", vmax=min(nll.max(), 1.0))
    fig.colorbar(im, ax=ax, label="NLL (nats per spacing)")
    ticks = [f"{t:.2g}" for t in tr["t_mid"]]
    ax.set_xticks(range(len(ticks)), ticks, rotation=60, fontsize=7)
    ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    ax.set_xlabel("block scored (mean height T)")
    ax.set_ylabel("block the AR was fitted on (mean height T)")
    for i in range(len(nll)):
        for j in range(len(nll)):
            ax.text(j, i, f"{nll[i, j]:.2f}", ha="center", va="center", fontsize=5, color="w")
    ax.set_title(f"{title}\nleast-squares AR({tr['p']}) on {tr['block_len']:,}-spacing blocks", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot(s, r, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, 2, figsize=(11, 8.5))
    a = ax[0, 0]
    a.hist(s, bins=np.linspace(0, 4, 161), density=True, color="0.75", label=f"data (n={len(s):,})")
    u = np.linspace(0, 4, 400)
    a.plot(u, rmt.wigner_pdf(u), "C3", label="GUE Wigner surmise")
    a.plot(u, rmt.poisson_pdf(u), "C0--", label="Poisson exp(-s)")
    a.set(xlabel="unfolded spacing s", ylabel="density",
          title=f"spacings: entropy {r['entropy']:.4f} nats (Wigner {r['wigner_entropy']:.5f})")
    a.legend()
    a = ax[0, 1]
    k = np.arange(1, 6)
    a.bar(k - 0.2, r["autocorr"], 0.4, label="data")
    a.bar(k + 0.2, r["gue_autocorr"], 0.4, label="GUE sample")
    a.axhline(0, color="k", lw=0.5)
    a.set(xlabel="lag k", ylabel="corr(s_n, s_{n+k})", title="adjacent-spacing correlations")
    a.legend()
    a = ax[1, 0]
    a.plot(r["pair_corr_x"], r["pair_corr"], ".", ms=3, color="0.3", label="data")
    xs = np.linspace(0, 3, 400)
    a.plot(xs, rmt.montgomery_pair_correlation(xs), "C3", label="Montgomery 1-(sin pi x/pi x)^2")
    a.set(xlabel="x (mean spacings)", ylabel="R2(x)", title="pair correlation")
    a.legend()
    a = ax[1, 1]
    Lf = np.linspace(0.05, L_GRID[-1], 300)
    a.plot(r["number_variance_L"], r["number_variance"], "o-", color="0.3", label="data")
    a.plot(Lf, rmt.gue_number_variance_exact(Lf, n_grid=801), "C3", label="GUE (sine kernel)")
    a.plot(Lf, Lf, "C0--", label="Poisson L")
    a.set(xlabel="L", ylabel="Sigma^2(L)", title="number variance", ylim=(0, max(1.5, 1.2 * max(r["number_variance"]))))
    a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(s, out_dir, name, meta=None, gue_matrices=100, notes=()):
    """Write <out_dir>/report.md and spacings.png for dataset `name`; returns the numbers dict.
    notes: extra markdown lines for the end of the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = np.asarray(s, dtype=np.float64)
    r = compute(s, gue_matrices=gue_matrices)
    plot(s, r, out / "spacings.png", f"{name}: {len(s):,} unfolded spacings")
    meta = meta or {}
    heights = height_of_count(int(meta.get("first_zero", 1)) + np.arange(len(s)))
    r["prime_lines"], starts, block = prime_lines(s, heights)
    plot_prime_lines(s, starts, block, r["prime_lines"], out / "prime_lines.png",
                     f"{name}: periodogram of (s - 1) per height block, predicted prime lines dashed")
    r["ar_transfer"] = ar_transfer(s, heights)
    plot_transfer(r["ar_transfer"], out / "ar_transfer.png", f"{name}: AR fitted at one height, scored at another")
    lines = [f"# Sanity report: {name}", ""]
    if meta.get("source"):
        lines += [f"Source: {meta['source']}", ""]
    if "gamma_min" in meta:
        first = int(meta.get("dataset_first_zero", meta.get("first_zero", 1)))  # first_zero: the report's own first
        lines += [f"Zeros n = {first:,} .. {first + meta['n_zeros'] - 1:,}, gamma from {meta['gamma_min']:.6f} to {meta['gamma_max']:.6f}; "
                  "unfolded x_n = theta(gamma_n)/pi + 1, spacings s_n = x_{n+1} - x_n.", ""]
    lines += ["![spacings](spacings.png)", "",
              "| quantity | data | reference |", "| --- | --- | --- |",
              f"| spacings | {r['n_spacings']:,} | |",
              f"| mean | {r['mean']:.6f} | 1 |",
              f"| std | {r['std']:.4f} | Wigner surmise {r['wigner_std']:.4f} |",
              f"| min / max | {r['min']:.4f} / {r['max']:.4f} | |",
              f"| KS distance to the Wigner surmise | {r['ks_wigner']:.4f} | 0 |",
              f"| marginal entropy (nats) | {r['entropy']:.4f} | Wigner surmise {r['wigner_entropy']:.5f} |"]
    for i, (c, gc) in enumerate(zip(r["autocorr"], r["gue_autocorr"]), 1):
        lines.append(f"| autocorrelation lag {i} | {c:+.4f} | GUE sample {gc:+.4f} |")
    lines.append(f"| pair correlation: max abs deviation from Montgomery (0.05 < x < 3) | {r['pair_corr_max_abs_dev']:.4f} | 0 |")
    for L, v, gv in zip(r["number_variance_L"], r["number_variance"], r["gue_number_variance"]):
        lines.append(f"| number variance Sigma^2({L:g}) | {v:.4f} | GUE {gv:.4f} |")
    lines += ["", f"GUE reference: {r['gue_sample']} (sampled, seed 0); GUE number variance: the sine-kernel",
              "formula L - 2 int_0^L (L - x) (sin pi x / pi x)^2 dx. Entropy: histogram plug-in, bin 0.01.", "",
              *notes, ""]
    lines += ["## Prime lines", "", "![prime lines](prime_lines.png)", "",
              f"Periodogram peaks of (s - 1) in blocks of {block:,} consecutive spacings against",
              "f_p = log p / log(T/2pi) at the block's mean height T (the prime-power terms of the explicit formula).", "",
              "| block | mean T | p | f_pred | f_meas | rel. error | peak / median |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {q['block']} | {q['t_mid']:.5g} | {q['p']} | {q['f_pred']:.5f} | {q['f_meas']:.5f} | {q['rel_err']:+.3%} | "
              f"{q['peak_over_median']:.0f} |" for q in r["prime_lines"]]
    tr = r["ar_transfer"]
    nll = np.array(tr["nll"])
    lines += ["", "## Height transfer of linear prediction", "", "![AR transfer](ar_transfer.png)", "",
              f"Least-squares AR({tr['p']}) fitted on one block of {tr['block_len']:,} spacings, NLL on each block.",
              f"Diagonal (own block): {nll.diagonal().min():.3f} .. {nll.diagonal().max():.3f} nats; "
              f"two blocks later: {np.diagonal(nll, 2).min():.3f} .. {np.diagonal(nll, 2).max():.3f}.", ""]
    (out / "report.md").write_text("\n".join(lines))
    keep = ("n_spacings", "mean", "std", "min", "max", "autocorr", "gue_autocorr", "ks_wigner", "entropy",
            "wigner_entropy", "pair_corr_max_abs_dev", "prime_lines", "ar_transfer")
    js = {k: r[k] for k in keep}
    js["number_variance"] = {f"{L:g}": float(v) for L, v in zip(r["number_variance_L"], r["number_variance"])}
    (out / "report.json").write_text(json.dumps(js, indent=1))
    return r
