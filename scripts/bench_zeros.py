"""Benchmark of the zeta-zero engine against python-flint on one block near n = 1e6.

    python scripts/bench_zeros.py                      # 2,000 zeros near n = 1e6, by us and by flint (~30 s)
    python scripts/bench_zeros.py --flint-count 300    # flint on the first 300 only (quicker)

Ours: seqlab.zeta.zeros.compute_zeros in this process (one core), timed after a warm-up call (imports,
flint's log table). Flint: acb.zeta_zeros at its default 53-bit precision on the first
--flint-count zeros of the same block. Reports zeros/s for both, their ratio, the max |difference|
on the overlap (t units), and the projected time for all 2,001,052 zeros from our rate near
n = 1e6 (one process; the chunks are independent, so W workers divide it by up to W).
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="first zero of the block")
    p.add_argument("--count", type=int, default=2000, help="zeros in the block")
    bench.add_save_flag(p)
    p.add_argument("--flint-count", type=int, default=2000, help="zeros of the block that flint computes (~20 s per 1,000)")
    args = p.parse_args()
    zeta.compute_zeros(args.n + args.count, 50)  # warm-up: imports, log tables

    reps, t_ours = 3, []
    for _ in range(reps):  # best of 3: the machine is shared
        t = time.perf_counter()
        ours, checks = zeta.compute_zeros(args.n, args.count)
        t_ours.append(time.perf_counter() - t)
    ours_rate = args.count / min(t_ours)
    print(f"ours:  {args.count:,} zeros from n = {args.n:,} in {min(t_ours):.3f} s: {ours_rate:,.0f} zeros/s")

    k = min(args.flint_count, args.count)
    t = time.perf_counter()
    ref = zeta.flint_zeros(args.n, k, prec=53)
    t_flint = time.perf_counter() - t
    flint_rate = k / t_flint
    max_diff = float(np.abs(ours[:k] - ref).max())
    print(f"flint: {k:,} zeros from n = {args.n:,} in {t_flint:.2f} s: {flint_rate:,.1f} zeros/s")
    # flint's 53-bit balls have radius ~2e-10 here; 96 bits on a few zeros separates its rounding from ours
    ref96 = zeta.flint_zeros(args.n, 50, prec=96)
    max_diff_96 = float(np.abs(ours[:50] - ref96).max())
    print(f"max |ours - flint53| = {max_diff:.2e} on {k:,} zeros; max |ours - flint96| = {max_diff_96:.2e} on 50 zeros")
    result = {"n": args.n, "count": args.count, "flint_count": k, "ours_s": min(t_ours), "flint_s": t_flint,
              "ours_zeros_per_s": ours_rate, "flint_zeros_per_s": flint_rate, "ratio": ours_rate / flint_rate,
              "max_diff": max_diff, "max_diff_flint96_first50": max_diff_96, "projected_2M_s": N_2M / ours_rate, "projected_2M_s_2_workers": N_2M / ours_rate / 2,
              "checks": checks, "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
              "note": "one process; flint at 53-bit precision; the load average says how busy the shared machine was"}
    written = bench.write("zeros", result, args.save)
    print(f"bench_zeros: ours {ours_rate:,.0f} zeros/s vs flint {flint_rate:,.1f} zeros/s = {result['ratio']:,.0f}x, "
          f"max diff {max_diff:.1e}, projected 2M {result['projected_2M_s']:.0f} s on one core "
          f"(load {result['load_avg_1min']:.1f}) -> {written}")


if __name__ == "__main__":
    main()
