"""Evaluate a hybrid checkpoint: val loss and bits/char, passkey retrieval, state persistence.

    python src/eval_hybrid.py --ckpt out/hybrid_base/best.pt --output-dir results/hybrid_base

Val loss streams contiguous val tracks chunk by chunk with carried state, as in training.
Passkey: a 5-digit key, filler, then the question; accuracy by distance (64..2048 characters).
Persistence: relative change of each layer's state after a one-token perturbation, by distance.
Writes eval.json and persistence.png (and sample.txt) to --output-dir.
--context-length N: bits/char by position over N-char val segments read from a fresh state with the
state carried across chunks (context.json, context.png; --baseline-ckpt draws a second model, e.g.
attention-only, on the same segments). --niah: needle-in-a-haystack accuracy by context and depth
(niah.json, niah.png).
"""
from pathlib import Path

from seqlab.core import checkpoint, cli, paths, runs
from seqlab.hybrid import context, probes, streams
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


def plot_context(curves, png):
    """curves: {label: context_curve() result}; left bits/char by position (state carried), right carried
    minus fresh-at-every-chunk bits/char (the value of context beyond the chunk); chunk boundaries dotted."""
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.4), dpi=120)
    for label, r in curves.items():
        x = [a + r["bin_size"] / 2 for a in r["bin_start"]]
        lo, hi = r["ci95"]
        ax.plot(x, r["bpc"], lw=1.3, label=f"{label}: chunks 1.. minus chunk 0 = "
                                            f"{r['later_minus_first_chunk_bpc']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        lo, hi = r["carried_minus_fresh_ci95"]
        bx.plot(x, r["carried_minus_fresh_by_bin"], lw=1.3, label=f"{label}: chunks 1.. "
                f"{r['carried_minus_fresh_bpc']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    for a in (ax, bx):
        for k in range(1, r["length"] // r["context"] + 1):
            a.axvline(k * r["context"], color="gray", lw=0.5, ls=":")
        a.set_xlabel("position in the segment (chars; dotted: chunk boundaries)")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    bx.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("bits/char (mean over segments)")
    ax.set_title(f"loss by position, state carried, {r['segments']} val segments", fontsize=9)
    bx.set_ylabel("bits/char: carried - fresh state at each chunk")
    bx.set_title("value of context beyond the chunk (< 0: the carried state helps; 95% interval)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def plot_niah(r, png, title):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.8), dpi=120)
    im = ax.imshow(r["accuracy"], vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
    for i, row in enumerate(r["accuracy"]):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.0%}\n{r['digit_accuracy'][i][j]:.0%}", ha="center", va="center", fontsize=6,
                    color="w" if v < 0.6 else "k")
    ax.set_xticks(range(len(r["contexts"])), r["contexts"])
    ax.set_yticks(range(len(r["depths"])), [f"{d:.0%}" for d in r["depths"]])
    ax.set_xlabel("context (chars)")
    ax.set_ylabel("needle depth")
    ax.set_title(f"{title}\nkeys retrieved (top) / digits right (bottom), {r['trials']} trials per cell", fontsize=9)
    fig.colorbar(im, label="keys retrieved")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def context_outputs(args, model, val, out):
    """--context-length and --niah: compute, print, and (with --output-dir) write json + png."""
    import json
    rows = {}
    if args.context_length:
        curves = {}
        for path, m in ((args.ckpt, model), *(((args.baseline_ckpt, checkpoint.load_model(args.baseline_ckpt, "hybrid")[0]),)
                                               if args.baseline_ckpt else ())):
            m.to(next(model.parameters()).device)
            losses = context.loss_by_position(m, val, args.context_length, args.context_segments)
            fresh = context.loss_by_position(m, val, args.context_length, args.context_segments, carry=False)
            r = context.context_curve(losses, m.config.context, seed=args.seed, fresh=fresh)
            curves[f"{m.config.layout} ({Path(path).name})"] = r
            print(f"context {m.config.layout}: bits/char by chunk " + " ".join(f"{b:.3f}" for b in r["bpc_by_chunk"])
                  + f" | chunks 1.. minus chunk 0: {r['later_minus_first_chunk_bpc']:+.4f} "
                  f"[{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}] | carried minus fresh state: "
                  f"{r['carried_minus_fresh_bpc']:+.4f} [{r['carried_minus_fresh_ci95'][0]:+.4f}, "
                  f"{r['carried_minus_fresh_ci95'][1]:+.4f}] bits/char")
        rows["context"] = curves
        if out:
            (out / "context.json").write_text(json.dumps(curves, indent=2))
            plot_context(curves, out / "context.png")
    if args.niah:
        parse = lambda s, f: tuple(f(v) for v in s.split(","))
        try:
            ctxs, depths = parse(args.niah_contexts, int), parse(args.niah_depths, float)
        except ValueError:
            raise UserError("--niah-contexts / --niah-depths: give comma-separated numbers") from None
        r = context.niah(model, val, ctxs, depths, args.niah_trials, args.seed)
        for d, row in zip(depths, r["accuracy"]):
            print(f"niah depth {d:.0%}: " + " ".join(f"{c}:{a:.0%}" for c, a in zip(ctxs, row)))
        rows["niah"] = r
        if out:
            (out / "niah.json").write_text(json.dumps(r, indent=2))
            plot_niah(r, out / "niah.png", f"{model.config.layout} ({Path(args.ckpt).name})")
    return rows


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    cli.add_eval_args(p, "prepared text folder (default: the one the run trained on)")
    cli.add_track_args(p)
    p.add_argument("--passkey-trials", type=cli.nonneg_int, default=20, help="documents per distance (0: skip)")
    p.add_argument("--passkey-distances", default="64,128,256,512,1024,2048")
    p.add_argument("--persistence-horizon", type=cli.positive_int, default=512, help="tokens followed after the perturbation")
    p.add_argument("--max-new-tokens", type=cli.nonneg_int, default=300)
    p.add_argument("--prompt", default="The ")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context-length", type=cli.nonneg_int, default=0,
                   help="chars per val segment for the loss-by-position curve (0: skip; at least 2 chunks)")
    p.add_argument("--context-segments", type=cli.nonneg_int, default=0, help="segments used (0: all that fit)")
    p.add_argument("--baseline-ckpt", default=None, help="a second checkpoint drawn on the same context curve")
    p.add_argument("--niah", action="store_true", help="needle-in-a-haystack heatmap (niah.json, niah.png)")
    p.add_argument("--niah-contexts", default=",".join(map(str, context.NIAH_CONTEXTS)))
    p.add_argument("--niah-depths", default=",".join(map(str, context.NIAH_DEPTHS)))
    p.add_argument("--niah-trials", type=cli.positive_int, default=10, help="documents per cell")
    args = p.parse_args(argv)
    try:
        distances = tuple(int(d) for d in args.passkey_distances.split(","))
    except ValueError:
        raise UserError(f"--passkey-distances {args.passkey_distances!r}: give comma-separated integers") from None

    model, ckpt, data_dir = checkpoint.open_for_eval(args.ckpt, "hybrid", args.device, args.data_dir)
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
    out = Path(args.output_dir) if args.output_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    row.update(context_outputs(args, model, val, out))
    if out:
        mixed = ckpt["train_config"].get("passkey_mix", 0) > 0
        plot_persistence(persist, passkey, out / "persistence.png", c.context,
                         c.context - streams.PASSKEY_OVERHEAD if mixed else None)
        runs.write_eval(out, args.ckpt, row, args.prompt + text + "\n", [out / "persistence.png"])
    return row


if __name__ == "__main__":
    cli.run(main)
