import json
import os
import signal

import pytest
import torch

from seqlab.core import checkpoint, hooks, optim, runfolder
from seqlab.core.errors import UserError
from seqlab.text.model import CharConfig, CharTransformer


def train_losses(out):
    return {r["step"]: r["loss"] for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "train"}


def test_run_folder_contract(train_char):
    summary, out = train_char()
    for name in runfolder.RUN_FILES + ("loss_curve.png",):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["family"] == "char" and cfg["model"]["n_embd"] == 32 and cfg["train"]["max_steps"] == 20
    for key in ("run_id", "git_commit", "git_dirty", "config_hash", "hook_list", "command", "versions", "device", "seed"):
        assert key in cfg["manifest"], key
    rows = runfolder.read_metrics(out / "metrics.jsonl")
    events = [r["event"] for r in rows]
    assert events[0] == "start" and events[-1] == "end"
    assert [r["step"] for r in rows if r["event"] == "eval"] == [10, 20]
    assert sorted(train_losses(out)) == list(range(1, 21))
    log = (out / "train.log").read_text()
    assert "Device: " in log and "Batch size: 4" in log and "Config: " in log
    assert "Step 20/20 | val_loss=" in log and "steps/s | ETA: " in log and "elapsed: " in log
    assert "Done: 20 steps" in log and "cost: $0.00" in log
    last = checkpoint.load(out / "last.pt", "char")
    best = checkpoint.load(out / "best.pt", "char")
    assert last["step"] == 20 and best["step"] == best["best"]["step"]
    assert best["best"]["value"] == pytest.approx(summary["best"])
    assert last["manifest"]["run_id"] == cfg["manifest"]["run_id"]


def test_same_seed_same_run_and_hash(train_char):
    _, a = train_char(out="a")
    _, b = train_char(out="b")
    assert train_losses(a) == train_losses(b)
    ha = json.loads((a / "config.json").read_text())["manifest"]
    hb = json.loads((b / "config.json").read_text())["manifest"]
    assert ha["config_hash"] == hb["config_hash"] and ha["run_id"] != hb["run_id"]
    _, c = train_char("--lr", "1e-3", out="c")
    assert json.loads((c / "config.json").read_text())["manifest"]["config_hash"] != ha["config_hash"]


def test_resume_equals_uninterrupted_run(train_char):
    _, straight = train_char(out="straight", max_steps=20)
    _, split = train_char(out="split", max_steps=10)
    train_char("--resume", out="split", max_steps=20)
    a, b = train_losses(straight), train_losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 21))
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-6, step
    ma = checkpoint.load(straight / "last.pt")["model"]
    mb = checkpoint.load(split / "last.pt")["model"]
    assert all(torch.allclose(ma[k], mb[k], atol=1e-6) for k in ma)
    events = [r["event"] for r in runfolder.read_metrics(split / "metrics.jsonl")]
    assert events.count("resume") == 1


@hooks.register("test_sigterm_at", hooks.UPDATE)
def _sigterm_at(step=10):
    """Test only: send this process SIGTERM during step `step` (as a pod shutdown would)."""
    def hook(model, s):
        if s == int(step) - 1:
            os.kill(os.getpid(), signal.SIGTERM)
    return hook


def test_sigterm_saves_last_pt_and_resume_is_exact(train_char):
    # dropout, a cosine schedule (which depends on max_steps) and a noise hook all must resume exactly
    flags = ("--dropout", "0.2", "--schedule", "cosine", "--warmup", "3", "--hook", "noise:std=0.01")
    _, straight = train_char(*flags, out="s", max_steps=20)
    with pytest.raises(SystemExit) as exc:
        train_char(*flags, "--hook", "test_sigterm_at:step=13", out="p", max_steps=20)
    assert exc.value.code == 128 + signal.SIGTERM
    split = straight.parent / "p"
    assert checkpoint.load(split / "last.pt")["step"] == 13
    assert "SIGTERM at step 13: saved last.pt" in (split / "train.log").read_text()
    train_char(*flags, "--resume", out="p", max_steps=20)
    a, b = train_losses(straight), train_losses(split)
    assert sorted(b) == list(range(1, 21))
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_refuses_existing_run_folder(train_char):
    _, out = train_char(max_steps=10)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(UserError, match="--resume .* or --overwrite"):
        train_char(out="run", max_steps=10)
    assert (out / "last.pt").read_bytes() == before
    train_char("--overwrite", out="run", max_steps=10)
    assert len([r for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "start"]) == 1


def test_overwrite_never_deletes_a_non_run_folder(train_char, tmp_path):
    precious = tmp_path / "run" / "thesis.tex"
    precious.parent.mkdir()
    precious.write_text("years of work")
    with pytest.raises(UserError, match="not a run folder"):
        train_char("--overwrite", out="run", max_steps=5)
    assert precious.read_text() == "years of work"


def test_resume_without_checkpoint(train_char, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="no last.pt"):
        train_char("--resume", out="run")


def test_corrupt_truncated_and_foreign_checkpoints(train_char, tmp_path):
    _, out = train_char(max_steps=10)
    data = (out / "last.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    ck = checkpoint.load(out / "last.pt")
    ck["family"] = "hybrid"
    torch.save(ck, tmp_path / "other_family.pt")
    for name, msg in [("trunc.pt", "corrupt, truncated"), ("junk.pt", "corrupt, truncated"),
                      ("foreign.pt", "not a checkpoint of this repo"), ("other_family.pt", "is a 'hybrid' checkpoint"),
                      ("missing.pt", "does not exist")]:
        with pytest.raises(UserError, match=msg):
            checkpoint.load(tmp_path / name, "char")


def test_early_stop_counts_patience_in_steps(train_char):
    # lr 0 with clip 0 and no weight decay: val never improves after the first eval
    summary, out = train_char("--early-stop", "--patience", "20", "--lr", "1e-12", "--weight-decay", "0",
                              "--eval-every", "5", max_steps=200)
    assert summary["best_step"] == 5
    assert summary["step"] == 25  # first eval at which step - best_step >= 20
    assert any(r["event"] == "stop" and r["reason"].startswith("early stop") for r in runfolder.read_metrics(out / "metrics.jsonl"))


def test_plateau_detection_reduces_lr(train_char):
    summary, out = train_char("--lr", "1e-12", "--weight-decay", "0", "--eval-every", "5",
                              "--plateau-patience", "10", "--plateau-lr-factor", "0.5", max_steps=30)
    plateaus = [r for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "plateau"]
    assert [p["step"] for p in plateaus] == [15, 25]
    assert plateaus[-1]["lr_scale"] == pytest.approx(0.25)


def test_lr_schedules():
    assert optim.lr_factor(0, "constant", 100) == 1.0
    assert optim.lr_factor(0, "constant", 100, warmup=10) == pytest.approx(0.1)
    assert optim.lr_factor(9, "cosine", 100, warmup=10) == pytest.approx(1.0)
    assert optim.lr_factor(10, "cosine", 100, warmup=10) == pytest.approx(1.0)
    assert optim.lr_factor(55, "cosine", 100, warmup=10, min_ratio=0.1) == pytest.approx(0.55)
    assert optim.lr_factor(100, "cosine", 100, warmup=10, min_ratio=0.1) == pytest.approx(0.1)


def test_param_groups_exclude_norms_biases_embeddings():
    model = CharTransformer(CharConfig(context=8, n_layer=1, n_head=1, n_embd=8, d_ff=16))
    groups = optim.param_groups(model, 0.1, {"blocks.0.mlp.": 0.3})
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["blocks.0.attn.qkv.weight"]["weight_decay"] == 0.1
    for n in ("tok_emb.weight", "pos_emb.weight", "blocks.0.ln1.weight", "blocks.0.attn.qkv.bias", "ln_f.weight"):
        assert by_name[n]["weight_decay"] == 0.0, n
    assert by_name["blocks.0.mlp.fc.weight"]["lr_mult"] == 0.3
    assert sum(len(g["names"]) for g in groups) == len(list(model.parameters()))


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.pt"
    checkpoint.save_atomic({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        checkpoint.save_atomic({"a": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["x.pt"]


def test_bare_resume_adopts_the_runs_flags_and_refuses_changes(text_dir, tmp_path):
    import train_char
    out = tmp_path / "r"
    base = ["--data-dir", str(text_dir), "--out-dir", str(out)]
    train_char.main(base + ["--max-steps", "6", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--context", "8",
                            "--lr", "2e-3", "--seed", "5", "--schedule", "cosine", "--eval-every", "3"])
    summary = train_char.main(base + ["--resume", "--max-steps", "9"])  # only what changes
    assert summary["step"] == 9
    ck = checkpoint.load(out / "last.pt")
    assert ck["train_config"]["lr"] == 2e-3 and ck["train_config"]["seed"] == 5
    assert ck["train_config"]["schedule"] == "cosine" and ck["train_config"]["max_steps"] == 9
    with pytest.raises(UserError, match=r"--resume cannot change --lr 0.002 -> 0.01"):
        train_char.main(base + ["--resume", "--max-steps", "12", "--lr", "1e-2"])
    assert checkpoint.load(out / "last.pt")["step"] == 9


def test_bad_hook_options_are_user_errors(train_char):
    for spec in ("act_stats:every=0", "noise:std=abc", "clip:value=-1", "nope"):
        with pytest.raises(UserError, match="--hook"):
            train_char("--hook", spec, out="h")
