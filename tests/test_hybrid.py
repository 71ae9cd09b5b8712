"""Family 3: the hybrid model, its state handoff, training script, checkpoints and monitors."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from seqlab.core import checkpoint, runfolder
from seqlab.hybrid import monitors
from seqlab.hybrid.model import HybridConfig, HybridLM, detach_state
from seqlab.hybrid import scan

LAYOUTS = ["RMAP", "RRRR", "MMMM", "AAAA"]
TINY = ["--n-layer", "4", "--n-head", "2", "--n-embd", "32", "--context", "16", "--batch-size", "2",
        "--layout", "RMAP", "--eval-every", "5", "--log-every", "1", "--sample-tokens", "4", "--seed", "3",
        "--warmup", "2", "--eval-chunks", "3"]


def tiny(layout="RMAP", context=24, scan="chunked", **kw):
    torch.manual_seed(0)
    cfg = HybridConfig(context=context, n_layer=len(layout), n_head=2, n_embd=32, layout=layout, gamma_init=0.5,
                       chunk=8, pos_emb=layout == "AAAA", scan=scan, **kw)
    return HybridLM(cfg).eval()


def doc_resets(b, T):
    z = torch.zeros(b, T, dtype=torch.bool)
    z[0, 10] = z[1, 3] = True
    return z


@pytest.mark.parametrize("layout", LAYOUTS)
def test_parallel_equals_step_mode(layout):
    model = tiny(layout)
    x = torch.randint(0, 99, (2, 24))
    for reset in (None, doc_resets(2, 24)):
        par, s_par = model(x, reset=reset)
        state, out = model.init_state(2), []
        for t in range(24):
            logits, state = model(x[:, t:t + 1], state, None if reset is None else reset[:, t:t + 1])
            out.append(logits)
        assert torch.allclose(torch.cat(out, 1), par, atol=1e-5), layout


def test_chunked_scan_model_equals_sequential_scan_model():
    fast = tiny("RMAP")
    slow = HybridLM(HybridConfig(**{**vars(fast.config), "scan": "sequential"})).eval()
    slow.load_state_dict(fast.state_dict())
    x = torch.randint(0, 99, (2, 24))
    assert torch.allclose(fast(x, reset=doc_resets(2, 24))[0], slow(x, reset=doc_resets(2, 24))[0], atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_causality(layout):
    model = tiny(layout)
    x = torch.randint(0, 99, (2, 24))
    base = model(x)[0]
    for t in (0, 7, 20):
        y = x.clone()
        y[:, t + 1:] = torch.randint(0, 99, y[:, t + 1:].shape)
        out = model(y)[0]
        assert torch.allclose(out[:, :t + 1], base[:, :t + 1], atol=1e-6)
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


def test_reset_isolates_documents():
    model = tiny("RMAP")
    x = torch.randint(0, 99, (2, 24))
    reset = torch.zeros(2, 24, dtype=torch.bool)
    reset[:, 12] = True
    a = model(x, reset=reset)[0]
    y = x.clone()
    y[:, :12] = torch.randint(0, 99, (2, 12))
    b = model(y, reset=reset)[0]
    assert torch.allclose(a[:, 12:], b[:, 12:], atol=1e-5)


def test_two_chunks_with_handoff_equal_one_long_chunk():
    model = tiny("RMAP", context=32)
    x = torch.randint(0, 99, (2, 32))
    reset = torch.zeros(2, 32, dtype=torch.bool)
    reset[1, 20] = True
    whole, s_whole = model(x, reset=reset)
    a, s = model(x[:, :16], reset=reset[:, :16])
    b, s2 = model(x[:, 16:], detach_state(s), reset[:, 16:])
    assert torch.allclose(torch.cat([a, b], 1), whole, atol=1e-5)
    for t1, t2 in zip(_tensors(s2), _tensors(s_whole)):
        assert torch.allclose(t1, t2, atol=1e-5)


def _tensors(state):
    out = []
    def walk(x):
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
    walk(state["layers"])
    return out


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = HybridLM(HybridConfig(context=16, n_layer=4, n_head=2, n_embd=32, layout="RMAP", learnable_alpha=True,
                                  state_norm_groups=2, pos_emb=True))
    x = torch.randint(0, 99, (2, 16))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):   # the low-rank second factors (W2, V2) get gradient once W1, V1 left zero (step 2)
        opt.zero_grad()
        state = model.init_state(2)
        for _ in range(2):   # the second chunk reads a carried state
            _, state, loss = model(x, state, targets=x)
            state = detach_state(state)
        loss.backward()
        if step == 0:
            opt.step()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, dead


def test_decay_and_dt_init():
    model = HybridLM(HybridConfig(n_layer=3, layout="RMR", n_embd=64, n_head=2))
    att, mixer = model.layers[0].att, model.layers[1].mixer
    w = torch.exp(-torch.exp(att.decay.detach()))               # retention per token at init (low-rank part 0)
    # the published ramp: -6 .. -1 in log(-log w), i.e. retention 0.9975 (long memory = near 1) .. 0.69
    assert w.max() == pytest.approx(math.exp(-math.exp(-6)), rel=1e-6) and w.min() == pytest.approx(math.exp(-math.exp(-1)), rel=1e-6)
    assert (w[1:] < w[:-1]).all()                               # channel 0 longest; head 0 is the long head
    x = torch.randn(1, 8, 64)
    assert torch.equal(att.log_retention(x), -torch.exp(att.decay).expand(1, 8, 64))  # low rank starts at 0 (V1 = 0)
    xx = torch.randn(1, 8, 64)
    assert all(torch.allclose(z, x + xx * m) for z, m in zip(att.mixes(x, xx), att.mu))  # ddlerp starts static (W1 = 0)
    first, last = model.layers[0].att, model.layers[2].att
    assert first.mu[1, 0] == 1 and (first.mu[1, 1:] < first.mu[1, :-1]).all()    # channel 0 reads the previous token
    assert (last.mu[1, 1:] < first.mu[1, 1:]).all()                              # deeper layers shift less
    assert torch.allclose(last.bonus.flatten()[[0, 1, -1]], torch.tensor([1.0, 1 - 1 / 63 + 0.1, 0.0]))  # u ramp, last layer
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias.detach())
    assert dt.min() >= 0.001 - 1e-6 and dt.max() <= 0.1 + 1e-6
    assert torch.allclose(-torch.exp(mixer.A_log[0]), -torch.arange(1.0, 17.0))
    assert mixer.R == math.ceil(64 / 16)


def test_state_norm_same_in_both_modes():
    model = tiny("RMP", context=8, state_norm_groups=2)
    x = torch.randint(0, 99, (2, 16))
    par, _ = model.forward_stream(x)
    state, out = model.init_state(2), []
    for t in range(16):
        logits, state = model(x[:, t:t + 1], state)
        out.append(logits)
    assert torch.allclose(torch.cat(out, 1), par, atol=1e-5)


# ---- the training script ----------------------------------------------------------------------

@pytest.fixture
def train_hybrid(text_dir, tmp_path):
    import train_hybrid as script

    def run(*extra, out="run", max_steps=10):
        out_dir = tmp_path / out
        argv = ["--data-dir", str(text_dir), "--out-dir", str(out_dir), "--max-steps", str(max_steps), *TINY, *extra]
        return script.main(argv), out_dir
    return run


def test_checkpoint_round_trip_and_monitor_rows(train_hybrid):
    summary, out = train_hybrid("--doc-sep", ".\\n")
    model, ckpt = checkpoint.load_model(out / "best.pt", "hybrid")
    assert ckpt["family"] == "hybrid" and ckpt["model_config"]["layout"] == "RMAP"
    fresh = HybridLM(HybridConfig(**ckpt["model_config"]))
    fresh.load_state_dict(torch.load(out / "best.pt", weights_only=True)["model"])
    x = torch.randint(0, 99, (2, 16))
    assert torch.equal(fresh.eval()(x)[0], model(x)[0])
    rows = runfolder.read_metrics(out / "metrics.jsonl")
    mon = [r for r in rows if r["event"] == "monitor"]
    assert [r["step"] for r in mon] == [5, 10]
    for key in ("grad_norm_rwkv", "grad_norm_mamba", "grad_norm_attention", "grad_ratio_rwkv_mamba", "state_norm",
                "decay_frac_short", "decay_frac_long", "dt_var_min", "plateau_share"):
        assert key in mon[-1], key
    assert mon[-1]["grad_norm_rwkv"] > 0 and mon[-1]["grad_norm_mamba"] > 0 and len(mon[-1]["state_norm"]) == 4
    assert ckpt["data"]["state"] is not None and ckpt["data"]["served"] == ckpt["step"]


def test_resume_is_exact_with_carried_state(train_hybrid):
    def losses(out):
        return {r["step"]: r["loss"] for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "train"}
    flags = ("--schedule", "constant", "--doc-sep", ".\\n")   # cosine would depend on max_steps
    _, straight = train_hybrid(*flags, out="straight", max_steps=10)
    _, split = train_hybrid(*flags, out="split", max_steps=5)
    train_hybrid(*flags, "--resume", out="split", max_steps=10)
    a, b = losses(straight), losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6


def test_bad_layout_is_one_line_error(text_dir, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "src/train_hybrid.py"), "--data-dir", str(text_dir),
                           "--out-dir", str(tmp_path / "o"), "--n-layer", "3", "--layout", "RXM"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unknown layer kinds X" in proc.stderr
    assert not (tmp_path / "o").exists()


# ---- monitors ----------------------------------------------------------------------------------

def monitor_flags(model, ids):
    mon = monitors.Monitor()
    stats = monitors.probe(model, ids, 16, 2)
    mon.sq = {"rwkv": 1.0, "mamba": 1.0, "attention": 1.0, "other": 1.0}
    mon.n_steps = 1
    state = {"best": 2.0, "best_step": 10, "max_steps": 100, "lr_scale": 1.0, "train_loss": 2.0}
    flags, row = mon.checks(model, stats, 10, 2.0, state)
    return {rule for rule, _, _ in flags}, row


def test_monitors_flag_a_planted_collapse_and_stay_quiet_when_healthy():
    model = tiny("RMAP", context=16)
    ids = torch.randint(2, 99, (200,))
    flags, row = monitor_flags(model, ids)
    assert flags == set() and row["collapsed_layers"] == []
    with torch.no_grad():
        model.layers[1].mixer.out_proj.weight.zero_()       # a dead Mamba block: its output is constant (zero)
    flags, row = monitor_flags(model, ids)
    assert "collapse" in flags and row["collapsed_layers"] == [1]


def test_near_dead_layer_warns_ratio_is_per_parameter_and_g35_keeps_the_mode():
    model = tiny("RMAP", context=16)
    ids = torch.randint(2, 99, (200,))
    _, row = monitor_flags(model, ids)
    n = {"rwkv": 0, "mamba": 0}
    for name, p in model.named_parameters():
        c = monitors.component_of(model, name)
        if c in n:
            n[c] += p.numel()
    assert row["grad_ratio_rwkv_mamba_raw"] == 1.0                      # equal raw norms (planted) ...
    assert row["grad_ratio_rwkv_mamba"] == pytest.approx((n["mamba"] / n["rwkv"]) ** 0.5)  # ... per parameter
    stats = monitors.probe(model, ids, 16, 2)
    rel = stats[1]["update_std"] / stats[1]["input_std"]
    with torch.no_grad():
        model.layers[1].mixer.out_proj.weight *= 1e-4 / rel              # Mamba layer 1 at 1e-4 of its input
    mon = monitors.Monitor()
    mon.sq, mon.n_steps = {c: 1.0 for c in monitors.COMPONENTS}, 1
    flags, row = mon.checks(model, monitors.probe(model, ids, 16, 2), 10, 2.0,
                            {"best": 2.0, "best_step": 10, "max_steps": 100, "lr_scale": 1.0, "train_loss": 2.0})
    assert ("collapse", "warn") in {(r, lvl) for r, lvl, _ in flags} and row["near_dead_layers"] == [1]
    assert row["collapsed_layers"] == []
    model.train()
    monitors.g35_report(model, ids, 2, 16, max_chunks=2)
    assert model.training                                               # the caller's mode restored


def test_grad_ratio_band():
    assert monitors.ratio_level(1.0) == "ok" and monitors.ratio_level(0.3) == "ok"
    assert monitors.ratio_level(0.2) == "warn" and monitors.ratio_level(5.0) == "warn"
    assert monitors.ratio_level(0.05) == "fail" and monitors.ratio_level(20.0) == "fail"


def test_overfit_and_lr_drop_rules():
    mon = monitors.Monitor()
    model = tiny("RMAP", context=16)
    stats = monitors.probe(model, torch.randint(2, 99, (200,)), 16, 2)
    base = {"best": 1.0, "best_step": 10, "max_steps": 1000}
    mon.checks(model, stats, 10, 1.0, {**base, "lr_scale": 1.0, "train_loss": 1.2})
    flags, _ = mon.checks(model, stats, 20, 1.1, {**base, "lr_scale": 0.5, "train_loss": 1.0})
    assert {f[0] for f in flags} == {"overfit"}
    flags, row = mon.checks(model, stats, 30, 1.02, {**base, "lr_scale": 0.25, "train_loss": 1.0})
    assert "lr_drops" in {f[0] for f in flags} and row["lr_drops_since_best"] == 2


# ---- eval / diagnose ------------------------------------------------------------------------------

def test_eval_and_diagnose_scripts(train_hybrid, tmp_path):
    import diagnose_hybrid
    import eval_hybrid
    _, out = train_hybrid()
    res = tmp_path / "res"
    row = eval_hybrid.main(["--ckpt", str(out / "best.pt"), "--output-dir", str(res), "--passkey-trials", "2",
                            "--passkey-distances", "64,128", "--persistence-horizon", "40", "--max-new-tokens", "5",
                            "--batch-size", "2", "--context-length", "48", "--context-segments", "3",
                            "--baseline-ckpt", str(out / "best.pt"), "--niah", "--niah-contexts", "128,256",
                            "--niah-depths", "0.2,0.8", "--niah-trials", "2"])
    (name, curve), = row["context"].items()                          # the same model twice: one curve
    assert curve["segments"] == 3 and len(curve["bpc_by_chunk"]) == 3 and len(curve["bpc"]) == 2
    assert np.array(row["niah"]["accuracy"]).shape == (2, 2)
    assert set(row["passkey"]) == {"64", "128"} and 0 <= row["passkey"]["64"]["accuracy"] <= 1
    assert row["val_bpc"] == pytest.approx(row["val_loss"] / math.log(2))
    curves = row["persistence"]["layers"]
    assert set(curves) == {"0:R", "1:M", "3:P"}                  # the attention layer has no recurrent state
    assert all(c[0] > 0 for c in curves.values())               # the perturbation is visible in every state
    for name in ("eval.json", "persistence.png", "sample.txt", "context.json", "context.png", "niah.json", "niah.png"):
        assert (res / name).is_file()
    rows, passed = diagnose_hybrid.main(["--ckpt", str(out / "best.pt"), "--output-dir", str(res), "--chunks", "4",
                                         "--batch-size", "2"])
    assert [r["layer"] for r in rows] == [0, 1, 3] and all(-1 <= r["cos_sim"] <= 1 for r in rows)
    assert all(0 < r["svd_top5"] <= 1 + 1e-6 and 0 <= r["saturated"] <= 1 for r in rows)
    assert (res / "g35.png").is_file() and len((res / "g35.jsonl").read_text().splitlines()) == 4


def test_ablate_script(train_hybrid, tmp_path):
    import ablate_hybrid
    _, out = train_hybrid()
    res = ablate_hybrid.main(["--ckpt", str(out / "best.pt"), "--output-dir", str(tmp_path / "abl"), "--batch-size", "2",
                              "--eval-chunks", "2", "--n-boot", "50"])
    names = [r["name"] for r in res["rows"]]
    assert names[:2] == ["0:R RWKV time-mix", "0:R RWKV layer"] and "3:P R+M blend mamba" in names
    assert all(r["ci95"][0] <= r["delta_bpc"] <= r["ci95"][1] for r in res["rows"])
    assert res["chars"] == 2 * 2 * 16
    assert (tmp_path / "abl" / "components.png").is_file() and (tmp_path / "abl" / "components.json").is_file()


def test_old_static_mix_checkpoint_loads_exactly():
    """The promoted H1 RMRM checkpoint (static token-shift mix, decay rank 32) loads into the RWKV-6 block and its
    time-mix computes what the static block computed (a plain reimplementation from the raw tensors)."""
    path = ROOT / "checkpoints" / "H1_passkey_RMRM_best.pt"
    raw = torch.load(path, map_location="cpu", weights_only=False)["model"]
    model = checkpoint.load_model(path)[0]
    att = model.layers[0].att
    p = {k[len("layers.0.att."):]: v for k, v in raw.items() if k.startswith("layers.0.att.")}
    assert "mix_w1" not in p and p["decay_w1"].shape[1] == 32
    torch.manual_seed(0)
    B, T, C, H = 2, 20, 128, 2
    x, prev = torch.randn(B, T, C), torch.randn(B, C)
    S0 = torch.randn(B, H, C // H, C // H) * 0.1
    xx = torch.cat([prev[:, None], x[:, :-1]], 1) - x
    xr, xk, xv, xw, xg = (x + xx * m for m in p["mu"])
    r, k, v = (z @ p[n + ".weight"].t() for n, z in (("receptance", xr), ("key", xk), ("value", xv)))
    logw = -torch.exp(p["decay"] + torch.tanh(xw @ p["decay_w1"]) @ p["decay_w2"])
    y, S = scan.rwkv_sequential(*(t.view(B, T, H, -1) for t in (r, k, v, logw)), p["bonus"], S0)
    y = torch.nn.functional.group_norm(y.reshape(B * T, C), H, p["ln_x.weight"], p["ln_x.bias"], 64e-5).view(B, T, C)
    ref = (y * torch.nn.functional.silu(xg @ p["gate.weight"].t())) @ p["output.weight"].t()
    with torch.no_grad():
        out, (_, S_new) = att(x, (prev, S0))
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(S_new, S, atol=1e-5)


def test_persistence_decays_with_short_memory():
    """A state with short retention forgets a perturbation faster than one with long retention."""
    from seqlab.hybrid import probes
    curves = {}
    for name, shift in (("short", 6.0), ("long", -3.0)):     # init decay -6..-1: short -1..-148 in log w
        model = tiny("RR", context=16)
        with torch.no_grad():
            for layer in model.layers:
                layer.att.decay += shift                     # -log w scaled by e^shift
        r = probes.state_persistence(model, torch.randint(2, 99, (2000,)), position=8, horizon=48, stride=8, n_seqs=2)
        curves[name] = r["layers"]["0:R"]
    assert curves["short"][-1] < 1e-3 * curves["short"][0]
    assert curves["long"][-1] > 10 * curves["short"][-1]


def test_baseline_verdict():
    assert monitors.layout_class("RRRR") == "pure-R" and monitors.layout_class("MMAM") == "pure-M"
    assert monitors.layout_class("RMAP") == "hybrid" and monitors.layout_class("AAAA") == "attention"
    assert monitors.baseline_verdict(2.0, 1.5, 1.6).startswith("hybrid worse than both")
    assert monitors.baseline_verdict(1.55, 1.5, 1.6).startswith("hybrid between")
    assert monitors.baseline_verdict(1.4, 1.5, 1.6).startswith("hybrid better")


# ---- the task ---------------------------------------------------------------------------------------

def test_doc_starts_and_passkey_mixing(text_dir):
    from seqlab.hybrid import streams, task as hybrid_task
    from seqlab.text import tokenizer
    ids = tokenizer.encode("ab\n\ncd\n\n\nef")
    starts = streams.doc_starts(ids, "\n\n")
    assert list(starts.nonzero()[0]) == [4, 8, 9]          # after each occurrence (overlapping ones too)
    assert not streams.doc_starts(ids, "").any()
    task = hybrid_task.HybridTask(text_dir, 128, 2, seed=0, passkey_mix=1.0, sample_tokens=0)
    x, y, reset = task.next_batch()
    for b in range(2):
        text = tokenizer.decode(x[b].tolist())
        assert text.startswith("The pass key is ") and reset[b, 0]
        n = text.index(".\n", text.index("The pass key is ", 20)) + 2   # end of the document
        assert reset[b, n] and torch.equal(y[b, :n - 1], x[b, 1:n])
        key = text[16:21]
        assert text[n - 7:n - 2] == key                         # the answer is the key


def test_stop_on_red_flags_returns_a_reason(text_dir):
    from seqlab.hybrid import task as hybrid_task
    task = hybrid_task.HybridTask(text_dir, 16, 2, seed=0, monitor_cfg={"stop_on_red_flags": True}, sample_tokens=0)
    model = tiny("RMAP", context=16)
    with torch.no_grad():
        model.layers[0].att.output.weight.zero_()
        model.layers[0].ffn.value.weight.zero_()            # the RWKV layer now outputs nothing

    class Log:
        lines, events = [], []
        def line(self, t): self.lines.append(t)
        def event(self, e, **f): self.events.append((e, f))
    log = Log()
    task.evaluate(model)
    reason = task.on_eval(model, 5, log, {"best": 4.0, "best_step": 5, "max_steps": 100, "lr_scale": 1.0,
                                           "train_loss": 4.0, "n_plateaus": 0})
    assert reason.startswith("red flag: activation collapse") and any("WARNING [collapse, fail]" in l for l in log.lines)
    task.monitor.stop = False
    assert task.on_eval(model, 10, log, {"best": 4.0, "best_step": 5, "max_steps": 100, "lr_scale": 1.0,
                                          "train_loss": 4.0, "n_plateaus": 0}) is None


def test_fresh_state_at_epoch_start_and_tied_embeddings(text_dir):
    from seqlab.hybrid import task as hybrid_task
    task = hybrid_task.HybridTask(text_dir, 16, 2, seed=0, sample_tokens=0)
    model = HybridLM(HybridConfig(context=16, n_layer=2, n_head=2, n_embd=32, layout="RM", tie_embeddings=True))
    assert model.head.weight is model.tok_emb.weight
    task.loss(model, task.next_batch())
    assert task.state is not None
    task.served = task.chunks_per_epoch               # the next chunk starts epoch 2
    x, _, _ = task.next_batch()
    assert task.state is None and torch.equal(x, task.tracks[:, :16])
    clone = HybridLM(model.config)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone(x)[0], model(x)[0])
