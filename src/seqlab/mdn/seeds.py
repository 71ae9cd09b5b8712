"""--ckpt-glob for the diagnose scripts: run one diagnosis per matched checkpoint (seeds of a run),
then report the mean +- std of each numeric summary value over them."""
import glob
import json
from pathlib import Path

import numpy as np

from seqlab.core.errors import UserError


def split_glob(argv):
    """(pattern or None, argv without --ckpt-glob PATTERN)."""
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--ckpt-glob":
            if i + 1 >= len(argv):
                raise UserError("--ckpt-glob needs a pattern, e.g. 'out/E5_seed*/best.pt'")
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if a.startswith("--ckpt-glob="):
            return a.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return None, argv


def across(rows):
    """{key: {"mean", "std", "n"}} over rows' "summary" {key: {"value"}} entries that are numbers
    (std is the population std over checkpoints; N/A values are left out and counted by n)."""
    keys = sorted({k for r in rows for k in r["summary"]})
    out = {}
    for k in keys:
        v = [r["summary"][k]["value"] for r in rows if k in r["summary"]]
        v = [float(x) for x in v if isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)]
        if v:
            out[k] = {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}
    return out


def over_checkpoints(argv, run_one, stem):
    """run_one(argv) as usual; with --ckpt-glob PATTERN, run_one(argv + --ckpt path) for each match,
    print mean +- std over them and write <output-dir>/<stem>_seeds.json (each checkpoint's row is also
    appended to <stem>.jsonl by run_one; its PNG is the last checkpoint's)."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    pattern, rest = split_glob(argv)
    if pattern is None:
        return run_one(rest)
    if "--ckpt" in rest:
        raise UserError("give --ckpt or --ckpt-glob, not both")
    paths_ = sorted(glob.glob(pattern))
    if not paths_:
        raise UserError(f"--ckpt-glob {pattern!r} matches no file")
    rows = [run_one(rest + ["--ckpt", p]) for p in paths_]
    agg = {"pattern": pattern, "checkpoints": [r["ckpt"] for r in rows], "across": across(rows)}
    print(f"over {len(rows)} checkpoints ({pattern}): " + "  ".join(
        f"{k} {v['mean']:.4g}+-{v['std']:.2g}" for k, v in agg["across"].items()))
    if "--output-dir" in rest:
        out = Path(rest[rest.index("--output-dir") + 1])
        (out / f"{stem}_seeds.json").write_text(json.dumps(agg, indent=1))
    return agg
