"""Benchmark of the zeta-zero engine against python-flint, near n = 1e6 and at heights n ~ 1e8 and 1e9.

    python scripts/bench_zeros.py                      # 1e6 (2,000 zeros), 1e8 and 1e9 (2,000 each): ~1-2 min
    python scripts/bench_zeros.py --heights none       # only the block near n = 1e6 (~30 s)
    python scripts/bench_zeros.py --save               # rewrite the committed results/bench/zeros.json

Ours: seqlab.zeta.zeros.compute_zeros in this process (one core), best of 3 after a warm-up call
(imports, flint's log table up to that height); below n = 13,999,526 by Rosser blocks, above by Turing's
method. Flint: acb.zeta_zeros at 53 bits on the first --flint-count zeros of the block near 1e6 and
--height-flint-count zeros at each height (flint takes ~1 s per zero there), timed in the same run; the
ratio is ours / flint in zeros/s. Accuracy: max |ours - flint at 96 bits| over the first few zeros, in t and
in ulps of float64 at that height. Projection: the wall time of the first 500M zeros and of 500M from
n = 1e8, from our rates (log-log interpolated between the measured heights) on 2, 16 and 64 cores,
assuming one process per core at the measured single-process rate (the chunks are independent), both
from wall time and from the process's CPU time (on a busy shared machine the CPU time says what a
dedicated core would take).
Figures go to out/bench/zeros.json (results/bench/zeros.json, the committed ones, with --save); the last line
printed is a one-line summary.
"""
import argparse
import os
import sys
import time
from pathlib import Path

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core, like each worker of prepare_zeros

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from seqlab.core import bench  # noqa: E402
from seqlab.zeta import zeros as zeta  # noqa: E402

N_2M = 2_001_052
SET_500M = 500_000_000
CORES = (2, 16, 64)


def measure(n, count, flint_count, n96=3, reps=3):
    """One block: our rate (best of reps), flint's rate at 53 bits, max diff against flint at 96 bits."""
    zeta.compute_zeros(n + count, 50)  # warm-up: imports, log tables at this height
    t_ours, c_ours = [], []
    for _ in range(reps):  # best of 3: the machine is shared
        t, c = time.perf_counter(), time.process_time()
        ours, checks = zeta.compute_zeros(n, count)
        t_ours.append(time.perf_counter() - t)
        c_ours.append(time.process_time() - c)
    k = min(flint_count, count)
    t, c = time.perf_counter(), time.process_time()
    ref53 = zeta.flint_zeros(n, k, prec=53)
    t_flint, c_flint = time.perf_counter() - t, time.process_time() - c
    m = min(n96, count)
    ref96 = zeta.flint_zeros(n, m, prec=96)
    d96 = np.abs(ours[:m] - ref96)
    r = {"n": n, "count": count, "gamma": float(ours[0]), "method": checks["method"], "ours_s": min(t_ours),
         "ours_zeros_per_s": count / min(t_ours), "ours_cpu_s": min(c_ours), "ours_zeros_per_cpu_s": count / min(c_ours),
         "flint_count": k, "flint_s": t_flint, "flint_zeros_per_s": k / t_flint, "flint_cpu_s": c_flint, "max_diff_flint53": float(np.abs(ours[:k] - ref53).max()),
         "flint96_count": m, "max_diff_flint96": float(d96.max()),
         "max_diff_flint96_ulps": float((d96 / np.spacing(np.abs(ref96))).max()),
         "ulp_at_gamma": float(np.spacing(ours[0])), "checks": checks}
    r["ratio"] = r["ours_zeros_per_s"] / r["flint_zeros_per_s"]
    print(f"n = {n:,} (t = {ours[0]:.4g}, {checks['method']}): ours {r['ours_zeros_per_s']:,.0f} zeros/s, flint "
          f"{r['flint_zeros_per_s']:,.2f} zeros/s ({k} zeros) = {r['ratio']:,.0f}x; max |ours - flint96| = "
          f"{r['max_diff_flint96']:.2e} = {r['max_diff_flint96_ulps']:.1f} ulps on {m} zeros")
    return r


def projected_seconds(rows, n_lo, n_hi, key="ours_zeros_per_s", steps=2000):
    """One-core seconds for zeros n_lo..n_hi: integral of dn / rate(n), log(rate) linear in log(n) between
    the measured blocks (constant beyond them)."""
    ln = np.log([r["n"] for r in rows])
    lr = np.log([r[key] for r in rows])
    edges = np.geomspace(max(n_lo, 1), n_hi, steps + 1)
    mid = np.sqrt(edges[:-1] * edges[1:])
    rate = np.exp(np.interp(np.log(mid), ln, lr))
    return float(np.sum(np.diff(edges) / rate))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="first zero of the low block")
    p.add_argument("--count", type=int, default=2000, help="zeros in the low block")
    p.add_argument("--flint-count", type=int, default=300, help="zeros of the low block that flint computes")
    p.add_argument("--heights", default="1e8,1e9", help="first zeros of the blocks at height, comma-separated, or none")
    p.add_argument("--height-count", type=int, default=2000, help="zeros in each block at height")
    p.add_argument("--height-flint-count", type=int, default=4, help="zeros of each block at height that flint computes")
    bench.add_save_flag(p)
    args = p.parse_args()
    load0 = os.getloadavg()[0]
    rows = [measure(args.n, args.count, args.flint_count)]
    heights = [] if args.heights.strip().lower() in ("", "none") else [int(float(h)) for h in args.heights.split(",")]
    rows += [measure(n, args.height_count, args.height_flint_count) for n in heights]
    proj = {}
    if len(rows) > 1:
        for name, lo in (("first_500M", 1), ("500M_from_1e8", 100_000_000)):
            for clock, key in (("wall", "ours_zeros_per_s"), ("cpu", "ours_zeros_per_cpu_s")):
                one = projected_seconds(rows, lo, lo + SET_500M - 1, key)
                proj[f"{name}_{clock}"] = {"one_core_s": one, **{f"{c}_cores_s": one / c for c in CORES}}
                print(f"projected {name} from {clock} time: " + ", ".join(f"{c} cores {one / c / 60:,.1f} min" for c in CORES))
    low = rows[0]
    result = {"blocks": rows, "projected_500M": proj, "projected_2M_s": N_2M / low["ours_zeros_per_s"],
              "projected_2M_s_2_workers": N_2M / low["ours_zeros_per_s"] / 2, "cpu_count": os.cpu_count(),
              "load_avg_1min_start": load0, "load_avg_1min": os.getloadavg()[0],
              "note": "one process; flint at 53 bits for its rate, at 96 bits for the differences; projections assume "
                      "one process per core at the single-process rate, from wall time (what this shared machine gave) "
                      "and from CPU time (what a dedicated core would take); the load averages say how busy the "
                      "shared machine was"}
    written = bench.write("zeros", result, args.save)
    top = rows[-1]
    extra = (f"; 500M from 1e8 on 16 cores {proj['500M_from_1e8_wall']['16_cores_s'] / 60:.0f} min (wall), "
             f"{proj['500M_from_1e8_cpu']['16_cores_s'] / 60:.0f} min (cpu)" if proj else "")
    print(f"bench_zeros: ours {low['ours_zeros_per_s']:,.0f} zeros/s at n = {low['n']:,}, {top['ours_zeros_per_s']:,.0f} "
          f"at n = {top['n']:,} ({top['ratio']:,.0f}x flint, {top['max_diff_flint96_ulps']:.0f} ulps){extra} "
          f"(load {result['load_avg_1min']:.1f}) -> {written}")


if __name__ == "__main__":
    main()
