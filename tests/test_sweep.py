"""Sweeps on Optuna (scripts/sweep.py, seqlab/sweeps/): a grid runs and reports, workers share a
study without running a point twice, a killed sweep resumes, a pruner stops a worse trial, bad
specs are refused in one line; the statistics; --tensorboard. Trials are tiny char models."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from seqlab.core.errors import UserError
from seqlab.sweeps import spec as spec_mod, stats

optuna = pytest.importorskip("optuna")
yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[1]
TINY_FLAGS = {"max-steps": 20, "eval-every": 5, "n-layer": 1, "n-head": 2, "n-embd": 16, "context": 16,
              "batch-size": 4, "sample-tokens": 0, "eval-windows": 4, "log-every": 5}


def write_spec(tmp_path, text_dir, name="tiny", **over):
    raw = {"name": name, "script": "src/train_char.py", "metric": "val_loss",
           "flags": {"data-dir": str(text_dir), **TINY_FLAGS}, "grid": {"lr": [0.003, 0.001], "seed": [1, 2]},
           "reference": {"lr": 0.003}, **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def sweep_argv(spec_path, tmp_path, *extra):
    return [str(spec_path), "--out-dir", str(tmp_path / "out"), "--output-dir", str(tmp_path / "res"), *extra]


def run_sweep(spec_path, tmp_path, *extra):
    import sweep
    return sweep.main(sweep_argv(spec_path, tmp_path, *extra))


def load_study(tmp_path, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")


def starts(run_dir):
    return [json.loads(line)["event"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()].count("start")


def test_grid_of_four_on_two_workers_runs_each_point_once_and_reports(tmp_path, text_dir):
    """Two worker processes (one with --jobs 2) share the default SQLite study of a 2 x 2 grid."""
    spec = write_spec(tmp_path, text_dir)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "scripts/sweep.py", *sweep_argv(spec, tmp_path, *jobs)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for jobs in (["--jobs", "2"], [])]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(int(o.split("this worker ran ")[1].split()[0]) for o in outs) == 4
    done = [t for t in load_study(tmp_path).get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 4 and len({t.user_attrs["name"] for t in done}) == 4
    data = run_sweep(spec, tmp_path, "--report-only")
    names = sorted(t["name"] for t in data["trials"])
    assert names == ["lr-0.001_seed-1", "lr-0.001_seed-2", "lr-0.003_seed-1", "lr-0.003_seed-2"]
    for t in data["trials"]:
        assert t["state"] == "COMPLETE" and t["steps"] == 20
        run = tmp_path / "out" / t["name"]
        assert starts(run) == 1 and (run / "best.pt").is_file()    # trained once, an ordinary run folder
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in rows if r["event"] == "eval"]
        assert t["value"] == pytest.approx(min(r["val_loss"] for r in evals))   # the trial's value: the run's best
        assert {"val_loss", "val_bpc", "val_ppl"} <= set(evals[0])
    arms = {a["arm"]: a for a in data["arms"]}
    assert set(arms) == {"lr-0.003", "lr-0.001"} and arms["lr-0.003"]["reference"]
    assert all(a["n"] == 2 for a in arms.values())
    test = data["tests"][0]
    assert test["arm"] == "lr-0.001" and test["perm_p"] == pytest.approx(1 / 3)   # 2 vs 2: 6 splits, 2 as extreme
    for f in ("summary.json", "summary.md", "curves.png", "arms.png"):
        assert (tmp_path / "res" / f).is_file(), f
    assert "Welch" in (tmp_path / "res" / "summary.md").read_text()


def test_killed_sweep_restarts_without_duplicates(tmp_path, text_dir):
    spec = write_spec(tmp_path, text_dir, grid={"lr": [0.003], "seed": [1, 2]},
                      flags={"data-dir": str(text_dir), **TINY_FLAGS, "max-steps": 200, "eval-every": 10})
    cmd = [sys.executable, "scripts/sweep.py", *sweep_argv(spec, tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "out" / "lr-0.003_seed-1" / "last.pt"
    deadline = time.time() + 120
    while not first.is_file() and time.time() < deadline:
        time.sleep(0.2)
    assert first.is_file(), "the first trial never wrote last.pt"
    os.killpg(proc.pid, signal.SIGKILL)       # the worker and its trial die at once: no cleanup
    proc.wait()
    assert load_study(tmp_path).get_trials()[0].state.name == "RUNNING"
    data = run_sweep(spec, tmp_path)
    trials = load_study(tmp_path).get_trials()
    assert [t.user_attrs.get("fail") for t in trials if t.state.name == "FAIL"] == ["stale"]
    done = sorted(t.user_attrs["name"] for t in trials if t.state.name == "COMPLETE")
    assert done == ["lr-0.003_seed-1", "lr-0.003_seed-2"]
    events = [json.loads(x)["event"] for x in (first.parent / "metrics.jsonl").read_text().splitlines()]
    assert "resume" in events and events.count("end") == 1       # continued from last.pt, finished once
    assert all(t["steps"] == 200 for t in data["trials"])


def test_race_prunes_a_clearly_worse_trial(tmp_path, text_dir):
    """Two good trials finish first (the pruner's startup), then one with a useless LR is stopped."""
    spec = write_spec(tmp_path, text_dir, grid={"lr": [0.003, 0.0031, 1.0e-7]}, reference={},
                      flags={"data-dir": str(text_dir), **TINY_FLAGS, "max-steps": 40, "seed": 1},
                      race={"pruner": "median", "min-steps": 10, "startup-trials": 2})
    data = run_sweep(spec, tmp_path, "--jobs", "1")
    by = {t["name"]: t for t in data["trials"]}
    assert by["lr-0.003"]["state"] == by["lr-0.0031"]["state"] == "COMPLETE"
    bad = by["lr-1e-07"]
    assert bad["state"] == "PRUNED" and bad["steps"] == 10
    run = tmp_path / "out" / bad["name"]
    assert json.loads((run / "config.json").read_text())["sweep"]["pruned"] is True
    assert (run / "last.pt").is_file() and "pruned by the sweep at step 10" in (run / "train.log").read_text()
    c = data["compute"]
    assert c["n_pruned"] == 1 and c["steps_trained"] == 90 and c["steps_saved_share"] == pytest.approx(30 / 120)


# ---- bad specs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, key", [
    ({"grid": {"lr": []}}, "grid.lr"),
    ({"grid": {}}, "grid"),
    ({"metric": "val_nll"}, "metric"),
    ({"colour": "red"}, "colour"),
    ({"reference": {"lr": 0.5}}, "reference.lr"),
    ({"race": {"pruner": "coin"}}, "race.pruner"),
    ({"flags": {"out-dir": "x", "max-steps": 5}}, "out-dir"),
    ({"flags": {"data-dir": "d"}}, "flags.max-steps"),
    ({"search": {"lr": {"log": [0, 1]}}, "trials": 3, "grid": None}, "search.lr.log"),
])
def test_bad_spec_is_named(change, key):
    raw = {"name": "s", "script": "src/train_char.py", "metric": "val_loss", "flags": {"max-steps": 5},
           "grid": {"lr": [0.1, 0.2]}, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(UserError) as e:
        spec_mod.parse(raw, check_script=False)
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_unknown_flag_of_the_script_one_line_cli_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "script": "src/train_char.py", "metric": "val_loss",
                                    "flags": {"max-steps": 5}, "grid": {"n-layers": [1, 2]}}))
    out = subprocess.run([sys.executable, "scripts/sweep.py", str(path), "--out-dir", str(tmp_path / "o")],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: grid.n-layers: src/train_char.py has no flag --n-layers"
    assert not (tmp_path / "o").exists()


def test_metric_table_names_the_task_metrics():
    from seqlab.hybrid.task import HybridTask
    from seqlab.mdn.task import MDNTask
    from seqlab.text.task import CharTask
    assert CharTask.metric in spec_mod.EVAL_METRICS["train_char"]
    assert HybridTask.metric in spec_mod.EVAL_METRICS["train_hybrid"]
    # MDNTask may set its metric per instance (val_nll, or sel_nll with a selection split)
    for script in ("train_mdn", "train_mdn_memory", "train_mdn_postfix"):
        assert getattr(MDNTask, "metric", "val_nll") in spec_mod.EVAL_METRICS[script]


def test_trial_names_are_readable_and_flags_become_argv():
    assert spec_mod.trial_name({"layout": "RMRM", "seed": 3, "lr": 0.00012}) == "layout-RMRM_seed-3_lr-0.00012"
    assert spec_mod.flag_args({"use-amp": True, "compile": False, "hook": ["a", "b"], "lr": 0.1}) == \
        ["--use-amp", "--hook", "a", "--hook", "b", "--lr", "0.1"]


# ---- statistics --------------------------------------------------------------------------------------
def test_welch_matches_the_t_distribution():
    a, b = [2.1, 2.3, 2.2, 2.5], [2.6, 2.9, 2.7]
    t, df, p = stats.welch(a, b)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    assert t == pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt(va + vb))
    assert df == pytest.approx((va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2))
    assert stats.student_t_sf2(0.0, 5) == pytest.approx(1.0)
    assert stats.student_t_sf2(2.5706, 5) == pytest.approx(0.05, abs=1e-4)   # the tabulated 97.5% point, df 5
    sp = pytest.importorskip("scipy.stats")
    assert p == pytest.approx(sp.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-6)


def test_permutation_holm_bootstrap():
    assert stats.permutation([1, 2, 3], [10, 11, 12]) == pytest.approx(0.1)    # 2 of 20 splits as extreme
    assert stats.permutation([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert stats.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert 1.0 <= s["ci95"][0] < 2.5 < s["ci95"][1] <= 4.0


# ---- tensorboard ---------------------------------------------------------------------------------------
def test_tensorboard_writes_scalars(train_char):
    pytest.importorskip("torch.utils.tensorboard")
    _, out = train_char("--tensorboard", max_steps=10)
    assert list((out / "tb").glob("events.out.tfevents.*"))


def test_tensorboard_missing_is_one_clear_error(train_char, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UserError, match="pip install tensorboard"):
        train_char("--tensorboard", max_steps=10)
