"""Runs for a quick look never modify tracked files: benchmarks write results/bench/ only with
--save, data builds write only under their --out-dir / --cache-dir / --report-dir."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tracked_changes():
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                         capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


@pytest.fixture
def git_checkout():
    before = tracked_changes()
    if before is None:
        pytest.skip("not a git checkout")
    return before


def test_every_benchmark_writes_through_the_save_switch():
    for script in sorted((ROOT / "scripts").glob("bench_*.py")):
        src = script.read_text()
        assert "bench.write(" in src and "bench.add_save_flag(" in src, script.name
        assert '"results" / "bench"' not in src and "results/bench/" not in src.split('"""')[2], script.name


def test_benchmark_default_run_writes_nothing_tracked(git_checkout):
    proc = subprocess.run([sys.executable, "scripts/bench_zeros.py", "--n", "1000", "--count", "100", "--flint-count", "3",
                           "--heights", "none"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].endswith("-> out/bench/zeros.json")
    assert tracked_changes() == git_checkout


def porcelain():
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


def test_data_build_outside_the_repo_writes_only_there(git_checkout, tmp_path):
    """prepare_continuous_2M.py --out-dir <tmp>: zeros cache beside it, report inside it, repo untouched."""
    before = porcelain()
    out = tmp_path / "sets" / "z50k"
    cmd = [sys.executable, "scripts/prepare_continuous_2M.py", "--n-zeros", "50000", "--out-dir", str(out),
           "--workers", "1", "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert porcelain() == before
    assert (out / "train.pt").is_file() and (out / "report" / "report.md").is_file()
    cache = tmp_path / "sets" / "zeros" / "zeros_1_50000.npy"
    assert cache.is_file() and cache.with_suffix(".json").is_file()
    # a second build reuses the cache (and says so) instead of computing again
    again = subprocess.run(cmd[:4] + ["--out-dir", str(tmp_path / "sets" / "again"), "--workers", "1", "--no-report"],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "reusing" in again.stdout, again.stderr[-2000:]
    assert porcelain() == before
