"""Gradient accumulation and periodic checkpoints in the engine (every trainer inherits them)."""
import json
from argparse import Namespace

import pytest
import torch
import torch.nn.functional as F

from seqlab.core import checkpoint, engine, runfolder
from seqlab.text.model import CharConfig, CharTransformer


class SlicesTask:
    """Consecutive slices of one fixed batch: micro-batch i is rows [iB, (i+1)B), so N micro-batches
    of B are exactly one batch of N*B (what accumulation must reproduce)."""
    family, metric = "char", "val_loss"

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size, self.i = x, y, batch_size, 0

    def next_batch(self):
        s = slice(self.i * self.batch_size, (self.i + 1) * self.batch_size)
        self.i = (self.i + 1) % (len(self.x) // self.batch_size)
        return self.x[s], self.y[s]

    def loss(self, model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    def evaluate(self, model):
        return {"val_loss": float(self.loss(model, (self.x, self.y)))}

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, s):
        self.i = s["i"]

    def describe(self):
        return {"rows": len(self.x)}


def run(tmp_path, name, batch_size, grad_accum, steps=3):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 99, (16, 12), generator=g)
    y = torch.randint(0, 99, (16, 12), generator=g)
    model = CharTransformer(CharConfig(context=12, n_layer=1, n_head=2, n_embd=16, dropout=0.0)).double()
    args = Namespace(out_dir=str(tmp_path / name), resume=False, overwrite=False, device="cpu", amp=None, compile=False,
                     gpu_price=None, hooks=[], tensorboard=False, seed=0, max_steps=steps, eval_every=steps,
                     log_every=1, batch_size=batch_size, grad_accum=grad_accum, lr=1e-2, weight_decay=0.1,
                     beta1=0.9, beta2=0.95, grad_clip=1.0, schedule="constant", warmup=0, min_lr=None,
                     early_stop=False, patience=100, plateau_patience=0, plateau_lr_factor=None,
                     save_every=0, keep_last=0, data_dir=None)
    engine.fit(model, SlicesTask(x, y, batch_size), args)
    return model, tmp_path / name


def test_accumulating_4_micro_batches_equals_one_batch_4x_larger(tmp_path):
    big, out_big = run(tmp_path, "big", batch_size=16, grad_accum=1)
    acc, out_acc = run(tmp_path, "acc", batch_size=4, grad_accum=4)
    for (k, a), b in zip(big.state_dict().items(), acc.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k
    la = [r["loss"] for r in runfolder.read_metrics(out_big / "metrics.jsonl") if r["event"] == "train"]
    lb = [r["loss"] for r in runfolder.read_metrics(out_acc / "metrics.jsonl") if r["event"] == "train"]
    assert max(abs(p - q) for p, q in zip(la, lb)) < 1e-6
    assert "Batch size: 4 x 4 accumulated = 16 global" in (out_acc / "train.log").read_text()


def test_accumulation_is_not_a_no_op(tmp_path):
    """The same micro-batch size without accumulation takes different steps (the test above can fail)."""
    acc, _ = run(tmp_path, "acc", batch_size=4, grad_accum=4)
    small, _ = run(tmp_path, "small", batch_size=4, grad_accum=1)
    assert max((a - b).abs().max() for a, b in zip(acc.state_dict().values(), small.state_dict().values())) > 1e-4


def test_save_every_keep_last_and_resume_from_a_periodic_checkpoint(train_char):
    _, out = train_char("--save-every", "4", "--keep-last", "2", "--grad-accum", "2", max_steps=12)
    kept = checkpoint.periodic(out)
    assert [p.name for p in kept] == ["ckpt_8.pt", "ckpt_12.pt"]
    ck = checkpoint.load(kept[0])
    assert ck["step"] == 8 and set(ck) == set(checkpoint.load(out / "last.pt"))   # the format of last.pt
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["grad_accum"] == 2
    # eval scripts take a periodic checkpoint like any other
    import eval_char
    row = eval_char.main(["--ckpt", str(kept[0]), "--max-new-tokens", "0"])
    assert row["step"] == 8


def test_keep_last_zero_keeps_all(train_char):
    _, out = train_char("--save-every", "5", max_steps=15)
    assert [p.name for p in checkpoint.periodic(out)] == ["ckpt_5.pt", "ckpt_10.pt", "ckpt_15.pt"]


@pytest.mark.parametrize("bad", [["--grad-accum", "0"], ["--save-every", "-1"]])
def test_bad_values_are_one_line_errors(train_char, bad):
    with pytest.raises(SystemExit) as e:
        train_char(*bad)
    assert e.value.code == 2


def test_accumulation_under_torchrun_equals_one_process(text_dir, tmp_path, train_char):
    """2 gloo ranks x batch 2 x 2 micro-batches = one process x batch 4 x 2 micro-batches (the inner
    backward skips the all-reduce; the last one averages the accumulated gradients)."""
    from conftest import TINY
    from test_distributed import launch
    flags = [*TINY, "--dropout", "0", "--max-steps", "6", "--eval-every", "3", "--grad-accum", "2"]
    flags[flags.index("--batch-size") + 1] = "2"
    proc = launch("train_char.py", "--data-dir", text_dir, "--out-dir", tmp_path / "ddp", *flags, "--device", "cpu",
                  port=29551)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, single = train_char("--dropout", "0", "--batch-size", "4", "--eval-every", "3", "--grad-accum", "2",
                           out="single", max_steps=6)
    a = {r["step"]: r["loss"] for r in runfolder.read_metrics(single / "metrics.jsonl") if r["event"] == "train"}
    b = {r["step"]: r["loss"] for r in runfolder.read_metrics(tmp_path / "ddp/metrics.jsonl") if r["event"] == "train"}
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5
    assert "2 per rank x 2 ranks x 2 accumulated = 8 global" in (tmp_path / "ddp/train.log").read_text()
