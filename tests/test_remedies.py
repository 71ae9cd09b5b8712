"""The free-running drift remedies of the E0 trainer (seqlab/mdn/remedies.py): each does what it says on
planted cases, trains, resumes exactly, and is refused where it cannot apply."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import train_mdn
import train_mdn_memory
from seqlab.core.errors import UserError
from seqlab.mdn import mixture, remedies
from test_mdn_models import make_dataset

FLAGS = ["--preset", "cpu", "--context", "32", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
         "--n-components", "3", "--batch-size", "8", "--max-steps", "4", "--eval-every", "2", "--seed", "3",
         "--schedule", "constant", "--warmup", "0"]     # a schedule that does not depend on --max-steps


class PointMass(nn.Module):
    """A 'model' whose every forecast is N(level, sigma^2) (one component), whatever the history."""

    def __init__(self, level=1.0, sigma=1e-6, context=64):
        super().__init__()
        self.level = nn.Parameter(torch.tensor(float(level)))
        self.sigma = sigma
        self.config = type("C", (), {"context": context})()

    def forward(self, x, **_):
        shape = (*x.shape, 1)
        return mixture.Mixture(torch.zeros(shape), self.level.expand(shape), torch.full(shape, self.sigma))


def test_input_noise_has_the_asked_spread_and_repeats():
    x = torch.ones(64, 256)
    a = remedies.add_input_noise(x, 0.1, remedies.generator(7, 5, 1))
    b = remedies.add_input_noise(x, 0.1, remedies.generator(7, 5, 1))
    assert torch.equal(a, b)
    assert (a - x).std().item() == pytest.approx(0.1, rel=0.03)
    assert (a > 0).all()


def test_self_feed_replaces_the_asked_share_with_model_draws():
    x = torch.full((32, 100), 2.0)
    model = PointMass(level=1.0)                      # its draws are 1 (to 1e-6), the inputs 2
    none = remedies.self_feed(model, x, 0.0, remedies.generator(0, 0, 2))
    assert torch.equal(none, x)
    every = remedies.self_feed(model, x, 1.0, remedies.generator(0, 0, 2))
    assert torch.equal(every[:, 0], x[:, 0])          # the first input has no forecast before it
    assert torch.allclose(every[:, 1:], torch.ones(32, 99), atol=1e-4)
    some = remedies.self_feed(model, x, 0.3, remedies.generator(0, 0, 2))
    share = (some[:, 1:] < 1.5).float().mean().item()
    assert share == pytest.approx(0.3, abs=0.03)


def test_drift_loss_is_the_squared_count_error_of_the_rollout():
    # the data run at 1 + d every step; a point-mass model at 1 falls behind by d per step: (H d)^2 / H
    H, d = 8, 0.05
    x = torch.full((4, 40), 1.0 + d)
    y = torch.full((4, 40), 1.0 + d)
    model = PointMass(level=1.0)
    loss = remedies.drift_loss(model, x, y, H, 4, remedies.generator(0, 0, 3))
    assert loss.item() == pytest.approx(H * d * d, rel=1e-3)
    loss.backward()                                   # the gradient reaches the forecast: raise the level
    assert model.level.grad.item() == pytest.approx(-2 * H * d, rel=1e-3)
    exact = remedies.drift_loss(PointMass(level=1.0 + d), x, y, H, 4, remedies.generator(0, 0, 3))
    assert exact.item() < 1e-9


def test_rollout_error_scores_an_iid_forecaster_by_its_missing_correlation():
    # windows of an AR(1) with lag-1 -0.35 around 1; a model drawing i.i.d. N(1, std) keeps mean and
    # std (errors ~0) and misses the correlation entirely (relative error 1)
    rng = np.random.default_rng(0)
    e = rng.normal(0, 0.4, 64 * 65 + 1)
    s = np.empty_like(e)
    s[0] = e[0]
    for t in range(1, len(e)):
        s[t] = -0.35 * s[t - 1] + e[t]
    s = 1 + s[1:]
    wins = torch.from_numpy(s.reshape(64, 65)).float()
    out = remedies.rollout_error(PointMass(1.0, sigma=float(s.std()), context=64), wins, 4, 2000)
    assert out["data_lag1"] == pytest.approx(-0.35, abs=0.03)
    assert abs(out["rollout_lag1"]) < 0.05
    assert out["rollout_err"] == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("flags", [["--input-noise", "0.05"], ["--self-feed", "0.25"],
                                   ["--drift-aux-weight", "0.5", "--drift-horizon", "4", "--drift-batch", "2"]])
def test_remedy_trains_and_resumes_exactly(tmp_path, flags):
    d = make_dataset(tmp_path / "ar1", n=40 * 33, seq_len=33)
    train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "full"), *FLAGS, *flags])
    train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "half"), *FLAGS, *flags,
                    "--max-steps", "2"])
    train_mdn.main(["--out-dir", str(tmp_path / "half"), "--resume", "--max-steps", "4"])

    def losses(run):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [r["val_nll"] for r in rows if r.get("event") == "eval"]
    full, half = losses("full"), losses("half")
    assert full[-1] == pytest.approx(half[-1], abs=1e-6)
    plain = tmp_path / "plain"
    train_mdn.main(["--data-dir", str(d), "--out-dir", str(plain), *FLAGS])
    assert losses("plain")[-1] != pytest.approx(full[-1], abs=1e-6)     # the remedy changed training
    if "--drift-aux-weight" in flags:
        parts = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
        assert any(r.get("event") == "loss_parts" and r["drift"] > 0 for r in parts)


def test_select_by_rollout_picks_best_by_rollout_err(tmp_path):
    d = make_dataset(tmp_path / "ar1", n=40 * 33, seq_len=33)
    out = tmp_path / "r"
    train_mdn.main(["--data-dir", str(d), "--out-dir", str(out), *FLAGS, "--select-by-rollout",
                    "--rollout-steps", "40"])
    ck = torch.load(out / "best.pt", weights_only=False)
    assert ck["best"]["metric"] == "rollout_err"
    assert ck["metrics"]["rollout_err"] == pytest.approx(ck["best"]["value"])
    assert 0 <= ck["best"]["value"] < 10


def test_remedies_are_refused_where_they_cannot_apply(tmp_path, monkeypatch):
    d = make_dataset(tmp_path / "ar1", n=40 * 33, seq_len=33)
    with pytest.raises(UserError, match="E0 options"):
        train_mdn_memory.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "m"), *FLAGS, "--self-feed", "0.5"])
    with pytest.raises(UserError, match="below --context"):
        train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "h"), *FLAGS,
                        "--drift-aux-weight", "1", "--drift-horizon", "32"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UserError, match="one process"):
        train_mdn.main(["--data-dir", str(d), "--out-dir", str(tmp_path / "w"), *FLAGS, "--drift-aux-weight", "1"])
    assert not (tmp_path / "w").exists() and not (tmp_path / "h").exists()
