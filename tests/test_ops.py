"""The run-to-result tools: RunPod tarball, promote, compare_runs."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from seqlab.core import checkpoint
from test_cli_errors import assert_one_line_error, run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, text_dir):
    import train_char
    base = tmp_path_factory.mktemp("runs")
    from conftest import TINY
    outs = []
    for name, lr in (("A", "3e-4"), ("B", "1e-3")):
        argv = ["--data-dir", str(text_dir), "--out-dir", str(base / name), "--max-steps", "10", *TINY, "--lr", lr]
        train_char.main(argv)
        outs.append(base / name)
    return outs


def test_tarball_round_trip_runs_in_an_empty_folder(tmp_path, text_dir):
    tar = tmp_path / "pod.tar.gz"
    proc = subprocess.run(["bash", str(ROOT / "scripts/package_runpod.sh"), "--data", str(text_dir), "--out", str(tar)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    pod = tmp_path / "pod"
    pod.mkdir()
    with tarfile.open(tar) as t:
        # extraction filters arrived in 3.11.4 / 3.10.12; older Pythons (Debian's 3.11.2) extract as before
        t.extractall(pod, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    names = set(os.listdir(pod))
    assert {"src", "scripts", "tests", "requirements.txt", "README.md", "CLAUDE.md", "MANIFEST.sha256", "GIT_COMMIT"} <= names
    assert (pod / "data" / text_dir.name / "train.npy").is_file()
    # everything runs from the unpacked copy alone (PYTHON = this interpreter, no install)
    env = {**os.environ, "PYTHON": sys.executable}
    setup = subprocess.run(["bash", "scripts/runpod_setup.sh", "--no-install"], capture_output=True, text=True, cwd=pod, env=env)
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    assert "files match MANIFEST.sha256" in setup.stdout and "recommended commands" in setup.stdout
    assert (pod / "out/smoke/best.pt").is_file()
    train = subprocess.run([sys.executable, "src/train_char.py", "--data-dir", f"data/{text_dir.name}", "--out-dir", "out/t",
                            "--max-steps", "20", "--eval-every", "10", "--n-layer", "1", "--n-embd", "32", "--context", "16"],
                           capture_output=True, text=True, cwd=pod)
    assert train.returncode == 0, train.stderr[-2000:]
    ev = subprocess.run([sys.executable, "src/eval_char.py", "--ckpt", "out/t/best.pt", "--max-new-tokens", "10"],
                        capture_output=True, text=True, cwd=pod)
    assert ev.returncode == 0 and "bits/char" in ev.stdout, ev.stderr[-2000:]
    assert json.loads((pod / "out/t/config.json").read_text())["manifest"]["git_commit"] == (pod / "GIT_COMMIT").read_text().strip()
    # a damaged file is caught by the checksum step
    (pod / "src/train_char.py").write_text("broken")
    bad = subprocess.run(["bash", "scripts/runpod_setup.sh", "--no-install", "--no-smoke"], capture_output=True, text=True, cwd=pod)
    assert bad.returncode != 0 and "checksum mismatch" in bad.stderr


def test_package_refuses_missing_data_dir(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts/package_runpod.sh"), "--data", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "p.tar.gz")], capture_output=True, text=True, cwd=ROOT)
    assert_one_line_error(proc, "does not exist")
    assert not (tmp_path / "p.tar.gz").exists()


def test_promote_updates_tables_and_refuses_twice(two_runs, tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    proc = run("scripts/promote.py", two_runs[0], "--name", "C1_tiny", "--root", root)
    assert proc.returncode == 0, proc.stderr
    promoted = checkpoint.load(root / "checkpoints/C1_tiny_best.pt")      # weights and metadata, no resume state
    assert not {"optimizer", "scaler", "data"} & set(promoted) and promoted["step"] > 0
    source = checkpoint.load(Path(two_runs[0]) / "best.pt")
    assert all(torch.equal(promoted["model"][k], v) for k, v in source["model"].items())
    for f in ("eval.json", "sample.txt", "loss_curve.png"):
        assert (root / "results/C1_tiny" / f).is_file(), f
    for md in ("docs/PROJECT_MAP.md", "checkpoints/README.md"):
        rows = [ln for ln in (root / md).read_text().splitlines() if ln.startswith("| C1_tiny |")]
        assert len(rows) == 1 and "| char | val_loss |" in rows[0]
    before = (root / "docs/PROJECT_MAP.md").read_text()
    assert_one_line_error(run("scripts/promote.py", two_runs[1], "--name", "C1_tiny", "--root", root), "--force")
    assert (root / "docs/PROJECT_MAP.md").read_text() == before
    assert run("scripts/promote.py", two_runs[1], "--name", "C1_tiny", "--root", root, "--force").returncode == 0
    rows = [ln for ln in (root / "docs/PROJECT_MAP.md").read_text().splitlines() if ln.startswith("| C1_tiny |")]
    assert len(rows) == 1 and rows[0] != [ln for ln in before.splitlines() if ln.startswith("| C1_tiny |")][0]


def test_promote_after_own_eval_adds_to_results_and_names_a_real_clash(two_runs, tmp_path):
    """The user's workflow: eval into results/<name>/, then promote: accepted (the folder is added to,
    the user's own notes stay); results of another run under that name are refused, naming the file."""
    root = tmp_path / "repo"
    (root / "results/C2").mkdir(parents=True)
    ev = run("src/eval_char.py", "--ckpt", Path(two_runs[0]) / "best.pt", "--output-dir", root / "results/C2",
             "--max-new-tokens", "5")
    assert ev.returncode == 0, ev.stderr
    (root / "results/C2/notes.md").write_text("my notes")
    proc = run("scripts/promote.py", two_runs[0], "--name", "C2", "--root", root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "checkpoints/C2_best.pt").is_file() and (root / "results/C2/loss_curve.png").is_file()
    assert (root / "results/C2/notes.md").read_text() == "my notes"
    # another run's eval in a fresh name: refused, and the message names the clashing file
    (root / "results/C3").mkdir()
    assert run("src/eval_char.py", "--ckpt", Path(two_runs[1]) / "best.pt", "--output-dir", root / "results/C3",
               "--max-new-tokens", "5").returncode == 0
    before = sorted(p.name for p in (root / "results/C3").iterdir())
    assert_one_line_error(run("scripts/promote.py", two_runs[0], "--name", "C3", "--root", root),
                          "results/C3/eval.json was computed from another run")
    assert not (root / "checkpoints/C3_best.pt").exists()
    assert sorted(p.name for p in (root / "results/C3").iterdir()) == before
    # an already promoted checkpoint is named as the clash
    assert_one_line_error(run("scripts/promote.py", two_runs[0], "--name", "C2", "--root", root),
                          "checkpoints/C2_best.pt already exists")


def test_promote_refuses_run_without_best(tmp_path, two_runs):
    root = tmp_path / "repo"
    root.mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(two_runs[0], broken)
    (broken / "best.pt").unlink()
    assert_one_line_error(run("scripts/promote.py", broken, "--name", "X", "--root", root), "no best.pt")
    assert list(root.iterdir()) == []


def test_compare_runs_writes_plot_and_table(two_runs, tmp_path):
    out = tmp_path / "cmp"
    proc = run("scripts/compare_runs.py", *two_runs, "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "curves.png").stat().st_size > 5000
    table = (out / "table.md").read_text()
    assert "| A | char |" in table and "| B | char |" in table
    assert "| train.lr | 0.0003 | 0.001 |" in table


def test_compare_runs_needs_a_shared_metric(two_runs, tmp_path):
    other = tmp_path / "mdn_run"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"family": "mdn", "model": {}, "train": {}}))
    (other / "metrics.jsonl").write_text(json.dumps({"event": "eval", "step": 10, "val_nll": 0.3}) + "\n")
    proc = run("scripts/compare_runs.py", two_runs[0], other, "--output-dir", tmp_path / "c")
    assert_one_line_error(proc, "share no metric")
    assert not (tmp_path / "c").exists()
