"""G3.5 gate report of a hybrid checkpoint, and the pure-R / pure-M / hybrid verdict of runs.

    python src/diagnose_hybrid.py --ckpt out/hybrid_base/best.pt --output-dir results/hybrid_base
    python src/diagnose_hybrid.py --compare out/shk_R out/shk_M out/shk_hybrid --output-dir results/cmp

G3.5 (seqlab.hybrid.monitors.g35_report), per recurrent layer, streaming val tracks in chunks with
state handoff (the mode of training): cosine similarity of consecutive states, share of the
state's variance in its top-5 singular values, saturated share of retentions. Writes g35.jsonl
(one row per layer, then a summary row) and g35.png.
--compare reads each run folder's best val loss and layout and prints the notes' verdict
(hybrid worse than both pure baselines: training problem; between them: capacity problem);
writes compare.json and compare.md.
"""
import json
import math
from pathlib import Path

from seqlab.core import checkpoint, cli, paths, runfolder
from seqlab.hybrid import monitors
from seqlab.text import data as text_data
from seqlab.core.errors import UserError


def plot_g35(rows, png, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [f"{r['layer']}:{r['kind']}" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=120)
    panels = [("cos_sim", "consecutive-state cosine", (monitors.G35["churn_cos"], monitors.G35["frozen_cos"])),
              ("svd_top5", "variance in top-5 singular values", ()), ("saturated", "saturated retentions", (monitors.G35["saturated"],))]
    for ax, (key, label, lines) in zip(axes, panels):
        colors = ["tab:green" if r["pass"] else "tab:red" for r in rows]
        ax.bar(names, [r[key] for r in rows], color=colors)
        for y in lines:
            ax.axhline(y, ls="--", c="k", lw=0.8)
        ax.set_ylim(0, 1.05)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("layer")
        ax.tick_params(axis="x", labelsize=7, rotation=45)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def best_val(run):
    """(best val loss, layout, steps, n_params) of a run folder."""
    run = Path(run)
    if not (run / "config.json").is_file():
        raise UserError(f"{run} is not a run folder (no config.json)")
    cfg = json.loads((run / "config.json").read_text())
    if cfg.get("family") != "hybrid":
        raise UserError(f"{run} is a '{cfg.get('family')}' run; --compare needs hybrid runs")
    rows = runfolder.read_metrics(run / "metrics.jsonl")
    vals = [r["val_loss"] for r in rows if r["event"] == "eval"]
    if not vals:
        raise UserError(f"{run} has no eval rows yet")
    start = next((r for r in rows if r["event"] == "start"), {})
    return min(vals), cfg["model"]["layout"], max(r["step"] for r in rows if r["event"] == "eval"), start.get("n_params")


def compare(runs, out):
    table = []
    for run in runs:
        loss, layout, steps, n_params = best_val(run)
        table.append({"run": str(run), "layout": layout, "class": monitors.layout_class(layout), "steps": steps,
                      "n_params": n_params, "val_loss": loss, "val_bpc": loss / math.log(2)})
    best = {}
    for row in table:
        if row["class"] in ("pure-R", "pure-M") and row["val_loss"] < best.get(row["class"], math.inf):
            best[row["class"]] = row["val_loss"]
    lines = ["| run | layout | class | steps | params | val loss | val bpc |", "|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {Path(r['run']).name} | {r['layout']} | {r['class']} | {r['steps']} | {r['n_params']:,} | "
                     f"{r['val_loss']:.4f} | {r['val_bpc']:.4f} |")
    verdicts = []
    for r in table:
        if r["class"] == "hybrid" and {"pure-R", "pure-M"} <= set(best):
            r["verdict"] = monitors.baseline_verdict(r["val_loss"], best["pure-R"], best["pure-M"])
            verdicts.append(f"{Path(r['run']).name} ({r['layout']}): {r['verdict']}")
    if not verdicts:
        verdicts.append("no verdict: --compare needs a pure-R, a pure-M and a hybrid run")
    print("\n".join(lines + [""] + verdicts))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(table, indent=2))
        (out / "compare.md").write_text("\n".join(lines + [""] + [f"- {v}" for v in verdicts]) + "\n")
        print(f"wrote {out / 'compare.json'}, {out / 'compare.md'}")
    return table


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    cli.add_eval_args(p, "prepared text folder (default: the one the run trained on)", ckpt_required=False)
    p.add_argument("--batch-size", type=cli.positive_int, default=8, help="val tracks")
    p.add_argument("--chunks", type=cli.positive_int, default=16, help="chunks streamed per track")
    p.add_argument("--compare", nargs="+", default=None, metavar="RUN_DIR", help="run folders to compare")
    args = p.parse_args(argv)
    out = Path(args.output_dir) if args.output_dir else None
    if args.compare:
        return compare(args.compare, out)
    if not args.ckpt:
        raise UserError("pass --ckpt (the G3.5 report) or --compare RUN_DIR ... (the baseline verdict)")
    model, ckpt, data_dir = checkpoint.open_for_eval(args.ckpt, "hybrid", args.device, args.data_dir)
    val = text_data.load_split(data_dir, "val")
    rows, passed = monitors.g35_report(model, val, args.batch_size, model.config.context, args.chunks)
    for r in rows:
        print(f"layer {r['layer']:2d} {r['kind']}: cos {r['cos_sim']:.3f} | top-5 SVD {r['svd_top5']:.3f} | "
              f"saturated {r['saturated']:.3f} | {'pass' if r['pass'] else 'FAIL'}"
              + (" (frozen)" if r["frozen"] else "") + (" (churning)" if r["churning"] else ""))
    if not rows:
        passed = None                      # nothing to gate: an attention-only layout has no recurrent state
    verdict = {True: "PASS", False: "FAIL", None: "N/A (no recurrent layers)"}[passed]
    summary = {"summary": True, "ckpt": paths.shown(args.ckpt), "step": ckpt["step"], "layout": model.config.layout,
               "g35_pass": passed, "thresholds": monitors.G35}
    print(f"G3.5 gate: {verdict} ({len(rows)} recurrent layers, step {ckpt['step']})")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "g35.jsonl", "w") as f:
            for r in rows + [summary]:
                f.write(json.dumps(r) + "\n")
        plot_g35(rows, out / "g35.png", f"G3.5 {verdict}: {model.config.layout} step {ckpt['step']}")
        print(f"wrote {out / 'g35.jsonl'}, {out / 'g35.png'}")
    return rows, passed


if __name__ == "__main__":
    cli.run(main)
