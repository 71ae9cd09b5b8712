"""`--out-dir X --resume` alone continues any trainer after SIGTERM, to the same final loss as a run
that was never interrupted (the flags, data dir included, come from the run's own config)."""
import pytest
import signal

import train_char
import train_hybrid
import train_mdn
import train_mdn_memory
import train_mdn_postfix
from seqlab.core import runfolder
from test_engine import _sigterm_at  # noqa: F401  (registers the test_sigterm_at hook)
from test_mdn_models import make_dataset

TEXT_FLAGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--context", "16", "--batch-size", "4",
              "--eval-every", "4", "--log-every", "1", "--sample-tokens", "4", "--seed", "3"]
MDN_FLAGS = ["--preset", "cpu", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-components", "3",
             "--batch-size", "8", "--context", "32", "--eval-every", "4", "--log-every", "1", "--seed", "3", "--warmup", "2"]
TRAINERS = {
    "char": (train_char, "text", TEXT_FLAGS + ["--dropout", "0.1"]),
    "hybrid": (train_hybrid, "text", TEXT_FLAGS + ["--layout", "RM", "--n-layer", "2", "--eval-chunks", "2"]),
    "mdn": (train_mdn, "spacings", MDN_FLAGS),
    "mdn_prefix": (train_mdn_memory, "spacings", MDN_FLAGS + ["--n-memory-slots", "2"]),
    "mdn_postfix": (train_mdn_postfix, "spacings", MDN_FLAGS + ["--n-memory-slots", "2", "--slot-id-mode",
                                                                "permute_per_batch", "--use-aux-loss"]),
}


@pytest.fixture(scope="module")
def spacing_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("spacings") / "ar1", n=24 * 33, seq_len=33)


def losses(out):
    return {r["step"]: r["loss"] for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "train"}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_bare_resume_after_sigterm_equals_uninterrupted(name, text_dir, spacing_dir, tmp_path, capsys):
    script, data, flags = TRAINERS[name]
    data_dir = text_dir if data == "text" else spacing_dir
    common = ["--data-dir", str(data_dir), "--max-steps", "8", *flags]
    script.main(["--out-dir", str(tmp_path / "straight"), *common])
    split = tmp_path / "split"
    with pytest.raises(SystemExit) as exc:
        script.main(["--out-dir", str(split), *common, "--hook", "test_sigterm_at:step=5"])
    assert exc.value.code == 128 + signal.SIGTERM
    log = (split / "train.log").read_text()
    assert "continue with: python " in log and f"--out-dir {split} --resume" in log
    summary = script.main(["--out-dir", str(split), "--resume"])        # nothing else
    assert summary["step"] == 8
    a, b = losses(tmp_path / "straight"), losses(split)
    assert sorted(b) == list(range(1, 9))
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6


def test_a_new_run_still_needs_data_dir(tmp_path):
    from seqlab.core.errors import UserError
    with pytest.raises(UserError, match="--data-dir is required"):
        train_char.main(["--out-dir", str(tmp_path / "r"), "--max-steps", "2"])
    assert not (tmp_path / "r").exists()
