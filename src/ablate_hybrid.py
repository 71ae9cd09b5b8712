"""Component ablation of a hybrid checkpoint: Delta bits/char of switching off each layer and branch.

    python src/ablate_hybrid.py --ckpt checkpoints/H1_passkey_RMRM_best.pt --output-dir results/H1_ablation

Each layer's RWKV time-mix, Mamba, attention or blend branch, each whole layer and all layers of
each kind are switched off in turn (their residual update dropped, their state still carried), on
the same contiguous val tracks streamed chunk by chunk as in training. Delta > 0: the model needs
the component. 95% intervals: bootstrap over (track, chunk) blocks, paired with the full model.
Writes components.json and components.png to --output-dir.
"""
import json
from pathlib import Path

from seqlab.core import checkpoint, cli, paths
from seqlab.hybrid import ablation
from seqlab.text import data as text_data


def plot_components(result, png, title):
    import matplotlib.pyplot as plt
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.4), dpi=120)
    y = range(len(rows))[::-1]
    d = [r["delta_bpc"] for r in rows]
    err = [[r["delta_bpc"] - r["ci95"][0] for r in rows], [r["ci95"][1] - r["delta_bpc"] for r in rows]]
    ax.barh(list(y), d, xerr=err, color=["tab:red" if r["ci95"][0] > 0 else "tab:gray" for r in rows], capsize=3)
    ax.set_yticks(list(y), [r["name"] for r in rows], fontsize=8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("Delta bits/char when switched off (95% bootstrap interval; symlog axis)")
    ax.set_title(f"{title}\nfull model {result['base_bpc']:.3f} bits/char on {result['chars']:,} val chars", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    cli.add_eval_args(p, "prepared text folder (default: the one the run trained on)")
    cli.add_track_args(p)
    p.add_argument("--n-boot", type=cli.positive_int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    model, ckpt, data_dir = checkpoint.open_for_eval(args.ckpt, "hybrid", args.device, args.data_dir)
    val = text_data.load_split(data_dir, "val")
    c = model.config
    res = ablation.ablate(model, val, args.batch_size, c.context, args.eval_chunks,
                          ckpt["train_config"].get("doc_sep", ""), args.n_boot, args.seed)
    print(f"full model: {res['base_bpc']:.4f} bits/char ({res['chars']:,} val chars, {res['blocks']} blocks, layout {c.layout})")
    for r in res["rows"]:
        print(f"  off {r['name']:<28s} {r['delta_bpc']:+.4f} bits/char  [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]")
    res.update({"ckpt": paths.shown(args.ckpt), "data_dir": paths.shown(data_dir), "step": ckpt["step"], "layout": c.layout,
                "n_boot": args.n_boot, "seed": args.seed})
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "components.json").write_text(json.dumps(res, indent=2))
        plot_components(res, out / "components.png", f"{Path(args.ckpt).name} ({c.layout}, step {ckpt['step']})")
        print(f"wrote {out / 'components.json'}, {out / 'components.png'}")
    return res


if __name__ == "__main__":
    cli.run(main)
