"""src/sample.py: prompts, interactive sessions from piped input, MDN spacings; nothing written."""
import subprocess
import sys

import pytest

import sample
import train_mdn
from conftest import ROOT
from test_mdn_models import make_dataset

RMRM = ROOT / "checkpoints" / "H1_passkey_RMRM_best.pt"


def test_char_prompt_is_continued_and_seeded(train_char, capsys):
    _, out = train_char(max_steps=5)
    capsys.readouterr()
    a = sample.main(["--ckpt", str(out / "best.pt"), "--prompt", "the ", "--max-new-tokens", "12", "--seed", "4"])
    b = sample.main(["--ckpt", str(out / "best.pt"), "--prompt", "the ", "--max-new-tokens", "12", "--seed", "4"])
    assert len(a) == 12 and a == b
    assert capsys.readouterr().out == f"the {a}\nthe {b}\n"


@pytest.mark.skipif(not RMRM.is_file(), reason="promoted hybrid checkpoint absent")
def test_interactive_hybrid_session_from_piped_input(tmp_path):
    """Two lines typed -> two continuations; with --keep-state the second line is read after the
    first (so the model's memory of the session changes the answer's distribution)."""
    lines = "ROMEO:\nJULIET:\n"
    cmd = [sys.executable, "src/sample.py", "--ckpt", str(RMRM), "--interactive", "--max-new-tokens", "30",
           "--top-k", "5", "--seed", "1"]
    fresh = subprocess.run(cmd, input=lines, capture_output=True, text=True, cwd=ROOT)
    assert fresh.returncode == 0, fresh.stderr
    out = fresh.stdout.splitlines()
    assert out[0].startswith("ROMEO:") and any(ln.startswith("JULIET:") for ln in out)
    kept = subprocess.run(cmd + ["--keep-state"], input=lines, capture_output=True, text=True, cwd=ROOT)
    assert kept.returncode == 0 and kept.stdout.splitlines()[0] == out[0]   # same first answer (same seed)
    assert kept.stdout != fresh.stdout                                        # the carried state matters


@pytest.mark.skipif(not RMRM.is_file(), reason="promoted hybrid checkpoint absent")
def test_hybrid_keeps_a_passkey_in_its_state():
    """The passkey model retrieves a key it read in the same prompt (greedy-ish, top-k 1)."""
    prompt = "The pass key is 71294. Remember it. 71294 is the pass key. What is the pass key? The pass key is "
    text = sample.main(["--ckpt", str(RMRM), "--prompt", prompt, "--max-new-tokens", "5", "--top-k", "1"])
    assert text == "71294"


def test_mdn_prints_sampled_spacings(tmp_path, capsys):
    data = make_dataset(tmp_path / "ar1", n=24 * 33, seq_len=33)
    train_mdn.main(["--data-dir", str(data), "--out-dir", str(tmp_path / "r"), "--preset", "cpu", "--context", "32",
                    "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--max-steps", "3", "--eval-every", "3"])
    capsys.readouterr()
    s = sample.main(["--ckpt", str(tmp_path / "r" / "best.pt"), "--max-new-tokens", "7"])
    assert len(s) == 7 and all(x > 0 for x in s)
    assert len(capsys.readouterr().out.split()) == 7


def test_interactive_refuses_mdn(tmp_path):
    from seqlab.core.errors import UserError
    data = make_dataset(tmp_path / "ar1", n=24 * 33, seq_len=33)
    train_mdn.main(["--data-dir", str(data), "--out-dir", str(tmp_path / "r"), "--preset", "cpu", "--context", "32",
                    "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--max-steps", "2", "--eval-every", "2"])
    with pytest.raises(UserError, match="--interactive needs a text model"):
        sample.main(["--ckpt", str(tmp_path / "r" / "best.pt"), "--interactive"])


def test_height_aware_mdn_samples(zeta_set, tmp_path, capsys):
    """A +height model is told the height of its context (it needs it in every forward)."""
    d = zeta_set[0]
    train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "r"), "--preset", "cpu", "--context", "32",
                    "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--max-steps", "2", "--eval-every", "2",
                    "--input-features", "spacing+height"])
    capsys.readouterr()
    s = sample.main(["--ckpt", str(tmp_path / "r" / "best.pt"), "--max-new-tokens", "5"])
    assert len(s) == 5 and all(x > 0 for x in s)
