"""Evaluate any SpacingMDN checkpoint (E0, PREFIX, POSTFIX) against the baselines, on one split.

    python src/eval_mdn.py --ckpt checkpoints/E0_best.pt --data-dir data/continuous_2M --output-dir results/E0

Reports per scored spacing, for the model and, on exactly the same (window, position) pairs,
Wigner surmise i.i.d., the train marginal i.i.d., Gaussian AR(p) (p chosen on train), local_ar
(AR fitted on the train tail nearest val; tail length and p chosen on a held-out train tail),
height_ar (zeta sets: a linear predictor whose coefficients move with log(gamma/2pi), least squares
on the train tail, tail and order chosen the same way) and
oracle_local_ar (AR cross-fitted on the two halves of the scored split: it uses val, a ceiling):
NLL (nats), CRPS (spacing units, closed form for the mixture), PIT mean/std (uniform: 0.5,
0.2887) and KS on a thinned sample, central 50/80/95% interval coverage, the mass the
forecast puts on s <= 0. Positions: "all" (E0/PREFIX), ">=k" (context of at least k+1
spacings; k = 32, 64, 128) and "last" (the one POSTFIX scores). The report says which split chose
the checkpoint (selected_on: train_tail or val). Rollouts from a fixed context (the first
window-H spacings of --rollout-windows val windows) at horizons 1, 10, 50, 100, mean and
sampled. Evaluation is deterministic: fixed slot IDs, seeded sampling.

Appends one JSON row to <output-dir>/eval_mdn.jsonl; writes eval_mdn.json (full report),
eval_mdn.png and, when the checkpoint sits in its run folder, val_curve.png (the val curve
against the baselines on the same positions).
"""
import json
from pathlib import Path

import torch

from seqlab.core import checkpoint, cli, paths
from seqlab.mdn import evaluate as mdn_eval, heights
from seqlab.zeta import spacings as spacing_data
from seqlab.core.errors import UserError
from seqlab.mdn.task import FAMILIES
from seqlab.mdn.controls import sigma_report

HORIZONS = (1, 10, 50, 100)


def build_parser():
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="an MDN checkpoint (best.pt / last.pt / checkpoints/E*_best.pt)")
    p.add_argument("--data-dir", default=None, help="spacing dataset (default: the one the run trained on)")
    p.add_argument("--output-dir", default=None, help="where eval_mdn.jsonl / .json / .png go (default: print only)")
    p.add_argument("--split", choices=["val", "train"], default="val")
    p.add_argument("--stride", type=cli.positive_int, default=None,
                   help="offset between scored windows (default: window length = the stored rows)")
    p.add_argument("--max-windows", type=cli.nonneg_int, default=0, help="score only the first N windows (0: all)")
    p.add_argument("--batch-size", type=cli.positive_int, default=64)
    p.add_argument("--min-positions", default="32,64,128", help="k values of the '>=k' position selections")
    p.add_argument("--thin", type=cli.positive_int, default=16, help="KS uses every N-th PIT value")
    p.add_argument("--rollout-windows", type=cli.nonneg_int, default=32, help="windows rolled out (0: no rollouts)")
    p.add_argument("--rollout-samples", type=cli.positive_int, default=4, help="sampled rollouts per window")
    p.add_argument("--eval-slot-id-mode", choices=["fixed", "off"], default=None,
                   help="POSTFIX only: slot IDs at evaluation (default: the checkpoint's, normally fixed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled rollouts")
    p.add_argument("--device", default="cpu")
    return p


def run_rollouts(model, ar, marginal, wins, n_windows, n_samples, seed, heights=None):
    """Rollout curves (horizon 1..100) for the model, AR and the marginal, from the same contexts."""
    H = HORIZONS[-1]
    if wins.size(1) < H + 2:
        return {"skipped": f"windows of {wins.size(1)} spacings are too short for rollouts to horizon {H}"}
    w = wins[:n_windows]
    ctx = wins.size(1) - H
    height = None if heights is None else heights[:n_windows, 0]  # the window's height; it moves < 1e-4 in 256 spacings
    curves = {"model": mdn_eval.rollout(mdn_eval.model_stepper(model, height), w, ctx, H, n_samples, seed),
              "ar": mdn_eval.rollout(mdn_eval.ar_stepper(ar), w, ctx, H, n_samples, seed),
              "marginal_iid": mdn_eval.rollout(mdn_eval.iid_stepper(marginal), w, ctx, H, n_samples, seed)}
    at = {name: {kind: {f"{q}@{h}": c[kind][q][h - 1] for q in ("step_rmse", "cum_rmse") for h in HORIZONS}
                 for kind in c} for name, c in curves.items()}
    drift = {name: mdn_eval.drift_slope(c["sampled"]["cum_rmse"]) for name, c in curves.items()}
    return {"context": ctx, "n_windows": len(w), "n_samples": n_samples, "horizons": at,
            "sampled_drift_slope": drift, "curves": curves}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        min_positions = tuple(int(k) for k in args.min_positions.split(",") if k)
    except ValueError:
        raise UserError(f"--min-positions must be comma-separated integers, got {args.min_positions!r}") from None
    model, ckpt, data_dir = checkpoint.open_for_eval(args.ckpt, FAMILIES, args.device, args.data_dir)
    if args.eval_slot_id_mode:
        if ckpt["family"] != "mdn_postfix":
            raise UserError("--eval-slot-id-mode applies to POSTFIX checkpoints only")
        model.config.eval_slot_id_mode = args.eval_slot_id_mode
    split = spacing_data.load_split(data_dir, args.split)
    train_stream = spacing_data.load_split(data_dir, "train").flatten().numpy()
    length = model.config.context + 1
    wins = mdn_eval.windows(split, length, args.stride)
    if args.max_windows:
        wins = wins[: args.max_windows]
    hts = train_h = None
    if "gamma_min" in spacing_data.load_meta(data_dir):  # a zeta set: heights for height_ar (and +height models)
        hts = heights.split_windows(data_dir, args.split, length, args.stride)[: len(wins)]
        train_h = heights.log_heights(spacing_data.load_meta(data_dir), "train", len(train_stream))
    elif heights.uses_height(model.config):
        raise UserError(f"{data_dir} records no zeros (gamma_min): this model needs their heights")
    torch.manual_seed(args.seed)
    report, fc = mdn_eval.evaluate(model, wins, train_stream, args.batch_size, min_positions, args.thin,
                                   heights=hts if heights.uses_height(model.config) else None,
                                   train_heights=train_h, split_heights=None if hts is None else hts.numpy())
    report["sigma_collapse"] = sigma_report(model, wins, args.batch_size, heights=hts)  # share at the sigma floor, error vs predicted std
    if args.rollout_windows:
        report["rollouts"] = run_rollouts(model, fc["ar"], fc["marginal_iid"], wins, args.rollout_windows,
                                          args.rollout_samples, args.seed, hts)
    m = ckpt["manifest"]
    best = ckpt.get("best") or {}
    # which split chose this checkpoint: sel_nll = the held-out train tail; val_nll = the split reported here
    selected_on = {"sel_nll": "train_tail", "val_nll": "val"}.get(best.get("metric"), best.get("metric"))
    row = {"ckpt": paths.shown(args.ckpt), "family": ckpt["family"], "data_dir": paths.shown(data_dir), "split": args.split,
           "step": ckpt["step"], "selected_on": selected_on, "stride": args.stride or length,
           "positions": report["positions"], "ar_p": report["ar_p"],
           "local_ar": {k: report["local_ar"][k] for k in ("tail", "p")} if "local_ar" in report else None,
           "height_ar": {k: report["height_ar"][k] for k in ("tail", "p")} if "height_ar" in report else None,
           "metrics": report["selections"],
           "rollouts": {k: v for k, v in report.get("rollouts", {}).items() if k != "curves"} or None,
           "run_id": m["run_id"], "git_commit": m["git_commit"], "config_hash": m["config_hash"]}
    print_table(row, report)
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "eval_mdn.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        (out / "eval_mdn.json").write_text(json.dumps({**row, "report": report}, indent=1))
        title = f"{ckpt['family']} step {ckpt['step']} | {args.split} of {paths.shown(data_dir)} | {report['n_windows']} windows of {length}"
        written = [out / "eval_mdn.json", mdn_eval.plot_report(report, out / "eval_mdn.png", title)]
        metrics_file = Path(args.ckpt).parent / "metrics.jsonl"  # the checkpoint sits in its run folder
        if metrics_file.is_file() and mdn_eval.plot_val_curve(metrics_file, report, out / "val_curve.png"):
            written.append(out / "val_curve.png")
        print(f"wrote {out / 'eval_mdn.jsonl'} (appended), " + ", ".join(map(str, written)))
    return row


def print_table(row, report):
    print(f"{row['family']} step {row['step']} (chosen on {row['selected_on']}) | {row['split']} {report['n_windows']} "
          f"windows of {report['window']} | model scores positions {report['positions']} | AR p={report['ar_p']} "
          f"(chosen on train)" + (f" | local AR p={report['local_ar']['p']} on the last {report['local_ar']['tail']:,} "
                                 "train spacings (chosen on a held-out train tail)" if "local_ar" in report else ""))
    cols = ("nll", "crps", "pit_mean", "pit_std", "pit_ks", "coverage_50", "coverage_80", "coverage_95", "mass_below_zero")
    print(f"{'positions':>10} {'forecaster':>16} {'n':>8} " + " ".join(f"{c:>15}" for c in cols))
    for sel, by in report["selections"].items():
        for name, met in by.items():
            label = f"AR({report['ar_p']})" if name == "ar" else name
            print(f"{sel:>10} {label:>16} {met['n_scored']:>8} " + " ".join(f"{met[c]:>15.4f}" for c in cols))
    r = report.get("rollouts", {})
    if "skipped" in r:
        print(f"rollouts skipped: {r['skipped']}")
    elif r:
        print(f"rollouts from a context of {r['context']} spacings, {r['n_windows']} windows x {r['n_samples']} samples "
              f"(RMSE of the position of the h-th next zero, in mean spacings):")
        for name, kinds in r["horizons"].items():
            for kind, vals in kinds.items():
                print(f"  {name:>12} {kind:>7}: " + "  ".join(f"h={h}: {vals[f'cum_rmse@{h}']:.3f}" for h in HORIZONS)
                      + (f" | drift slope {r['sampled_drift_slope'][name]:.3f}" if kind == "sampled" else ""))


if __name__ == "__main__":
    cli.run(main)
