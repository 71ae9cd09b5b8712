"""Which part of the train stream an MDN trainer draws from (--train-fraction, --train-heights), and
POSTFIX's --perm-warmup-steps."""
import json

import numpy as np
import pytest
import torch

import train_mdn
import train_mdn_postfix
from seqlab.core.errors import UserError
from seqlab.mdn.memory import PostfixConfig, PostfixMDN
from seqlab.zeta import spacings as spacing_data
from test_mdn_models import TINY, make_dataset

FLAGS = ["--preset", "cpu", "--context", "32", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
         "--n-components", "3", "--batch-size", "8", "--max-steps", "2", "--eval-every", "2"]


@pytest.fixture
def zeta_dir(zeta_set):
    return zeta_set


def test_height_of_count_sits_on_the_zeros(zeta_dir):
    _, gamma = zeta_dir
    n = np.arange(1, len(gamma) + 1)
    t = spacing_data.height_of_count(n)
    mean_spacing = 2 * np.pi / np.log(gamma / (2 * np.pi))
    assert np.all(np.abs(t - gamma)[10:] < 1.5 * mean_spacing[10:])      # |S(t)| < 1.5 here
    assert np.all(np.diff(t) > 0)


def test_train_heights_selects_the_zeros_in_range(zeta_dir, tmp_path):
    d, gamma = zeta_dir
    train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "h"), "--train-heights", "1000:2000", *FLAGS])
    info = json.loads((tmp_path / "h" / "config.json").read_text())["data"]
    lo, hi = info["train_range"]
    assert info["n_train_spacings"] == hi - lo
    # spacing i lies between zeros i+1 and i+2: the chosen ones are those with gamma in [1000, 2000)
    inside = np.nonzero((gamma[:-1] >= 1000) & (gamma[:-1] < 2000))[0]
    assert abs(lo - inside[0]) <= 2 and abs(hi - (inside[-1] + 1)) <= 2
    assert info["train_heights"][0] == pytest.approx(1000, abs=5) and info["train_heights"][1] == pytest.approx(2000, abs=5)


def test_train_fraction_takes_the_tail_and_the_sampler_stays_inside(tmp_path):
    d = make_dataset(tmp_path / "ar1", n=40 * 33, seq_len=33)
    train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "f"), "--train-fraction", "0.25", *FLAGS])
    info = json.loads((tmp_path / "f" / "config.json").read_text())["data"]
    n_train = 30 * 33
    assert info["train_range"] == [n_train - round(0.25 * n_train), n_train]
    from seqlab.mdn.task import MDNTask
    task = MDNTask("mdn", d, 32, 8, 0, train_fraction=0.25)
    full = spacing_data.load_split(d, "train").flatten()
    tail = full[info["train_range"][0]:]
    x, _ = task.next_batch()
    for row in x:          # every window is a run of the tail
        assert any(torch.equal(row, tail[i:i + 32]) for i in range(len(tail) - 32))


def test_bad_selections_are_one_line_errors(zeta_dir, tmp_path):
    d, _ = zeta_dir
    with pytest.raises(UserError, match="selects no train spacing"):
        train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "x"), "--train-heights", "5e6:", *FLAGS])
    with pytest.raises(UserError, match="not both"):
        train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "y"), "--train-heights", "1000:",
                        "--train-fraction", "0.5", *FLAGS])
    for bad in ("2000:1000", "abc", "1000"):
        with pytest.raises(SystemExit):
            train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "z"), "--train-heights", bad, *FLAGS])
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_perm_warmup_keeps_fixed_ids_then_permutes():
    torch.manual_seed(0)
    cfg = dict(TINY, n_memory_slots=4, slot_id_mode="permute_per_batch", perm_warmup_steps=5)
    model = PostfixMDN(PostfixConfig(**cfg)).train()
    fixed = PostfixMDN(PostfixConfig(**dict(cfg, slot_id_mode="fixed"))).train()
    fixed.load_state_dict(model.state_dict())
    x = 0.5 + torch.rand(6, 32, generator=torch.Generator().manual_seed(1))
    y = 0.5 + torch.rand(6, 32, generator=torch.Generator().manual_seed(2))
    assert torch.equal(model.loss(x, y, step=4)[0], fixed.loss(x, y, step=4)[0])      # warm-up: IDs fixed
    torch.manual_seed(3)
    after = [float(model.loss(x, y, step=5)[0].detach()) for _ in range(4)]                     # permuted
    assert max(abs(a - float(fixed.loss(x, y, step=5)[0].detach())) for a in after) > 1e-6


def test_postfix_trainer_records_perm_warmup(tmp_path):
    d = make_dataset(tmp_path / "ar1", n=40 * 33, seq_len=33)
    train_mdn_postfix.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "p"), "--slot-id-mode", "permute_per_batch",
                            "--perm-warmup-steps", "1", "--n-memory-slots", "2", *FLAGS])
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["model"]["perm_warmup_steps"] == 1


def test_height_inputs_cover_the_run_range_only(zeta_dir):
    """A height-aware run on part of the train split computes the heights of that part alone, and they
    are the heights of the whole split at the same indices."""
    from seqlab.mdn import heights
    from seqlab.mdn.task import MDNTask
    d, _ = zeta_dir
    task = MDNTask("mdn", d, 32, 8, 0, train_fraction=0.5, use_heights=True)
    meta = spacing_data.load_meta(d)
    n = spacing_data.load_split(d, "train").numel()
    whole = heights.log_heights(meta, "train", n).astype(np.float32)
    (lo, hi), (_, cut) = task.train_range, task.fit_range
    assert lo > 0 and len(task.sampler.heights) == cut - lo
    assert np.array_equal(task.sampler.heights.numpy(), whole[lo:cut])
    assert np.array_equal(task.sel_heights[0].numpy(), whole[cut:cut + 33])
