"""Run a sweep (an ablation matrix, a seed race or a search) on Optuna, then write its report.

    python scripts/sweep.py sweeps/layouts.yaml --jobs 2
    python scripts/sweep.py sweeps/e4_race.yaml --gpus 0,1,2,3 --storage journal:/workspace/e4.journal
    python scripts/sweep.py sweeps/layouts.yaml --report-only --promote
    python scripts/sweep.py sweeps/e4_race.yaml --gpus 0,1,2,3 --estimate L40S:1.5

Each trial is an ordinary run of the spec's train script in <out-dir>/<trial name>/ (default
out/<sweep name>/). The study lives in <out-dir>/study.db (SQLite) unless --storage names another
Optuna storage (sqlite:///..., postgresql://..., or journal:PATH for a journal file on a shared
disk), which lets workers on several machines share it. Rerunning the same command after a kill
resumes unfinished trials and never repeats a finished one. The report goes to
results/sweep_<name>/ (summary.json, summary.md, curves.png, arms.png). See docs/sweeps.md.
"""
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.core import cli, paths  # noqa: E402
from seqlab.core.errors import UserError  # noqa: E402
from seqlab.sweeps import cost, report, spec as spec_mod  # noqa: E402
from seqlab.sweeps.study import open_study  # noqa: E402
from seqlab.sweeps.worker import Worker  # noqa: E402

ROOT = spec_mod.REPO_ROOT


def gpu_list(text):
    try:
        return [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise cli.argparse.ArgumentTypeError(f"a comma-separated list of GPU indices, got {text}") from None


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="the sweep spec (YAML), e.g. sweeps/layouts.yaml")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///<out-dir>/study.db); "
                   "journal:PATH = a journal file, for workers on several pods sharing a disk")
    p.add_argument("--jobs", type=cli.positive_int, default=None, help="trials at once on this machine (default 1)")
    p.add_argument("--gpus", type=gpu_list, default=None, help="one trial per listed GPU at a time, e.g. 0,1,2,3")
    p.add_argument("--out-dir", default=None, help="folder of the trial runs (default out/<sweep name>)")
    p.add_argument("--output-dir", default=None, help="report folder (default results/sweep_<sweep name>)")
    p.add_argument("--report-only", action="store_true", help="write the report from the study; run nothing")
    p.add_argument("--promote", action="store_true", help="then hand the best completed trial to scripts/promote.py")
    p.add_argument("--estimate", default=None, metavar="GPU:HOURS", help="print the pod cost (prices.py) of the "
                   "sweep for HOURS per trial on GPU, one trial per --gpus entry at once, and exit; e.g. L40S:1.5")
    args = p.parse_args(argv)
    if args.gpus is not None and args.jobs is not None and args.jobs != len(args.gpus):
        raise UserError(f"--jobs {args.jobs} with --gpus {args.gpus}: --gpus already runs one trial per GPU; drop --jobs")
    if args.gpus is not None and not args.gpus:
        raise UserError("--gpus: give at least one GPU index")
    spec = spec_mod.load(args.spec)
    if args.estimate:
        gpu, _, hours = args.estimate.rpartition(":")
        try:
            hours = float(hours)
        except ValueError:
            raise UserError(f"--estimate {args.estimate}: give GPU:HOURS, e.g. L40S:1.5") from None
        print(cost.estimate(spec, gpu, hours, len(args.gpus) if args.gpus else 1)[1])
        return None
    out_root = Path(args.out_dir or ROOT / "out" / spec.name)
    output_dir = Path(args.output_dir or ROOT / "results" / f"sweep_{spec.name}")
    out_root.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{(out_root / 'study.db').resolve()}"
    if args.report_only:
        study = open_study(spec, storage)
    else:
        worker = Worker(spec, storage, out_root, jobs=args.jobs or 1, gpus=args.gpus)
        n = worker.run()
        print(f"[{spec.name}] this worker ran {n} trial(s)")
        study = worker.study
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    if "RUNNING" in states or "WAITING" in states:
        print(f"[{spec.name}] other workers still run trials; the report is written when the last one ends "
              f"(or: --report-only)")
        if not args.report_only:
            return None
    data = report.write(study, spec, output_dir)
    print(f"[{spec.name}] report: {paths.shown(output_dir)}/summary.md")
    print((output_dir / "summary.md").read_text())
    if args.promote:
        best = data["best_trial"]
        if best is None:
            raise UserError("--promote: no completed trial to promote")
        cmd = [sys.executable, "scripts/promote.py", best["out_dir"], "--name", f"{spec.name}_{best['name']}"]
        print("promote: " + " ".join(cmd[1:]))
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc:
            sys.exit(rc)
    return data


if __name__ == "__main__":
    cli.run(main)
