"""Finished run folders as data: what promote.py and compare_runs.py read."""
import json
from dataclasses import dataclass, field
from pathlib import Path

from seqlab.core.errors import UserError
from seqlab.core.runfolder import read_metrics

METRICS = ("val_nll", "val_loss")  # the families' headline metrics, lower is better


@dataclass
class Run:
    path: Path
    config: dict
    rows: list = field(repr=False)

    @property
    def name(self):
        return self.path.name

    @property
    def family(self):
        return self.config.get("family", "?")

    @property
    def manifest(self):
        return self.config.get("manifest", {})

    def evals(self):
        return [r for r in self.rows if r["event"] == "eval"]

    def metrics(self):
        """Headline metrics this run logged at its evals."""
        keys = set().union(*(r.keys() for r in self.evals())) if self.evals() else set()
        return [m for m in METRICS if m in keys]

    def best(self, metric):
        """(value, step) of the lowest `metric` over the evals."""
        rows = [r for r in self.evals() if metric in r]
        r = min(rows, key=lambda r: r[metric])
        return r[metric], r["step"]

    def steps_per_s(self):
        ends = [r for r in self.rows if r["event"] == "end"]
        if ends:
            return ends[-1]["steps_per_s"]
        ev = self.evals()
        return ev[-1].get("steps_per_s") if ev else None

    def n_params(self):
        starts = [r for r in self.rows if r["event"] == "start"]
        return starts[0].get("n_params") if starts else None


def load(path):
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "metrics.jsonl").is_file():
        raise UserError(f"{path} is not a run folder (needs config.json and metrics.jsonl)")
    try:
        config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}/config.json is not valid JSON (was the run interrupted at its start?)") from None
    return Run(path, config, read_metrics(path / "metrics.jsonl"))


def config_differences(runs, ignore=("out_dir", "resume", "overwrite", "data_dir")):
    """{dotted key: [value per run]} for the model/train settings that differ between runs."""
    flat = []
    for run in runs:
        d = {}
        for section in ("model", "train"):
            for k, v in run.config.get(section, {}).items():
                if k not in ignore:
                    d[f"{section}.{k}"] = v
        d["family"] = run.family
        flat.append(d)
    keys = sorted(set().union(*flat))
    return {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1}


def write_eval(out_dir, ckpt_path, row, sample_text, written=()):
    """An eval script's outputs in out_dir: eval.json (row), sample.txt and, when the checkpoint sits
    in a run folder, its loss_curve.png; prints one line naming them and the files in `written`
    that the caller put there already."""
    from seqlab.core import plots
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(row, indent=2))
    (out / "sample.txt").write_text(sample_text)
    files = [out / "eval.json", out / "sample.txt", *written]
    curve = plots.run_loss_curve(ckpt_path, out)
    if curve:
        files.append(curve)
    print("wrote " + ", ".join(map(str, files)))
