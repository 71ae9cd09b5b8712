"""torchrun with 2 CPU processes (gloo) computes what one process with the global batch computes."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, TINY
from seqlab.core import checkpoint, runfolder


def losses(out):
    return {r["step"]: r["loss"] for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "train"}


def torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(ROOT / "src/train_char.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_two_ranks_equal_one_process_with_global_batch(text_dir, tmp_path, train_char):
    flags = [*TINY, "--dropout", "0", "--max-steps", "12", "--eval-every", "6"]
    flags[flags.index("--batch-size") + 1] = "3"  # per rank
    proc = torchrun("--data-dir", text_dir, "--out-dir", tmp_path / "ddp", *flags, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, single = train_char("--dropout", "0", "--batch-size", "6", "--eval-every", "6", out="single", max_steps=12)
    a, b = losses(single), losses(tmp_path / "ddp")
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5
    log = (tmp_path / "ddp/train.log").read_text()
    assert "3 per rank x 2 ranks = 6 global" in log
    assert log.count("Device: ") == 1  # only rank 0 writes
    ck = checkpoint.load(tmp_path / "ddp/last.pt")
    assert isinstance(ck["rng"], list) and len(ck["rng"]) == 2

    # resume under torchrun continues the same trajectory
    proc = torchrun("--data-dir", text_dir, "--out-dir", tmp_path / "ddp", *flags[:-4], "--max-steps", "16",
                    "--eval-every", "4", "--device", "cpu", "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(losses(tmp_path / "ddp")) == list(range(1, 17))


def test_postfix_mdn_under_torchrun_equals_one_process(tmp_path):
    """The memory family too: unused aux parameters, the stream sampler's rank slices."""
    import train_mdn_postfix
    from test_mdn_models import make_dataset
    data = make_dataset(tmp_path / "ar", n=24 * 65, seq_len=65)
    flags = ["--data-dir", str(data), "--context", "32", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
             "--n-components", "2", "--n-memory-slots", "2", "--max-steps", "6", "--eval-every", "3", "--log-every", "1",
             "--seed", "3", "--warmup", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29537",
           str(ROOT / "src/train_mdn_postfix.py"), *flags, "--out-dir", str(tmp_path / "ddp"), "--batch-size", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train_mdn_postfix.main(flags + ["--out-dir", str(tmp_path / "single"), "--batch-size", "8"])
    a, b = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5
