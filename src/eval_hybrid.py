"""Evaluate a hybrid checkpoint: val loss and bits/char, passkey retrieval, state persistence.

    python src/eval_hybrid.py --ckpt out/hybrid_base/best.pt --output-dir results/hybrid_base

Val loss streams contiguous val tracks chunk by chunk with carried state, as in training.
Passkey: a 5-digit key, filler, then the question; accuracy by distance (64..2048 characters).
Persistence: relative change of each layer's state after a one-token perturbation, by distance.
Writes eval.json and persistence.png (and sample.txt) to --output-dir.
"""
from pathlib import Path

from seqlab.core import checkpoint, cli, device, paths, runs
from seqlab.hybrid import probes, streams
from seqlab.text import data as text_data
from seqlab.text.task import sample
from seqlab.core.errors import UserError


def plot_persistence(result, passkey, png, context, trained_up_to=None):
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for name, curve in result["layers"].items():
        a.plot(result["distance"], curve, lw=1.3, label=f"layer {name}")
    if result["layers"]:
        a.set_yscale("log")
        a.legend(fontsize=7, ncol=2)
    else:
        a.text(0.5, 0.5, "no recurrent layers\n(attention state = the chunk itself)", ha="center", va="center",
               transform=a.transAxes)
    a.set_xlabel(f"tokens after the perturbation (position {result['position']})")
    a.set_ylabel("|S' - S| / |S|")
    a.set_title("state persistence")
    a.grid(alpha=0.3)
    b.set_title("passkey retrieval")
    if passkey:
        plot_passkey(b, passkey, context, trained_up_to)
    else:
        b.text(0.5, 0.5, "passkey test skipped (--passkey-trials 0)", ha="center", va="center", transform=b.transAxes)
        b.set_axis_off()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def plot_passkey(ax, passkey, context, trained_up_to):
    d = sorted(passkey)
    ax.plot(d, [passkey[k]["accuracy"] for k in d], "o-", label="key retrieved")
    ax.plot(d, [passkey[k]["digit_accuracy"] for k in d], "s--", label="digits right")
    ax.axhline(0.1, color="gray", lw=0.8, ls=":", label="chance per digit")
    ax.axvline(context, color="tab:red", lw=0.8, ls=":", label=f"chunk = attention window ({context})")
    if trained_up_to:
        ax.axvline(trained_up_to, color="tab:green", lw=0.8, ls="--", label=f"longest --passkey-mix distance ({trained_up_to})")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("distance key -> answer (chars)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data-dir", default=None, help="prepared text folder (default: the one the run trained on)")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--batch-size", type=cli.positive_int, default=8, help="parallel val tracks")
    p.add_argument("--eval-chunks", type=cli.nonneg_int, default=0, help="val chunks per track (0: the whole split)")
    p.add_argument("--passkey-trials", type=cli.nonneg_int, default=20, help="documents per distance (0: skip)")
    p.add_argument("--passkey-distances", default="64,128,256,512,1024,2048")
    p.add_argument("--persistence-horizon", type=cli.positive_int, default=512, help="tokens followed after the perturbation")
    p.add_argument("--max-new-tokens", type=cli.nonneg_int, default=300)
    p.add_argument("--prompt", default="The ")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        distances = tuple(int(d) for d in args.passkey_distances.split(","))
    except ValueError:
        raise UserError(f"--passkey-distances {args.passkey_distances!r}: give comma-separated integers") from None

    model, ckpt = checkpoint.load_model(args.ckpt, "hybrid")
    model.to(device.pick(args.device))
    data_dir = args.data_dir or ckpt["data_info"]["data_dir"]
    val = text_data.load_split(data_dir, "val")
    c = model.config
    doc_sep = ckpt["train_config"].get("doc_sep", "")
    metrics = probes.evaluate_stream(model, val, args.batch_size, c.context, args.eval_chunks, doc_sep)
    print(f"val: loss {metrics['val_loss']:.4f} nats/char | {metrics['val_bpc']:.4f} bits/char | "
          f"{metrics['val_tokens']:,} chars scored (layout {c.layout}, step {ckpt['step']})")
    passkey = probes.passkey_accuracy(model, distances, args.passkey_trials, args.seed) if args.passkey_trials else {}
    for d, r in passkey.items():
        print(f"passkey @ {d:5d} chars: {r['accuracy']:.0%} keys, {r['digit_accuracy']:.0%} digits, {r['key_nll']:.3f} nats/digit")
    persist = probes.state_persistence(model, val, horizon=args.persistence_horizon, seed=args.seed)
    for name, curve in persist["layers"].items():
        print(f"persistence layer {name}: {curve[0]:.3g} right after, {curve[-1]:.3g} at {persist['distance'][-1]} tokens")
    text = sample(model, args.prompt, args.max_new_tokens, seed=args.seed) if args.max_new_tokens else ""
    m = ckpt["manifest"]
    row = {"ckpt": paths.shown(args.ckpt), "data_dir": paths.shown(data_dir), "step": ckpt["step"], "layout": c.layout, **metrics,
           "passkey": {str(k): v for k, v in passkey.items()}, "persistence": persist,
           "run_id": m["run_id"], "git_commit": m["git_commit"], "config_hash": m["config_hash"]}
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        mixed = ckpt["train_config"].get("passkey_mix", 0) > 0
        plot_persistence(persist, passkey, out / "persistence.png", c.context,
                         c.context - streams.PASSKEY_OVERHEAD if mixed else None)
        runs.write_eval(out, args.ckpt, row, args.prompt + text + "\n", [out / "persistence.png"])
    return row


if __name__ == "__main__":
    cli.run(main)
