"""Compare finished runs: overlaid val curves (by step and by wall time) and a markdown table.

    python scripts/compare_runs.py out/E0 out/E4_s7 out/E5_ortho [--name e0_vs_e5]

Writes results/compare_<name>/curves.png and table.md (best metric and step, steps/s, params,
config hash, and the settings that differ). Runs must share a headline metric.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.core import cli, runs  # noqa: E402
from seqlab.core.errors import UserError  # noqa: E402
from seqlab.core.plots import plt  # noqa: E402


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="run folders (out/<name>)")
    p.add_argument("--name", default=None, help="comparison name (default: the run names joined by _vs_)")
    p.add_argument("--metric", default=None, help="metric to compare (default: the one all runs share)")
    p.add_argument("--output-dir", default=None, help="default results/compare_<name>")
    args = p.parse_args(argv)
    if len(args.run_dirs) < 2:
        raise UserError("give at least two run folders to compare")
    rs = [runs.load(d) for d in args.run_dirs]
    shared = [m for m in runs.METRICS if all(m in r.metrics() for r in rs)]
    metric = args.metric or (shared[0] if shared else None)
    if metric is None or metric not in shared:
        have = "; ".join(f"{r.name}: {', '.join(r.metrics()) or 'no evals'}" for r in rs)
        raise UserError(f"the runs share no metric{f' {metric}' if metric else ''} ({have})")
    name = args.name or "_vs_".join(r.name for r in rs)
    out = Path(args.output_dir or f"results/compare_{name}")
    out.mkdir(parents=True, exist_ok=True)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    for r in rs:
        ev = [e for e in r.evals() if metric in e]
        line, = axes[0].plot([e["step"] for e in ev], [e[metric] for e in ev], "o-", ms=3, label=r.name)
        axes[1].plot([e.get("elapsed_s", 0) / 60 for e in ev], [e[metric] for e in ev], "o-", ms=3, color=line.get_color())
        train = [e for e in r.rows if e["event"] == "train"]
        if train and r.family == rs[0].family:
            axes[0].plot([e["step"] for e in train], [e["loss"] for e in train], lw=0.6, alpha=0.35, color=line.get_color())
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("wall time (min, this process)")
    for ax in axes:
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"{metric} by step (faint: train loss)")
    axes[1].set_title(f"{metric} by wall time")
    fig.tight_layout()
    fig.savefig(out / "curves.png")

    lines = [f"# Comparison: {name}", "", f"Metric: `{metric}` (lower is better).", "",
             f"| run | family | best {metric} | at step | steps/s | params | config_hash | git |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rs:
        value, step = r.best(metric)
        sps, n = r.steps_per_s(), r.n_params()
        lines.append(f"| {r.name} | {r.family} | {value:.4f} | {step} | {sps:.2f} | {n:,} | "
                     f"{r.manifest.get('config_hash', '?')} | {str(r.manifest.get('git_commit', '?'))[:10]} |"
                     if sps is not None and n is not None else
                     f"| {r.name} | {r.family} | {value:.4f} | {step} | ? | ? | {r.manifest.get('config_hash', '?')} | ? |")
    diffs = runs.config_differences(rs)
    lines += ["", "## Settings that differ", ""]
    if diffs:
        lines += ["| setting | " + " | ".join(r.name for r in rs) + " |", "| --- |" + " --- |" * len(rs)]
        lines += [f"| {k} | " + " | ".join(str(v) for v in vals) + " |" for k, vals in diffs.items()]
    else:
        lines.append("none (same config apart from paths)")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:4 + len(rs) + 2]))
    print(f"wrote {out}/curves.png and {out}/table.md")


if __name__ == "__main__":
    cli.run(main)
