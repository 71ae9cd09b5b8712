"""The MDN scripts end to end on a tiny generated set: checkpoint round trips, deterministic eval
and diagnostics, planted memory use, J on an ID-free model, one-line errors for bad input."""
import json

import numpy as np
import pytest
import torch

import diagnose_memory
import diagnose_memory_postfix
import eval_mdn
import train_mdn
import train_mdn_memory
import train_mdn_postfix
from seqlab.core import checkpoint, cli
from seqlab.mdn import evaluate as mdn_eval, diagnostics as memory_diagnostics
from seqlab.mdn.memory import PostfixConfig, PostfixMDN
from test_mdn_models import TINY, make_dataset

SIZE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-components", "3", "--batch-size", "8",
        "--eval-every", "3", "--log-every", "1", "--seed", "3", "--warmup", "0"]
CTX = 128  # windows of 129 leave room for rollouts to horizon 100


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("mdn") / "ar1", n=48 * (CTX + 1), seq_len=CTX + 1)


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """One tiny run per script (and POSTFIX with each slot-ID mode); {name: run folder}."""
    root = tmp_path_factory.mktemp("runs")
    specs = {"E0": (train_mdn, []), "prefix": (train_mdn_memory, ["--n-memory-slots", "3"]),
             "permute": (train_mdn_postfix, ["--slot-id-mode", "permute_per_batch", "--use-aux-loss", "--use-ortho-loss",
                                              "--aux-mode", "diagonal", "--n-memory-slots", "4", "--val-stride", "64"]),
             "off": (train_mdn_postfix, ["--slot-id-mode", "off", "--n-memory-slots", "4", "--val-stride", "64"])}
    out = {}
    for name, (script, extra) in specs.items():
        out[name] = root / name
        script.main(["--data-dir", str(data_dir), "--out-dir", str(out[name]), "--context", str(CTX),
                     "--max-steps", "6", *SIZE, *extra])
    return out


@pytest.mark.parametrize("name,family", [("E0", "mdn"), ("prefix", "mdn_prefix"), ("permute", "mdn_postfix")])
def test_checkpoint_round_trip(runs, data_dir, name, family):
    model, ckpt = checkpoint.load_model(runs[name] / "best.pt", family)
    assert ckpt["family"] == family and type(model).family == family
    from seqlab.zeta import spacings as spacing_data
    stride = ckpt["train_config"]["val_stride"]
    wins = mdn_eval.windows(spacing_data.load_split(data_dir, "val"), CTX + 1, stride)
    # best.pt keeps the metrics of its eval: val_nll is logged whichever split chose the checkpoint
    assert mdn_eval.val_metrics(model, wins)["val_nll"] == pytest.approx(ckpt["metrics"]["val_nll"], abs=1e-6)
    cfg = json.loads((runs[name] / "config.json").read_text())
    assert "sliding" in cfg["data"]["train_windows"]  # windows at every offset, not one per stored row


def test_eval_is_deterministic_with_baselines_on_the_same_positions(runs, tmp_path):
    argv = ["--ckpt", str(runs["permute"] / "best.pt"), "--rollout-windows", "4", "--rollout-samples", "2"]
    a = eval_mdn.main(argv + ["--output-dir", str(tmp_path)])
    b = eval_mdn.main(argv)
    assert a["metrics"] == b["metrics"] and a["rollouts"] == b["rollouts"]
    sel = a["metrics"]["last"]
    assert set(sel) == {"model", "wigner_iid", "marginal_iid", "ar", "local_ar", "oracle_local_ar"}
    assert a["selected_on"] == "train_tail" and a["local_ar"]["p"] >= 1
    assert len({m["n_scored"] for m in sel.values()}) == 1 and a["positions"] == f"last ({CTX - 1})"
    assert list(a["metrics"]) == ["all", "last"]  # POSTFIX: one position, no >=k selections
    rows = (tmp_path / "eval_mdn.jsonl").read_text().splitlines()
    assert len(rows) == 1 and (tmp_path / "eval_mdn.png").stat().st_size > 10_000
    assert (tmp_path / "val_curve.png").stat().st_size > 5_000
    e0 = eval_mdn.main(["--ckpt", str(runs["E0"] / "best.pt"), "--rollout-windows", "0"])
    assert {"all", ">=32", "last"} <= set(e0["metrics"]) and e0["metrics"]["all"]["model"]["n_scored"] > 1000
    # KS thins along the positions of a window (16 apart), not across windows (one position each)
    assert e0["metrics"]["all"]["model"]["ks_thin"] == 16 and e0["metrics"]["last"]["model"]["ks_thin"] == 1
    assert e0["metrics"][">=64"]["model"]["n_scored"] == e0["metrics"][">=64"]["oracle_local_ar"]["n_scored"]


def test_ablation_changes_nothing_when_ignored_and_something_when_used():
    torch.manual_seed(0)
    model = PostfixMDN(PostfixConfig(**TINY, n_memory_slots=4)).eval()
    with torch.no_grad():
        model.memory["readout"].copy_(torch.tensor([-30.0, -30.0, 30.0, -30.0]))  # only slot 2 is read
    wins = 0.5 + torch.rand(24, TINY["context"] + 1, generator=torch.Generator().manual_seed(1))
    res = memory_diagnostics.diagnose(model, wins, wins.flatten().numpy(), rollout_windows=0, grad_batches=2)
    per = res["A"]["per_slot"]
    assert per[0] == per[1] == per[3] == 0.0
    assert abs(per[2]) > 1e-3 and res["A"]["value"] == max(per)


def test_J_reports_no_reliance_for_an_id_free_model(runs):
    off = diagnose_memory_postfix.main(["--ckpt", str(runs["off"] / "best.pt"), "--rollout-windows", "0"])
    assert off["details"]["J"]["per_permutation"] == [0.0] * 8
    assert off["summary"]["J"]["status"] in ("PASS", "N/A") and off["details"]["J"]["eval_slot_id_mode"] == "off"
    fixed_ids = memory_diagnostics.diagnose(_fixed_copy(runs["permute"] / "best.pt"), *_val(runs), rollout_windows=0)
    assert any(d != 0.0 for d in fixed_ids["J"]["per_permutation"])  # the same check sees IDs when they are used


def _fixed_copy(path):
    model, _ = checkpoint.load_model(path, "mdn_postfix")
    with torch.no_grad():
        model.memory["slot_id"].mul_(50)  # make the ID table matter
    return model


def _val(runs):
    from seqlab.zeta import spacings as spacing_data
    data_dir = checkpoint.load(runs["permute"] / "best.pt")["data_info"]["data_dir"]
    wins = mdn_eval.windows(spacing_data.load_split(data_dir, "val"), CTX + 1)
    return wins, spacing_data.load_split(data_dir, "train").flatten().numpy()


def test_diagnostics_are_deterministic_and_complete(runs, tmp_path):
    argv = ["--ckpt", str(runs["permute"] / "best.pt"), "--rollout-windows", "2", "--rollout-samples", "2",
            "--n-perms", "3"]
    a = diagnose_memory_postfix.main(argv + ["--output-dir", str(tmp_path)])
    b = diagnose_memory_postfix.main(argv)
    assert a["details"] == b["details"]
    assert list(a["summary"]) == list("ABCDEFGHIJK")
    assert a["details"]["B"]["basis"].startswith("content-only")
    assert a["summary"]["G"]["value"] is not None and a["summary"]["D"]["status"] in ("PASS", "WARN")
    assert len((tmp_path / "postfix_diagnostics.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "postfix_diagnostics.png").stat().st_size > 10_000


def _one_line_error(capsys, fn, *fragments):
    with pytest.raises(SystemExit) as e:
        cli.run(fn)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for f in fragments:
        assert f in err[0], err[0]


@pytest.mark.parametrize("bad,fragment", [
    (torch.ones(1000), "2-D tensor"),
    (torch.full((4, CTX + 1), float("nan")), "not a valid unfolded spacing"),
    (-torch.ones(4, CTX + 1), "not a valid unfolded spacing"),
])
def test_bad_data_gives_one_line_error_and_writes_nothing(data_dir, tmp_path, capsys, bad, fragment):
    d = tmp_path / "bad"
    d.mkdir()
    for f in ("val.pt", "meta.pt"):
        (d / f).write_bytes((data_dir / f).read_bytes())
    torch.save(bad, d / "train.pt")
    out = tmp_path / "out"
    _one_line_error(capsys, lambda: train_mdn.main(["--data-dir", str(d), "--out-dir", str(out), *SIZE]), fragment)
    assert not out.exists()


def test_char_checkpoint_refused_by_eval_mdn(tmp_path, capsys, runs):
    ck = checkpoint.load(runs["E0"] / "best.pt")
    ck["family"] = "char"
    torch.save(ck, tmp_path / "char.pt")
    _one_line_error(capsys, lambda: eval_mdn.main(["--ckpt", str(tmp_path / "char.pt")]), "'char' checkpoint")
    _one_line_error(capsys, lambda: eval_mdn.main(["--ckpt", str(tmp_path / "none.pt")]), "does not exist")
    _one_line_error(capsys, lambda: diagnose_memory_postfix.main(["--ckpt", str(runs["E0"] / "best.pt")]),
                    "'mdn' checkpoint")


def test_user_commands_parse_as_typed():
    """The seeds' CLAUDE.md commands (flags exactly as typed) parse, with the original GPU defaults."""
    from seqlab.mdn import task as mdn_task
    args = mdn_task.parse(train_mdn_postfix.build_parser(), [
        "--data-dir", "data/continuous_2M", "--out-dir", "out/E5_experiment", "--seed", "7",
        "--slot-id-mode", "permute_per_batch", "--content-mode", "normal", "--use-aux-loss",
        "--early-stop", "--patience", "800", "--batch-size", "512", "--use-amp"])
    assert args.batch_size == 512 and args.amp is True and args.patience == 800 and args.early_stop
    assert (args.n_layer, args.n_head, args.n_embd, args.max_steps, args.eval_every, args.lr) == (6, 8, 256, 20000, 500, 3e-4)
    assert args.schedule == "cosine" and args.memory_lr_mult == 0.3
    cpu = mdn_task.parse(train_mdn_postfix.build_parser(), ["--data-dir", "d", "--out-dir", "o", "--preset", "cpu",
                                                            "--n-embd", "32"])
    assert (cpu.n_layer, cpu.n_embd, cpu.batch_size) == (2, 32, 32)  # preset fills defaults, flags win


def test_resume_continues_the_stream_exactly(data_dir, tmp_path):
    """Sliding-window sampler + POSTFIX (permutation RNG, aux ramp): 3 steps + resume == 6 straight
    (constant LR: a cosine schedule depends on --max-steps)."""
    from seqlab.core import runfolder
    base = ["--data-dir", str(data_dir), "--context", "32", *SIZE, "--slot-id-mode", "permute_per_batch",
            "--use-aux-loss", "--aux-ramp-steps", "4", "--n-memory-slots", "3", "--schedule", "constant"]
    train_mdn_postfix.main(base + ["--out-dir", str(tmp_path / "a"), "--max-steps", "6"])
    train_mdn_postfix.main(base + ["--out-dir", str(tmp_path / "b"), "--max-steps", "3"])
    train_mdn_postfix.main(base + ["--out-dir", str(tmp_path / "b"), "--max-steps", "6", "--resume"])

    def losses(d):
        return {r["step"]: r["loss"] for r in runfolder.read_metrics(d / "metrics.jsonl") if r["event"] == "train"}
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert all(abs(a[s] - b[s]) < 1e-6 for s in a), (a, b)


def test_prefix_diagnostics_mark_what_does_not_apply(runs):
    row = diagnose_memory.main(["--ckpt", str(runs["prefix"] / "best.pt"), "--rollout-windows", "0", "--n-perms", "2"])
    s = row["summary"]
    assert s["D"]["status"] == s["I"]["status"] == s["J"]["status"] == "N/A"
    assert len(row["details"]["A"]["per_slot"]) == 3 and len(row["details"]["A"]["multi_slot_curve"]) == 3
    assert row["details"]["B"]["value"] is not None and s["K"]["value"] is not None
