"""Compute the ordinates gamma_n of the nontrivial zeta zeros n = start .. start+count-1.

    python scripts/prepare_zeros.py                                  # the first 2,001,052 zeros
    python scripts/prepare_zeros.py --start 1000000 --count 5000 --out data/zeros/near_1e6.npy
    python scripts/prepare_zeros.py --from-file zeros1.txt           # validate an existing table

    python scripts/prepare_zeros.py --start 100000000 --count 100000      # at height: Turing's method

Riemann-Siegel Z(t) with C_0..C_4, Gram points and Rosser blocks (every block's sign changes
must equal its length: nothing missed or doubled) up to n = 13,999,526, where Rosser's rule is
proven; beyond, Turing's method with Trudgian's bound proves the count between Gram points (a range
it cannot certify is an error naming it). Illinois refinement to 1e-12 in t - t0, so float64 ordinates
within an ulp or two at any height; the lowest zeros from python-flint; see docs/zeta_zeros.md.
Writes float64 .npy + a JSON sidecar.
"""
import os
import platform
import sys
import time
from pathlib import Path

# the work is parallel over processes: BLAS threads inside each would only contend for the cores
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.core import cli  # noqa: E402
from seqlab.core.errors import UserError  # noqa: E402

N_2M = 2_001_052  # the size of the user's continuous_2M set


def default_out(start, count, folder="data/zeros"):
    return Path(folder) / f"zeros_{start}_{start + count - 1}.npy"


def versions():
    import flint
    import mpmath
    import numpy as np
    return {"python": platform.python_version(), "numpy": np.__version__, "python-flint": flint.__version__,
            "mpmath": mpmath.__version__}


def compute(start, count, workers, out, overwrite=False, quiet=False):
    """Compute zeros start..start+count-1 into out (.npy + .json); returns the sidecar dict."""
    from tqdm import tqdm

    from seqlab.zeta import zeros as zeta, files as zeta_io
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    t = time.time()
    with tqdm(total=count, unit="zero", unit_scale=True, disable=quiet, desc="zeta zeros") as bar:
        gamma, checks = zeta.compute_zeros(start, count, workers=workers, progress=bar.update)
    wall = time.time() - t
    count_by = ("rosser blocks" if checks["method"] == "rosser" else
                "turing's method (trudgian 2011 bound on the integral of S(t))")
    info = {"method": f"riemann-siegel C0..C4 + gram points + {count_by} + illinois refinement; "
                      f"zeros n < {zeta.RS_FROM} from python-flint acb.zeta_zeros",
            "start": start, "checks": checks, "wall_s": round(wall, 2), "workers": workers,
            "refine_tol_t": zeta.REFINE_TOL, "versions": versions()}
    return zeta_io.save_zeros(out, gamma, info, overwrite=overwrite)


def from_file(path, out, overwrite=False):
    from seqlab.zeta import files as zeta_io
    t = time.time()
    gamma, start = zeta_io.read_table(path)
    info = {"method": "from-file", "source": str(path), "source_sha256": zeta_io.sha256(path), "start": start,
            "checks": {"finite": True, "strictly_increasing": True, "count_vs_riemann_von_mangoldt": True},
            "wall_s": round(time.time() - t, 2), "versions": versions()}
    return zeta_io.save_zeros(out, gamma, info, overwrite=overwrite)


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=cli.positive_int, default=1, help="index n of the first zero (1 = 14.1347...)")
    p.add_argument("--count", type=cli.positive_int, default=N_2M, help="number of zeros")
    p.add_argument("--workers", type=cli.positive_int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--out", default=None, help="output .npy (default data/zeros/zeros_<first>_<last>.npy)")
    p.add_argument("--from-file", default=None, metavar="PATH",
                   help="read and validate an existing table (text, one ordinate per line, or .npy) instead")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.from_file:
        out = Path(args.out or Path("data/zeros") / (Path(args.from_file).stem + ".npy"))
        if out.suffix != ".npy":
            raise UserError(f"--out must end in .npy, got {out}")
        info = from_file(args.from_file, out, args.overwrite)
    else:
        out = Path(args.out or default_out(args.start, args.count))
        if out.suffix != ".npy":
            raise UserError(f"--out must end in .npy, got {out}")
        info = compute(args.start, args.count, args.workers, out, args.overwrite, args.quiet)
    rate = f", {info['count'] / max(info['wall_s'], 1e-9):,.0f} zeros/s" if info["method"] != "from-file" else ""
    print(f"zeros n = {info['start']:,} .. {info['start'] + info['count'] - 1:,} "
          f"(gamma {info['gamma_min']:.6f} .. {info['gamma_max']:.6f}) in {info['wall_s']:.1f} s{rate} -> {out}")
    return info


if __name__ == "__main__":
    cli.run(main)
