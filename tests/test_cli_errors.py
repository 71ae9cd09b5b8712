"""Bad input: one line on stderr, a non-zero exit, nothing overwritten."""
import subprocess
import sys

import pytest

from conftest import ROOT, TINY


def run(script, *args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=120)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for f in fragments:
        assert f in lines[0], lines[0]


def train(text_dir, out, *extra):
    return run("src/train_char.py", "--data-dir", text_dir, "--out-dir", out, "--max-steps", 4, *TINY, *extra)


def test_missing_and_empty_data_dir(tmp_path):
    assert_one_line_error(train(tmp_path / "nope", tmp_path / "o"), "does not exist", "prepare_text.py")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(train(tmp_path / "empty", tmp_path / "o"), "train.npy is missing")
    assert not (tmp_path / "o").exists()


def test_non_utf8_and_non_ascii_text(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    assert_one_line_error(run("scripts/prepare_text.py", "--input", f, "--out-dir", tmp_path / "d"), "not UTF-8")
    g = tmp_path / "cyr.txt"
    g.write_text("привет мир " * 100, encoding="utf-8")
    assert_one_line_error(run("scripts/prepare_text.py", "--input", g, "--out-dir", tmp_path / "d"), "UNK rate")
    assert not (tmp_path / "d").exists()


def test_context_longer_than_val_split(text_dir, tmp_path):
    proc = train(text_dir, tmp_path / "o", "--context", "4096")
    assert_one_line_error(proc, "val split has", "fewer than context 4096")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,value", [("--max-steps", "0"), ("--batch-size", "-3"), ("--lr", "0"),
                                        ("--n-layer", "-1"), ("--eval-every", "0")])
def test_non_positive_numeric_flags(text_dir, tmp_path, flag, value):
    assert_one_line_error(train(text_dir, tmp_path / "o", flag, value), flag)


def test_existing_out_dir_and_bad_resume(text_dir, tmp_path):
    out = tmp_path / "o"
    assert train(text_dir, out).returncode == 0
    stamp = (out / "last.pt").read_bytes()
    assert_one_line_error(train(text_dir, out), "--resume", "--overwrite")
    assert (out / "last.pt").read_bytes() == stamp
    (tmp_path / "fresh").mkdir()
    assert_one_line_error(train(text_dir, tmp_path / "fresh", "--resume"), "no last.pt")


def test_bad_checkpoints_in_eval(text_dir, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage")
    assert_one_line_error(run("src/eval_char.py", "--ckpt", bad), "corrupt, truncated")
    assert_one_line_error(run("src/eval_char.py", "--ckpt", tmp_path / "none.pt"), "does not exist")


def test_eval_writes_outputs(text_dir, tmp_path):
    out = tmp_path / "o"
    assert train(text_dir, out).returncode == 0
    proc = run("src/eval_char.py", "--ckpt", out / "best.pt", "--data-dir", text_dir, "--output-dir", tmp_path / "r",
               "--max-new-tokens", 20, "--top-k", 5)
    assert proc.returncode == 0, proc.stderr
    assert "bits/char" in proc.stdout
    import json
    row = json.loads((tmp_path / "r/eval.json").read_text())
    assert row["val_bpc"] == pytest.approx(row["val_loss"] / 0.6931471805599453)
    assert (tmp_path / "r/sample.txt").read_text().startswith("The ")
    assert (tmp_path / "r/loss_curve.png").stat().st_size > 1000
