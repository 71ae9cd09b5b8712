import torch

from seqlab.core import checkpoint
from seqlab.text.model import CharConfig, CharTransformer


def tiny_model(dropout=0.0):
    torch.manual_seed(0)
    return CharTransformer(CharConfig(context=32, n_layer=2, n_head=2, n_embd=32, d_ff=64, dropout=dropout)).eval()


def test_causality():
    model = tiny_model()
    x = torch.randint(0, 99, (3, 32))
    base = model(x)
    for t in (0, 7, 30):
        y = x.clone()
        y[:, t + 1:] = torch.randint(0, 99, y[:, t + 1:].shape)
        out = model(y)
        assert torch.allclose(out[:, :t + 1], base[:, :t + 1], atol=1e-6)
        if t < 31:
            assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


def test_checkpoint_round_trip(train_char):
    summary, out = train_char(max_steps=10)
    model, ckpt = checkpoint.load_model(out / "best.pt", "char")
    assert ckpt["step"] == 10 and ckpt["family"] == "char"
    fresh = CharTransformer(CharConfig(**ckpt["model_config"]))
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    fresh.load_state_dict(torch.load(out / "best.pt", weights_only=True)["model"])
    x = torch.randint(0, 99, (2, 16))
    assert torch.equal(fresh.eval()(x), model(x))
    for key in ("run_id", "git_commit", "config_hash", "hook_list"):
        assert key in ckpt["manifest"]


def test_compile_prefix_is_stripped(tmp_path):
    model = tiny_model()
    state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    ck = {"format_version": 1, "family": "char", "model_config": vars(model.config), "model": state,
          "manifest": {}, "step": 0}
    checkpoint.save_atomic(ck, tmp_path / "c.pt")
    loaded, _ = checkpoint.load_model(tmp_path / "c.pt", "char")
    x = torch.randint(0, 99, (1, 8))
    assert torch.equal(loaded(x), model(x))


def test_generate_is_reproducible_and_leaves_global_rng():
    model = tiny_model()
    idx = torch.zeros(1, 1, dtype=torch.long)
    state = torch.get_rng_state()
    a = model.generate(idx, 20, generator=torch.Generator().manual_seed(5))
    b = model.generate(idx, 20, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (1, 21)
    assert torch.equal(state, torch.get_rng_state())
