"""Sanity report of an unfolded-spacing dataset against random-matrix theory: markdown + one PNG.

Every statistic is computed on the spacings s_n (mean 1) and unfolded positions x_n = cumsum(s):
    histogram        density of s vs the GUE Wigner surmise (32/pi^2) s^2 exp(-4 s^2/pi) and Poisson exp(-s)
    autocorrelation  corr(s_n, s_{n+k}), k = 1..5 (dimensionless), vs a sampled GUE reference
    pair correlation R_2(x) = #{(i<j): x_j - x_i in [x, x+dx)} / (n dx) vs Montgomery 1 - (sin pi x / pi x)^2
    number variance  Sigma^2(L) = Var #{x_n in [a, a+L)} over a grid of a, vs GUE (sine kernel)
    entropy          differential entropy of the spacing marginal, nats (histogram plug-in, bin 0.01),
                     vs the Wigner surmise's closed form gamma_E + ln(pi/2) - 1/2 = 0.52880
"""
import math
from pathlib import Path

import numpy as np

from seqlab.zeta import rmt
from seqlab.zeta.spacings import statistics

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
    lines = [f"# Sanity report: {name}", ""]
    if meta.get("source"):
        lines += [f"Source: {meta['source']}", ""]
    if "gamma_min" in meta:
        lines += [f"Zeros n = 1 .. {meta['n_zeros']:,}, gamma from {meta['gamma_min']:.6f} to {meta['gamma_max']:.6f}; "
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
    (out / "report.md").write_text("\n".join(lines))
    return r
