"""Build a spacing dataset from zeta zeros: zeros -> unfolded spacings -> windows of 256 -> train/val.

    python scripts/prepare_continuous_2M.py                                  # data/continuous_2M from nothing
    python scripts/prepare_continuous_2M.py --n-zeros 50000 --out-dir data/zeta_50k
    python scripts/prepare_continuous_2M.py --zeros zeros1.txt --n-zeros 100000 --out-dir data/odlyzko_100k
    python scripts/prepare_continuous_2M.py --start 100000000 --n-zeros 20000000 --out-dir data/zeta_1e8_20M

x_n = theta(gamma_n)/pi + 1 (the smooth Riemann-von Mangoldt term), s_n = x_{n+1} - x_n (mean 1),
validated (finite, > 0, <= 10), non-overlapping windows of 256, the last int(0.1 * n_windows)
windows are val ("val_tail", the highest ordinates). 2,001,052 zeros give train (7035, 256) and
val (781, 256). The zeros come from --zeros, else from the cache folder (--cache-dir, default
zeros/ beside --out-dir: data/zeros/ for data/<name>) when a valid file covers them, else they
are computed (scripts/prepare_zeros.py) and kept there. --start N begins at zero number N (meta
"first_zero"; past n = 13,999,526 the count is certified by Turing's method). More than --shard-zeros
zeros are computed in shards of that size under <cache-dir>/shards_<first>_<last>/, each written as it
finishes: a killed build run again skips every complete shard (sha256 verified); the windows are then
streamed from the shards, and splits over 256 MB are memory-mapped by the loader. A sanity report (report.md +
spacings.png) goes to --report-dir: by default results/data_<name>/ for a dataset under the
repo's data/, else <out-dir>/report/. Nothing else is written.
"""
import os
import sys
import time
from pathlib import Path

# the work is parallel over processes: BLAS threads inside each would only contend for the cores
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from seqlab.core import cli, paths  # noqa: E402
from seqlab.core.errors import UserError  # noqa: E402

N_2M = 2_001_052


SHARD_ZEROS = 5_000_000  # zeros per shard (40 MB); builds up to this size use one file, as before
REPORT_MAX = 4_000_000  # the sanity report reads at most the last this many spacings


def get_zeros(n, zeros_path, workers, quiet, cache_dir, start=1):
    """(gamma_start..gamma_{start+n-1}, zeros file, its sidecar info), computing and caching them if needed."""
    import prepare_zeros

    from seqlab.zeta import files as zeta_io
    if zeros_path:
        p = Path(zeros_path)
        got = zeta_io.load_zeros(p) if p.suffix == ".npy" else None
        if got is None:
            g, start = zeta_io.read_table(p)
            got = (g, {"method": "from-file", "start": start, "sha256": zeta_io.sha256(p)})
        g, info = got
        if info["start"] != start:
            raise UserError(f"{p} starts at zero n = {info['start']:,}, not at --start {start:,}")
        if len(g) < n:
            raise UserError(f"{p} holds {len(g):,} zeros, fewer than --n-zeros {n:,}")
        return g[:n], p, info
    cands = [prepare_zeros.default_out(start, n, cache_dir)] + ([prepare_zeros.default_out(1, N_2M, cache_dir)] * (start == 1))
    for cand in cands:
        got = zeta_io.load_zeros(cand, need_start=start, need_count=n)
        if got is not None:
            if not quiet:
                print(f"reusing {cand} (sha256 verified)")
            return got[0], cand, got[1]
    out = prepare_zeros.default_out(start, n, cache_dir)
    info = prepare_zeros.compute(start, n, workers, out, overwrite=True, quiet=quiet)
    g = zeta_io.load_zeros(out, need_start=start)[0]
    return g, out, info


def default_report_dir(out):
    """results/data_<name> for a dataset in the repo's data/ (the committed reports), else <out>/report."""
    if out.resolve().parent == paths.REPO_ROOT / "data":
        return paths.REPO_ROOT / "results" / f"data_{out.name}"
    return out / "report"


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-zeros", type=cli.positive_int, default=N_2M,
                   help="use zeros n = start .. start + N - 1 (default 2,001,052; up to 500,000,000 and more)")
    p.add_argument("--start", type=cli.positive_int, default=1, help="index of the first zero (default 1)")
    p.add_argument("--shard-zeros", type=cli.positive_int, default=SHARD_ZEROS,
                   help=f"zeros per shard of a larger build (default {SHARD_ZEROS:,}); smaller builds use one file")
    p.add_argument("--out-dir", default="data/continuous_2M", help="dataset folder (train.pt, val.pt, meta.pt)")
    p.add_argument("--zeros", default=None, metavar="PATH", help="existing zeros table (.npy with sidecar, or text)")
    p.add_argument("--cache-dir", default=None,
                   help="where computed zeros are kept and looked for (default: zeros/ beside --out-dir)")
    p.add_argument("--report-dir", default=None,
                   help="sanity report folder (default results/data_<name> for data/<name> in this repo, else <out-dir>/report)")
    p.add_argument("--no-report", action="store_true", help="skip the sanity report")
    p.add_argument("--workers", type=cli.positive_int, default=os.cpu_count() or 1)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out-dir")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--shuffle", action="store_true",
                   help="control set: permute the spacings within train and within val (same marginal, no correlations)")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    if (out / "meta.pt").exists() and not args.overwrite:
        raise UserError(f"{out} already holds a spacing dataset; pass --overwrite to replace it")
    if args.n_zeros < 10 * 256 + 1:
        raise UserError(f"--n-zeros {args.n_zeros} is too small: 2,561 zeros make the 10 windows of 256 spacings "
                        "that a 90/10 split needs")

    from seqlab.zeta import spacings as spacing_data, report as spacing_report, zeros as zeta
    t = time.time()
    cache = Path(args.cache_dir) if args.cache_dir else out.parent / "zeros"
    if args.n_zeros > args.shard_zeros and not args.zeros:
        if args.shuffle:
            raise UserError(f"--shuffle needs the spacings in memory: use at most --shard-zeros ({args.shard_zeros:,}) zeros")
        meta, s, skip, t_zeros = build_sharded(args, out, cache)
    else:
        gamma, zfile, zinfo = get_zeros(args.n_zeros, args.zeros, args.workers, args.quiet, cache, args.start)
        t_zeros = time.time() - t
        s = zeta.unfolded_spacings(gamma)
        if args.shuffle:  # the control of docs/telescope.md
            from seqlab.zeta.sequence_stats import shuffle_within_splits
            s = shuffle_within_splits(s)
        extra = {"n_zeros": int(len(gamma)), "first_zero": int(zinfo.get("start", args.start)),
                 "gamma_min": float(gamma[0]), "gamma_max": float(gamma[-1]),
                 "unfolding": "x_n = theta(gamma_n)/pi + 1", "zeros_file": paths.shown(zfile),
                 "zeros_sha256": zinfo.get("sha256"), "zeros_method": zinfo.get("method")}
        first = extra["first_zero"]
        source = ("shuffled within each split: " if args.shuffle else "") + f"zeta zeros n = {first:,}..{first + len(gamma) - 1:,} ({zinfo.get('method', '?').split(';')[0]})"
        meta = spacing_data.prepare(s, out, source=source, extra_meta=extra, overwrite=args.overwrite)
        skip = max(0, len(s) - REPORT_MAX)  # the report's statistics hold several float64 copies
        s = s[skip:]
    print(f"{meta['n_zeros']:,} zeros -> {meta['n_spacings']:,} spacings (mean {meta['spacing_mean']:.6f}, "
          f"std {meta['spacing_std']:.4f}, lag-1 autocorr {meta['autocorr'][0]:+.4f}) -> {out}/ "
          f"train ({meta['n_train']}, {meta['seq_len']}) val ({meta['n_val']}, {meta['seq_len']}); "
          f"zeros {t_zeros:.1f} s, total {time.time() - t:.1f} s")
    rmeta = dict(meta, first_zero=meta["first_zero"] + skip, dataset_first_zero=meta["first_zero"])  # the report's first spacing
    if not args.no_report:
        rdir = Path(args.report_dir) if args.report_dir else default_report_dir(out)
        part = [f"Computed on the last {len(s):,} spacings of the {meta['n_spacings']:,} (from zero "
                f"n = {rmeta['first_zero']:,}): the statistics hold several float64 copies.", ""] if skip else []
        r = spacing_report.write_report(s, rdir, out.name, rmeta, notes=part + [
            "Expected: GUE at short range (histogram near the surmise, pair correlation near Montgomery's),",
            "lag-1 correlation near -0.35 at these heights, and a number variance that saturates near",
            "0.35-0.45 at large L (Berry 1988) instead of growing like (ln L)/pi^2."])
        print(f"report -> {paths.shown(rdir)}/report.md: entropy {r['entropy']:.4f} nats (Wigner {r['wigner_entropy']:.4f}), "
              f"KS to Wigner {r['ks_wigner']:.4f}, Sigma^2(10) {r['number_variance'][7]:.3f}")
    return meta


def build_sharded(args, out, cache):
    """Zeros in shards (resumable) -> windows streamed from them -> train/val/meta; returns (meta, the
    last spacings of the windowed stream for the report, how many come before them, seconds spent on zeros)."""
    import numpy as np
    import torch

    import prepare_zeros
    from seqlab.zeta import shards, spacings as spacing_data
    t = time.time()
    first, last = args.start, args.start + args.n_zeros - 1
    sdir = cache / f"shards_{first}_{last}"
    got = shards.build(first, args.n_zeros, sdir, args.shard_zeros, args.workers,
                       info={"method": "seqlab.zeta.zeros (see prepare_zeros.py)", "versions": prepare_zeros.versions()},
                       log=None if args.quiet else print)
    t_zeros = time.time() - t
    n_spacings = args.n_zeros - 1
    train, val, rest = shards.windows(got["paths"], n_spacings, spacing_data.SEQ_LEN, 0.1)
    if len(train) < 1 or len(val) < 1:
        raise UserError(f"{n_spacings} spacings make too few windows for a train/val split")
    st = shards.statistics([train, val, rest])
    g0 = float(np.load(got["paths"][0], mmap_mode="r")[0])
    g1 = float(np.load(got["paths"][-1], mmap_mode="r")[-1])
    side = [paths.shown(p) for p in got["paths"]]
    meta = {"n_zeros": args.n_zeros, "first_zero": first, "gamma_min": g0, "gamma_max": g1,
            "unfolding": "x_n = theta(gamma_n)/pi + 1", "zeros_file": paths.shown(sdir), "zeros_shards": len(side),
            "zeros_sha256": [__import__("json").loads(p.with_suffix(".json").read_text())["sha256"] for p in got["paths"]],
            "zeros_method": "seqlab.zeta.zeros in shards (shards.py)", "n_spacings": n_spacings,
            "spacing_mean": st["mean"], "spacing_std": st["std"], "spacing_min": st["min"], "spacing_max": st["max"],
            "autocorr": st["autocorr"], "seq_len": spacing_data.SEQ_LEN, "n_train": int(len(train)),
            "n_val": int(len(val)), "val_type": "val_tail", "val_fraction": 0.1,
            "source": f"zeta zeros n = {first:,}..{last:,} (riemann-siegel, {args.shard_zeros:,} per shard)",
            "dtype": "float32", "zeros_wall_s": round(t_zeros, 1), "shards_reused": got["reused"]}
    spacing_data.write(out, torch.from_numpy(train), torch.from_numpy(val), meta, overwrite=args.overwrite)
    # the report reads the last REPORT_MAX values of the windowed stream (train then val)
    k = min(REPORT_MAX, train.size + val.size)
    tail = np.concatenate([train.reshape(-1)[train.size - max(0, k - val.size):], val.reshape(-1)[val.size - min(k, val.size):]])
    return meta, tail.astype(np.float64), train.size + val.size - k, t_zeros


if __name__ == "__main__":
    cli.run(main)
