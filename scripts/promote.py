"""Promote a finished run: the user's after-experiment checklist as one command.

    python scripts/promote.py out/E5_ortho --name E5_ortho

1. copies RUN_DIR/best.pt to checkpoints/<name>_best.pt without its resume-only state (optimizer
   moments, AMP scaler, data position and carried recurrent states: up to 5x the weights; a run
   resumes from its own folder, never from checkpoints/);
2. runs the family's eval (and diagnose) scripts into results/<name>/;
3. adds or updates the row of <name> in the experiments table of docs/PROJECT_MAP.md and in
   the registry table of checkpoints/README.md (name, family, metric, step, config hash,
   git commit, date).
Everything is computed in a scratch folder first and moved into place only when all steps
succeeded, so a failure leaves nothing half-written. A results/<name>/ folder that already holds
eval or diagnose outputs of the same run (the usual: evaluate first, then promote) is added to;
only a real clash is refused without --force: a promoted checkpoint of that name, or results
written from another run's checkpoint.
"""
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seqlab.core import checkpoint, cli, plots  # noqa: E402
from seqlab.core.errors import UserError  # noqa: E402

# checkpoint entries only --resume needs (a promoted checkpoint is for eval, sampling and diagnosis)
RESUME_ONLY = ("optimizer", "scaler", "data", "rng")
# family -> the scripts that write its results (each takes --ckpt --data-dir --output-dir)
TOOLS = {
    "char": ["src/eval_char.py"],
    "mdn": ["src/eval_mdn.py"],
    "mdn_prefix": ["src/eval_mdn.py", "src/diagnose_memory.py"],
    "mdn_postfix": ["src/eval_mdn.py", "src/diagnose_memory_postfix.py"],
    "hybrid": ["src/eval_hybrid.py", "src/diagnose_hybrid.py"],
}
HEADER = "| name | family | metric | value | step | config_hash | git_commit | date | run_id |"
START, END = "<!-- experiments:start -->", "<!-- experiments:end -->"


def upsert_row(md_path, name, row, title):
    """Add or replace the row for `name` in the marked table of a markdown file (creating both)."""
    text = md_path.read_text() if md_path.is_file() else f"# {title}\n"
    if START not in text:
        text = text.rstrip() + f"\n\n{START}\n{HEADER}\n{'|---' * HEADER.count(' | ')}|---|\n{END}\n"
    head, rest = text.split(START, 1)
    table, tail = rest.split(END, 1)
    lines = [ln for ln in table.strip().splitlines() if not ln.startswith(f"| {name} |")]
    lines.append(row)
    return head + START + "\n" + "\n".join(lines) + "\n" + END + tail


def results_owners(folder):
    """{file name: the checkpoint path its rows were computed from} for the JSON / JSONL outputs in
    `folder` that record one (eval and diagnose scripts write a "ckpt" key)."""
    owners = {}
    for f in sorted(Path(folder).glob("*.json*")):
        try:
            text = f.read_text()
            rows = [json.loads(text)] if f.suffix == ".json" else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        except (OSError, ValueError):
            continue
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("ckpt"), str):
                owners[f.name] = row["ckpt"]
    return owners


def clash(run, ckpt_dest, results_dest, root):
    """Why promoting `run` under this name would overwrite someone else's work (None: it would not)."""
    if ckpt_dest.exists():
        return f"{ckpt_dest.relative_to(root)} already exists"
    if results_dest.exists():
        for name, ckpt in results_owners(results_dest).items():
            path = Path(ckpt) if Path(ckpt).is_absolute() else ROOT / ckpt
            if path.resolve().parent != run:
                return f"{results_dest.relative_to(root)}/{name} was computed from another run ({ckpt})"
    return None


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="finished run folder (out/<name>) with best.pt")
    p.add_argument("--name", required=True, help="promoted name, E{N}_{desc} by convention (e.g. E5_ortho)")
    p.add_argument("--data-dir", default=None, help="dataset for the eval scripts (default: the run's own)")
    p.add_argument("--force", action="store_true", help="replace an already promoted name")
    p.add_argument("--root", default=str(ROOT), help="repo root holding checkpoints/, results/, docs/ (tests use a temp one)")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        raise UserError(f"--name '{args.name}' must be letters, digits, '_', '-', '.' (e.g. E5_ortho)")
    run, root = Path(args.run_dir).resolve(), Path(args.root).resolve()
    if not root.is_dir():
        raise UserError(f"--root {root} is not a folder")
    best = run / "best.pt"
    if not best.is_file():
        raise UserError(f"{run} has no best.pt (is it a finished run folder?); nothing promoted")
    ck = checkpoint.load(best)
    family = ck["family"]
    ckpt_dest = root / "checkpoints" / f"{args.name}_best.pt"
    results_dest = root / "results" / args.name
    why = clash(run, ckpt_dest, results_dest, root)
    if why and not args.force:
        raise UserError(f"cannot promote as '{args.name}': {why}; pass --force to replace it, or choose another --name")
    tools = [t for t in TOOLS.get(family, []) if (ROOT / t).is_file()]

    with tempfile.TemporaryDirectory(dir=root) as scratch:
        scratch = Path(scratch)
        staged_ckpt, staged_results = scratch / ckpt_dest.name, scratch / "results"
        checkpoint.save_atomic({k: v for k, v in ck.items() if k not in RESUME_ONLY}, staged_ckpt)
        for tool in tools:
            cmd = [sys.executable, str(ROOT / tool), "--ckpt", str(best.resolve()), "--output-dir", str(staged_results)]
            if args.data_dir:
                cmd += ["--data-dir", str(Path(args.data_dir).resolve())]
            print("$ " + " ".join(cmd[1:]))
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            print(proc.stdout.rstrip())
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                raise UserError(f"{tool} failed ({last}); nothing promoted")
        staged_results.mkdir(exist_ok=True)
        plots.loss_curve(run / "metrics.jsonl", staged_results / "loss_curve.png", ck["best"]["metric"])
        m = ck["manifest"]
        metric, value = ck["best"]["metric"], ck["best"]["value"]
        row = (f"| {args.name} | {family} | {metric} | {value:.4f} | {ck['step']} | {m.get('config_hash', '?')} | "
               f"{str(m.get('git_commit', '?'))[:10]} | {time.strftime('%Y-%m-%d')} | {m.get('run_id', '?')} |")
        project_map = upsert_row(root / "docs" / "PROJECT_MAP.md", args.name, row, "Project map")
        registry = upsert_row(root / "checkpoints" / "README.md", args.name, row, "Checkpoints")

        # everything computed: move into place
        (root / "checkpoints").mkdir(exist_ok=True)
        (root / "docs").mkdir(exist_ok=True)
        if results_dest.exists() and why:  # --force over another run's results: replace them
            shutil.rmtree(results_dest)
        results_dest.mkdir(parents=True, exist_ok=True)
        for f in staged_results.iterdir():  # same run: the fresh outputs replace theirs, other files stay
            target = results_dest / f.name
            if target.is_dir():
                shutil.rmtree(target)
            shutil.move(str(f), target)
        shutil.move(str(staged_ckpt), ckpt_dest)
        (root / "docs" / "PROJECT_MAP.md").write_text(project_map)
        (root / "checkpoints" / "README.md").write_text(registry)
    print(f"promoted {run} as {args.name}: {ckpt_dest.relative_to(root)}, {results_dest.relative_to(root)}/, "
          f"docs/PROJECT_MAP.md and checkpoints/README.md rows ({metric}={value:.4f})")


if __name__ == "__main__":
    cli.run(main)
