"""Extract the kernels of an MDN checkpoint: attention by lag, the linear response, their spectra, and
fits to a library of forms.

    python src/extract_kernel.py --ckpt checkpoints/E0_count32_cpu8k_best.pt --data-dir data/continuous_2M \
        --output-dir results/telescope_E0_count32_cpu8k
    python src/extract_kernel.py --ckpt-glob 'out/E0_seed*/best.pt' --output-dir results/E0_seeds   # mean +- std

On --max-windows val windows (evenly spaced over val), for lags d = 0..--max-lag:
- attention kernels of every layer and head: the mean row-centred pre-softmax score and the mean
  post-softmax weight at lag d, with 95% bootstrap bands over windows (seqlab/mdn/attention.py);
- the linear response kernel: the mean gradient of the predicted mean (and of the median) with
  respect to s_{t-d}, with bootstrap bands; beside it the Yule-Walker AR(--ar-order) coefficients
  fitted on the last --ar-tail train spacings (the heights nearest val);
- the spectrum of each kernel (gain |A(f)| and the implied AR spectrum 1/|1 - A(f)|^2) with the
  local maxima nearest the prime lines f_p = log p / log(T/2pi) at the windows' mean height;
- fits of the response kernels and of each head's score kernel to the forms of
  seqlab/mdn/kernel.py (sine kernel, exponential, power law, damped cosine at a free frequency,
  damped cosines at the prime frequencies), fitted on the even windows and ranked by AIC on the odd;
- --symbolic: a symbolic law of the next spacing on the last --symbolic-lags spacings and the count of
  the last 32 (gplearn, seqlab/mdn/symbolic.py), fitted to the true next spacings of the last --ar-tail
  train spacings; its MSE on the val windows' positions beside the linear law's, the model's mean's and 1's.
Writes kernel.json and kernel.png (definitions in src/seqlab/mdn/kernel.py).
"""
import glob
import json
from pathlib import Path

import numpy as np
import torch

from seqlab.core import checkpoint, cli, device, paths
from seqlab.core.errors import UserError
from seqlab.mdn import attention, evaluate as mdn_eval, heights, kernel
from seqlab.mdn.task import FAMILIES
from seqlab.zeta import spacings as spacing_data


def build_parser():
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="an E0 (mdn) checkpoint")
    p.add_argument("--ckpt-glob", default=None, help="several checkpoints (quoted glob): per-checkpoint kernels and mean +- std")
    p.add_argument("--data-dir", default=None, help="spacing dataset (default: the one the run trained on)")
    p.add_argument("--output-dir", default=None, help="where kernel.json / kernel.png go (default: print only)")
    p.add_argument("--max-lag", type=cli.positive_int, default=64)
    p.add_argument("--max-windows", type=cli.positive_int, default=256, help="val windows used (evenly spaced)")
    p.add_argument("--ar-order", type=cli.positive_int, default=64)
    p.add_argument("--ar-tail", type=cli.positive_int, default=256000, help="AR fitted on the last N train spacings")
    p.add_argument("--n-boot", type=cli.positive_int, default=200)
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--symbolic", action="store_true",
                   help="also fit a symbolic law of the next spacing on the last lags and the count (gplearn), to the "
                        "true targets of the last --ar-tail train spacings; held-out MSE beside the linear law and the model")
    p.add_argument("--symbolic-lags", type=cli.positive_int, default=8)
    p.add_argument("--symbolic-population", type=cli.positive_int, default=500)
    p.add_argument("--symbolic-generations", type=cli.positive_int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    return p


SYMBOLIC_COUNT = 32     # the symbolic law's count feature: the last 32 spacings (the count32 models' window)


def band(x, n_boot, seed):
    m, lo, hi = attention.bootstrap_band(x, n_boot, seed=seed)
    return {"mean": m.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def extract(model, wins, height, ar_coef, args):
    """The kernel report of one model on windows wins (N, T+1)."""
    D = args.max_lag
    att = attention.kernels_by_lag(model, wins, D, args.batch_size)
    resp = kernel.response_kernel(model, wins, D, batch_size=args.batch_size)
    n_layer, n_head = att["score"].shape[1:3]
    rep = {"lags": list(range(D + 1)), "height": height, "n_windows": len(wins), "attention": [], "response": {},
           "spectra": {}, "fits": {}}
    for layer in range(n_layer):
        rep["attention"].append([{kind: band(att[kind][:, layer, h], args.n_boot, args.seed) for kind in ("score", "weight")}
                                 for h in range(n_head)])
    for kind in ("mean", "median"):
        rep["response"][kind] = band(resp[kind], args.n_boot, args.seed)
    rep["attention_peaks"] = [{"layer": layer, "head": h, "kind": kind,
                               **dict(zip(("f", "power_share"), kernel.dominant_frequency(att[kind][:, layer, h].mean(0))))}
                              for layer in range(n_layer) for h in range(n_head) for kind in ("score", "weight")]
    curves = {"response_mean": resp["mean"], "response_median": resp["median"]}
    curves.update({f"score_L{layer}H{h}": att["score"][:, layer, h] for layer in range(n_layer) for h in range(n_head)})
    for name, per in curves.items():        # fit on even windows, AIC on odd ones; d = 0 (self) left out
        rep["fits"][name] = kernel.fit_forms(np.arange(D + 1), per[0::2].mean(0), per[1::2].mean(0), height, skip_first=1)
    for name, k in (("response_mean", resp["mean"].mean(0)), ("response_median", resp["median"].mean(0)), ("ar", ar_coef)):
        freqs, gain, implied = kernel.transfer(k)
        rep["spectra"][name] = {"gain_peaks": kernel.spectral_peaks(freqs, gain, height),
                                "implied_peaks": kernel.spectral_peaks(freqs, implied, height),
                                "freqs": freqs[::8].tolist(), "gain": gain[::8].tolist(), "implied": implied[::8].tolist()}
    return rep


def main(argv=None):
    args = build_parser().parse_args(argv)
    if bool(args.ckpt) == bool(args.ckpt_glob):
        raise UserError("give --ckpt or --ckpt-glob (exactly one)")
    ckpts = [args.ckpt] if args.ckpt else sorted(glob.glob(args.ckpt_glob))
    if not ckpts:
        raise UserError(f"--ckpt-glob {args.ckpt_glob!r} matches no file")
    reports, first, law = [], None, None
    for path in ckpts:
        model, ckpt = checkpoint.load_model(path, FAMILIES)
        if ckpt["family"] != "mdn":
            raise UserError(f"{path} is a '{ckpt['family']}' checkpoint: extract_kernel reads E0 (mdn) models")
        model.to(device.pick(args.device))
        if first is None:
            first = ckpt
            data_dir = args.data_dir or ckpt["data_info"]["data_dir"]
            val = spacing_data.load_split(data_dir, "val")
            train = spacing_data.load_split(data_dir, "train").flatten().numpy()
            length = model.config.context + 1
            if args.max_lag >= model.config.context:
                raise UserError(f"--max-lag {args.max_lag} must be below the model context {model.config.context}")
            all_wins = mdn_eval.windows(val, length)
            picked = np.linspace(0, len(all_wins) - 1, min(args.max_windows, len(all_wins))).astype(int)
            wins = all_wins[picked]
            meta = spacing_data.load_meta(data_dir)
            first_val = int(meta.get("first_zero", 1)) + len(train)
            height = float(np.mean(spacing_data.height_of_count(first_val + np.arange(val.numel()))))
            ar_coef = kernel.ar_kernel(train[-args.ar_tail:], args.ar_order)
        model, _ = heights.readable(model, meta, picked * length)   # height-aware: at the windows' height
        torch.manual_seed(args.seed)
        rep = extract(model, wins, height, ar_coef, args)
        rep.update({"ckpt": paths.shown(path), "step": ckpt["step"]})
        reports.append(rep)
        if args.symbolic:
            from seqlab.mdn import symbolic
            if law is None:
                law = symbolic.fit(train[-args.ar_tail:], wins, args.symbolic_lags, SYMBOLIC_COUNT, seed=args.seed,
                                   population=args.symbolic_population, generations=args.symbolic_generations)
            rep["symbolic_model_mse"] = float(symbolic.model_mean_errors(model, wins, args.symbolic_lags,
                                                                         SYMBOLIC_COUNT).mean())
    out = {"data_dir": paths.shown(data_dir), "ar": {"order": args.ar_order, "tail": args.ar_tail,
                                                     "coef": ar_coef.tolist()}, "checkpoints": reports}
    if law is not None:
        out["symbolic"] = law
    if len(reports) > 1:
        out["across_checkpoints"] = across(reports)
    print_summary(out)
    if args.output_dir:
        from seqlab.mdn import kernel_plot
        o = Path(args.output_dir)
        o.mkdir(parents=True, exist_ok=True)
        (o / "kernel.json").write_text(json.dumps(out, indent=1))
        kernel_plot.plot(out, o / "kernel.png", f"{paths.shown(ckpts[0])}{' (+%d more)' % (len(ckpts) - 1) if len(ckpts) > 1 else ''}: "
                         f"{len(wins)} val windows, T ~ {height:.3g}")
        print(f"wrote {o / 'kernel.json'}, {o / 'kernel.png'}")
    return out


def across(reports):
    """Mean and std over checkpoints of the response kernels and the prime-line peak frequencies."""
    out = {}
    for kind in ("mean", "median"):
        k = np.array([r["response"][kind]["mean"] for r in reports])
        out[f"response_{kind}"] = {"mean": k.mean(0).tolist(), "std": k.std(0).tolist()}
    for kind in ("response_mean", "response_median"):
        for p_row in range(len(reports[0]["spectra"][kind]["implied_peaks"])):
            f = np.array([r["spectra"][kind]["implied_peaks"][p_row]["f_meas"] for r in reports])
            p = reports[0]["spectra"][kind]["implied_peaks"][p_row]["p"]
            out[f"{kind}_implied_peak_p{p}"] = {"mean": float(f.mean()), "std": float(f.std())}
    out["n_checkpoints"] = len(reports)
    return out


def print_summary(out):
    for r in out["checkpoints"]:
        print(f"{r['ckpt']} step {r['step']}: {r['n_windows']} windows, T ~ {r['height']:.4g}")
        rm = r["response"]["mean"]["mean"]
        print("  response kernel (mean), d = 0..7: " + " ".join(f"{v:+.3f}" for v in rm[:8]))
        print("  AR coefficients,        d = 0..7: " + " ".join(f"{v:+.3f}" for v in out["ar"]["coef"][:8]))
        for name in ("response_mean", "ar"):
            pk = r["spectra"][name]["implied_peaks"]
            print(f"  {name:>14} implied spectrum, peaks nearest f_p: " +
                  "  ".join(f"p={q['p']}: {q['f_meas']:.4f} ({q['rel_err']:+.1%}, {q['peak_over_median']:.1f}x)" for q in pk))
        print("  attention weight kernels, strongest oscillation (cycles per lag): " + "  ".join(
            f"L{q['layer']}H{q['head']} {q['f']:.4f}" for q in r["attention_peaks"] if q["kind"] == "weight"))
        for name, fits in r["fits"].items():
            if name.startswith("response"):
                print(f"  {name} forms by held-out AIC: " + ", ".join(f"{f['form']} {f['aic']:.1f}" for f in fits))
        if "symbolic_model_mse" in r:
            law = out["symbolic"]
            print(f"  symbolic law (gplearn, fitted to true next spacings): s' - 1 = {law['program']}  "
                  f"[{', '.join(law['features'])}]")
            h = law["heldout_mse"]
            print(f"  held-out MSE on {law['n_heldout']} val positions: symbolic {h['symbolic']:.5f}, linear "
                  f"{h['linear']:.5f}, model mean {r['symbolic_model_mse']:.5f}, constant 1 {h['one']:.5f}")
    if "across_checkpoints" in out:
        print("across checkpoints: " + json.dumps({k: v for k, v in out["across_checkpoints"].items() if "peak" in k}))


if __name__ == "__main__":
    cli.run(main)
