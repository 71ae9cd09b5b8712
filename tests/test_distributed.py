"""torchrun with 2 CPU processes (gloo) computes what one process with the global batch computes:
one test per trainer (char, mdn E0, mdn POSTFIX with the documented flags, hybrid)."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, TINY
from seqlab.core import checkpoint, runfolder


def losses(out):
    return {r["step"]: r["loss"] for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "train"}


def launch(script, *args, port):
    """`torchrun --nproc_per_node 2 src/<script> args` on CPU (gloo); the CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(ROOT / "src" / script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def why(proc):
    """What a failed torchrun said: the ranks' own error lines (the launcher's traceback, which fills
    the end of stderr, says only that a child failed), then the tail."""
    own = [l for l in proc.stderr.splitlines() if "torch/distributed/elastic" not in l and
           any(k in l for k in ("terminate", "what()", "Error", "error", "Traceback", "Fatal", "abort"))]
    return "\n".join(own[:30]) + "\n...\n" + proc.stderr[-1000:]


def torchrun(*args):
    return launch("train_char.py", *args, port=29533)


def test_two_ranks_equal_one_process_with_global_batch(text_dir, tmp_path, train_char):
    flags = [*TINY, "--dropout", "0", "--max-steps", "12", "--eval-every", "6"]
    flags[flags.index("--batch-size") + 1] = "3"  # per rank
    proc = torchrun("--data-dir", text_dir, "--out-dir", tmp_path / "ddp", *flags, "--device", "cpu")
    assert proc.returncode == 0, why(proc)
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
    assert proc.returncode == 0, why(proc)
    assert sorted(losses(tmp_path / "ddp")) == list(range(1, 17))


MDN_FLAGS = ["--context", "32", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-components", "2",
             "--max-steps", "6", "--eval-every", "3", "--log-every", "1", "--seed", "3", "--warmup", "0", "--device", "cpu"]
# what runpod_setup.sh and the README recommend for POSTFIX (ramp shortened so the aux loss counts at once)
POSTFIX_FLAGS = ["--n-memory-slots", "2", "--slot-id-mode", "permute_per_batch", "--use-aux-loss", "--aux-ramp-steps", "2",
                 "--early-stop", "--patience", "800"]


@pytest.mark.parametrize("script,extra,port", [("train_mdn.py", [], 29541), ("train_mdn_postfix.py", POSTFIX_FLAGS, 29537)],
                         ids=["E0", "POSTFIX"])
def test_mdn_under_torchrun_equals_one_process(tmp_path, script, extra, port):
    """E0, and POSTFIX with --use-aux-loss (the aux head must run inside the DDP forward, or the
    first backward fails with 'marked ready twice') and ID-Detox; the stream sampler's rank slices."""
    from test_mdn_models import make_dataset
    module = __import__(script[:-3])
    data = make_dataset(tmp_path / "ar", n=24 * 65, seq_len=65)
    flags = ["--data-dir", str(data), *MDN_FLAGS, *extra]
    proc = launch(script, *flags, "--out-dir", tmp_path / "ddp", "--batch-size", "4", port=port)
    assert proc.returncode == 0, why(proc)
    module.main(flags + ["--out-dir", str(tmp_path / "single"), "--batch-size", "8"])
    module.main(flags + ["--out-dir", str(tmp_path / "per_rank"), "--batch-size", "4"])
    a, b, c = losses(tmp_path / "single"), losses(tmp_path / "ddp"), losses(tmp_path / "per_rank")
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5
    assert max(abs(c[s] - b[s]) for s in a) > 1e-3       # the ranks did not both train on one slice
    if extra:
        parts = [r for r in runfolder.read_metrics(tmp_path / "ddp/metrics.jsonl") if r["event"] == "loss_parts"]
        assert parts and all(r["aux"] > 0 for r in parts)


def test_hybrid_under_torchrun_equals_one_process_and_resumes(text_dir, tmp_path):
    """Each rank trains its own tracks of the global batch; resume restores every rank's carried state."""
    import train_hybrid
    flags = ["--data-dir", str(text_dir), "--n-layer", "3", "--layout", "RAM", "--n-head", "2", "--n-embd", "16",
             "--context", "16", "--log-every", "1", "--sample-tokens", "0", "--seed", "3", "--schedule", "constant",
             "--eval-chunks", "2", "--doc-sep", ".\\n", "--device", "cpu"]
    proc = launch("train_hybrid.py", *flags, "--out-dir", tmp_path / "ddp", "--batch-size", "2", "--max-steps", "4",
                  "--eval-every", "4", port=29545)
    assert proc.returncode == 0, why(proc)
    log = (tmp_path / "ddp/train.log").read_text()
    assert "2 per rank x 2 ranks = 4 global" in log
    ck = checkpoint.load(tmp_path / "ddp/last.pt")
    assert ck["data_info"]["tracks"] == 4
    assert all(t.shape[0] == 4 for t in _tensors(ck["data"]["state"]["layers"]))   # both ranks' carried states
    proc = launch("train_hybrid.py", "--out-dir", tmp_path / "ddp", "--max-steps", "8", "--eval-every", "4",
                  "--device", "cpu", "--resume", port=29545)
    assert proc.returncode == 0, why(proc)
    train_hybrid.main(flags + ["--out-dir", str(tmp_path / "single"), "--batch-size", "4", "--max-steps", "8",
                               "--eval-every", "4"])
    train_hybrid.main(flags + ["--out-dir", str(tmp_path / "per_rank"), "--batch-size", "2", "--max-steps", "8",
                               "--eval-every", "4"])
    a, b, c = losses(tmp_path / "single"), losses(tmp_path / "ddp"), losses(tmp_path / "per_rank")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5
    assert max(abs(c[s] - b[s]) for s in a) > 1e-3


def _tensors(x):
    import torch
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for v in x for t in _tensors(v)] if isinstance(x, (list, tuple)) else []
