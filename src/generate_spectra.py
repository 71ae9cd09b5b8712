"""Generate spacings from an MDN checkpoint and compare their statistics with the data, GUE, Wigner
i.i.d. and AR chains.

    python src/generate_spectra.py --ckpt checkpoints/E0_count32_cpu8k_best.pt \
        --data-dir data/continuous_2M --output-dir results/E0_count32_cpu8k --n 20000

The model generates --n spacings in --chains chains, one spacing at a time, each chain from a real
val context (evenly spaced over val) with a sliding window of the model's context. Sources, each
cut into blocks of --block spacings: model (the chains), data (the val stream in rows of the chains'
length), gue (numpy GUE matrices unfolded by the semicircle, central half), wigner_iid (i.i.d.
surmise draws), ar (a Gaussian AR(--ar-order) fitted on the last --ar-tail train spacings, the
heights nearest val, run free from the same contexts). Statistics (definitions in
src/seqlab/zeta/sequence_stats.py): nearest-neighbour density, R2 against 1 - (sin pi r/pi r)^2,
Sigma^2(L) to L = 50, the form factor, lag-k autocorrelations, raw mean/std/lag-1 by position
along the chains, the mean periodogram with the prime lines f_p = log p / log(T/2pi) at the
contexts' mean height; distances of each source to the data with bootstrap errors.
Writes spectra.json (keys: sources {model, data, gue, wigner_iid, ar}, distances, references,
height) and spectra.png. --sigma-scale and --feedback change the generation only (drift probes).
"""
import json
import time
from pathlib import Path

import numpy as np
import torch

from seqlab.core import checkpoint, cli, paths
from seqlab.core.errors import UserError
from seqlab.mdn import baselines, evaluate as mdn_eval, generate, heights
from seqlab.mdn.task import FAMILIES
from seqlab.zeta import rmt, spacings as spacing_data


def build_parser():
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="an E0 (mdn) checkpoint")
    p.add_argument("--data-dir", default=None, help="spacing dataset (default: the one the run trained on)")
    p.add_argument("--output-dir", default=None, help="where spectra.json / spectra.png go (default: print only)")
    p.add_argument("--n", type=cli.positive_int, default=20000, help="spacings generated in all")
    p.add_argument("--chains", type=cli.positive_int, default=8, help="independent chains (each --n / --chains long)")
    p.add_argument("--block", type=cli.positive_int, default=512, help="spacings per block of the statistics")
    p.add_argument("--ar-order", type=cli.positive_int, default=64)
    p.add_argument("--ar-tail", type=cli.positive_int, default=256000, help="AR fitted on the last N train spacings")
    p.add_argument("--n-boot", type=cli.positive_int, default=200)
    p.add_argument("--sigma-scale", type=cli.positive_float, default=1.0,
                   help="generation only: multiply every component sigma (a temperature on the spread)")
    p.add_argument("--feedback", choices=["sample", "mean"], default="sample",
                   help="generation only: feed back a draw (default) or the mixture mean")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    return p


def heights_of_val(meta, n_train_spacings, n_val):
    """Height T of each val spacing's lower zero (smooth count inverted; seqlab.zeta.spacings)."""
    first = int(meta.get("first_zero", 1)) + n_train_spacings
    return spacing_data.height_of_count(first + np.arange(n_val))


def main(argv=None):
    args = build_parser().parse_args(argv)
    model, ckpt, data_dir = checkpoint.open_for_eval(args.ckpt, FAMILIES, args.device, args.data_dir)
    if ckpt["family"] != "mdn":
        raise UserError(f"{args.ckpt} is a '{ckpt['family']}' checkpoint: generate_spectra runs E0 (mdn) models, "
                        "which predict at every position")
    val = spacing_data.load_split(data_dir, "val").flatten().numpy().astype(np.float64)
    train = spacing_data.load_split(data_dir, "train").flatten().numpy().astype(np.float64)
    meta = spacing_data.load_meta(data_dir)
    n_steps = args.n // args.chains
    if n_steps < args.block:
        raise UserError(f"--n {args.n} / --chains {args.chains} = {n_steps} spacings per chain, fewer than one "
                        f"--block {args.block}")
    ctx = model.config.context
    if len(val) < n_steps + ctx:
        raise UserError(f"val holds {len(val)} spacings, fewer than a context ({ctx}) + one chain ({n_steps})")
    torch.manual_seed(args.seed)
    contexts, starts = generate.val_contexts(val, args.chains, ctx)
    height = float(np.mean(heights_of_val(meta, len(train), len(val))[starts]))
    model, _ = heights.readable(model, meta, starts)      # a height-aware model: at the contexts' height
    t0 = time.time()
    stepper = generate.sampler(mdn_eval.model_stepper(model), args.sigma_scale, args.feedback)
    chains = generate.free_run(stepper, contexts, n_steps, args.seed)
    t_gen = time.time() - t0
    ar = baselines.GaussianAR(train[-args.ar_tail:], args.ar_order)
    rng = np.random.default_rng(args.seed)
    n_data_rows = len(val) // n_steps
    sources = {"model": chains,
               "data": val[: n_data_rows * n_steps].reshape(n_data_rows, n_steps),
               "gue": generate.gue_blocks(args.n, args.block, args.seed),
               "wigner_iid": rmt.wigner_sample(args.chains * n_steps, rng).reshape(args.chains, n_steps),
               "ar": generate.ar_chains(ar, contexts, n_steps, args.seed)}
    report = generate.compare(sources, height, args.block, args.n_boot, args.seed)
    report.update({"ckpt": paths.shown(args.ckpt), "step": ckpt["step"], "data_dir": paths.shown(data_dir),
                   "n_chains": args.chains, "chain_length": n_steps, "context": ctx, "ar_order": args.ar_order,
                   "ar_tail": args.ar_tail, "generation_s": round(t_gen, 1), "seed": args.seed,
                   "sigma_scale": args.sigma_scale, "feedback": args.feedback})
    print_summary(report)
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "spectra.json").write_text(json.dumps(report, indent=1))
        title = (f"{paths.shown(args.ckpt)} step {ckpt['step']}: {args.chains} chains x {n_steps} free-running spacings "
                 f"from val contexts (T ~ {height:.3g}) vs data, GUE, Wigner i.i.d., AR({args.ar_order})")
        generate.plot(report, out / "spectra.png", title)
        print(f"wrote {out / 'spectra.json'}, {out / 'spectra.png'}")
    return report


def print_summary(r):
    print(f"{r['n_chains']} chains x {r['chain_length']} spacings generated in {r['generation_s']} s; "
          f"prime lines at T = {r['height']:.4g}")
    for name, src in r["sources"].items():
        m = src["moments"]
        seg = "  ".join(f"[{k}] {v['mean']:.3f}/{v['std']:.3f}/{v['lag1']:+.3f}" for k, v in m.items() if k != "all")
        lines = "  ".join(f"p={row['p']}: {row['f_meas']:.4f} ({row['peak_over_median']:.1f}x)" for row in src["prime_lines"]
                          if row["f_meas"] is not None) or "(rows too short to resolve)"
        a = m["all"]
        print(f"{name:>10}: mean/std/lag1 {a['mean']:.3f}/{a['std']:.3f}/{a['lag1']:+.3f} | by position {seg} | "
              f"count excursion (32) {src['count_excursion_32']:.2f}")
        print(f"{'':>10}  prime lines {lines}")
    for name, d in r["distances"].items():
        print(f"{name:>10} vs data: " + "  ".join(f"{k} {v['value']:.4f}+-{v['boot_std']:.4f}" for k, v in d.items()))


if __name__ == "__main__":
    cli.run(main)
