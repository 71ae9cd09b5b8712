import pytest
import torch

from seqlab.core import hooks, runfolder
from seqlab.text.model import CharConfig, CharTransformer


def losses(out):
    return [r["loss"] for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "train"]


def test_identity_update_hook_changes_nothing(train_char):
    _, plain = train_char(out="plain")
    _, ident = train_char("--hook", "identity", out="ident")
    assert losses(plain) == losses(ident)
    assert runfolder.read_metrics(ident / "metrics.jsonl")  # ran
    import json
    assert json.loads((ident / "config.json").read_text())["manifest"]["hook_list"] == ["identity"]


def test_noise_hook_changes_training(train_char):
    _, plain = train_char(out="plain")
    _, noisy = train_char("--hook", "noise:std=0.05", out="noisy")
    assert losses(plain)[0] == losses(noisy)[0]  # first loss is computed before any update
    assert losses(plain)[5:] != losses(noisy)[5:]


def test_act_stats_forward_hook_reports(train_char):
    _, out = train_char("--hook", "act_stats:every=2", out="stats")
    rows = [r for r in runfolder.read_metrics(out / "metrics.jsonl") if r["event"] == "hook"]
    assert [r["step"] for r in rows] == [10, 20]
    stats = rows[0]["act_stats"]
    assert set(stats) == {"blocks.0", "blocks.1"}
    assert stats["blocks.1"]["std"] > 0 and stats["blocks.1"]["absmax"] >= stats["blocks.1"]["std"]


def _model():
    torch.manual_seed(0)
    return CharTransformer(CharConfig(context=8, n_layer=1, n_head=1, n_embd=8, d_ff=16))


def test_mutating_forward_hook_is_rejected():
    model = _model()
    model.blocks[0].register_forward_hook(hooks.read_only("bad", lambda m, i, o: o.mul_(2)))
    with pytest.raises(hooks.HookError, match="in place"):
        model(torch.zeros(1, 4, dtype=torch.long))


def test_replacing_forward_hook_is_rejected():
    model = _model()
    model.blocks[0].register_forward_hook(hooks.read_only("bad", lambda m, i, o: o * 2))
    with pytest.raises(hooks.HookError, match="returned a value"):
        model(torch.zeros(1, 4, dtype=torch.long))


def test_read_only_hook_passes_and_sees_output():
    model = _model()
    seen = []
    model.blocks[0].register_forward_hook(hooks.read_only("ok", lambda m, i, o: seen.append(o.shape)))
    model(torch.zeros(2, 4, dtype=torch.long))
    assert seen == [torch.Size([2, 4, 8])]


def test_project_hook_makes_gradients_orthogonal_to_weights():
    model = _model()
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    hooks.project()(model, 0)
    for p in model.parameters():
        if p.dim() >= 2:
            w = p.detach()
            assert abs(float((p.grad * w).sum())) < 1e-5 * float(p.grad.norm() * w.norm() + 1e-12)


def test_clip_hook_and_spec_parsing():
    assert hooks.parse_spec("noise:std=1e-3,seed=2") == ("noise", {"std": 1e-3, "seed": 2})
    model = _model()
    (model(torch.zeros(1, 4, dtype=torch.long)).sum() * 1e3).backward()
    hooks.clip(value=0.01)(model, 0)
    assert max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None) <= 0.01
    with pytest.raises(ValueError, match="unknown hook"):
        hooks.HookSet(["nope"])
    with pytest.raises(ValueError, match="hook 'noise:bogus=1'"):
        hooks.HookSet(["noise:bogus=1"])


def test_noise_hook_draws_on_the_gradients_device_from_seed_and_step(monkeypatch):
    """The noise is N(0, std^2) from a generator on each gradient's device, seeded by (seed, step): the same
    step gives the same noise (resume is exact), another step other noise; no host draw and copy."""
    model = _model()
    params = [p for p in model.parameters()]
    draws = []
    real_randn = torch.randn

    def spy(*args, **kw):
        draws.append((kw.get("device"), kw["generator"].device))
        return real_randn(*args, **kw)
    monkeypatch.setattr(torch, "randn", spy)

    def noise_at(step):
        for p in params:
            p.grad = torch.zeros_like(p)
        hooks.noise(std=0.5, seed=2)(model, step)
        return [p.grad.clone() for p in params]
    a, again, other = noise_at(7), noise_at(7), noise_at(8)
    assert draws and all(d == p.device and g == p.device for (d, g), p in zip(draws, params))
    assert all(torch.equal(x, y) for x, y in zip(a, again)) and not torch.equal(a[0], other[0])
    g = torch.Generator(device="cpu").manual_seed(2 * 1_000_003 + 7)
    expected = [0.5 * real_randn(p.shape, generator=g) for p in params]
    assert all(torch.allclose(x, e) for x, e in zip(a, expected))
    assert abs(float(torch.cat([x.flatten() for x in a]).std()) - 0.5) < 0.05
