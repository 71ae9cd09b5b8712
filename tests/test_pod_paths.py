"""The paths a first GPU-pod run takes, checked on the CPU: --compile in every family, resume on a
machine with a different number of GPUs (CUDA simulated), and the hybrid's rank slices.
The DDP runs of every trainer are in test_distributed.py.

The --compile smoke tests run torch.compile with the "eager" backend (Dynamo traces the model, no
C++ code generation), which is what catches a trainer that cannot run a compiled module at all
(e.g. bool() on it, an error since torch 2.9). The same tests with the default backend (inductor)
take minutes per family on a CPU; they run when SEQLAB_SLOW_TESTS=1 (`make test-slow`).
"""
import functools
import os

import pytest
import torch

from conftest import TINY
from seqlab.core import checkpoint, runfolder

SLOW = os.environ.get("SEQLAB_SLOW_TESTS") == "1"
BACKENDS = ["eager", pytest.param("inductor", marks=pytest.mark.skipif(
    not SLOW, reason="minutes per family on a CPU: set SEQLAB_SLOW_TESTS=1 (make test-slow)"))]


@pytest.fixture
def compile_backend(monkeypatch, request):
    """torch.compile as the engine calls it, pinned to the parametrised backend."""
    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=request.param))
    yield request.param
    torch._dynamo.reset()


def _mdn_data(tmp_path):
    from test_mdn_models import make_dataset
    return make_dataset(tmp_path / "ar", n=24 * 65, seq_len=65)


MDN_TINY = ["--context", "32", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-components", "2",
            "--max-steps", "2", "--eval-every", "2", "--log-every", "1", "--batch-size", "4", "--warmup", "0",
            "--device", "cpu", "--compile"]
CASES = {
    "char": ("train_char", lambda tmp, text: ["--data-dir", str(text), *TINY, "--max-steps", "2", "--eval-every", "2",
                                              "--eval-windows", "4", "--device", "cpu", "--compile"]),
    "mdn": ("train_mdn", lambda tmp, text: ["--data-dir", str(_mdn_data(tmp)), *MDN_TINY]),
    "mdn_prefix": ("train_mdn_memory", lambda tmp, text: ["--data-dir", str(_mdn_data(tmp)), *MDN_TINY,
                                                          "--n-memory-slots", "2"]),
    "mdn_postfix": ("train_mdn_postfix", lambda tmp, text: ["--data-dir", str(_mdn_data(tmp)), *MDN_TINY,
                                                            "--n-memory-slots", "2", "--use-aux-loss", "--use-ortho-loss",
                                                            "--slot-id-mode", "permute_per_batch"]),
    "hybrid": ("train_hybrid", lambda tmp, text: ["--data-dir", str(text), "--n-layer", "3", "--layout", "RAM",
                                                  "--n-head", "2", "--n-embd", "16", "--context", "16", "--batch-size", "2",
                                                  "--max-steps", "2", "--eval-every", "2", "--log-every", "1", "--eval-chunks", "2",
                                                  "--sample-tokens", "4", "--device", "cpu", "--compile"]),
}


@pytest.mark.parametrize("compile_backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("family", sorted(CASES))
def test_compile_trains_every_family(family, compile_backend, text_dir, tmp_path):
    script, flags = CASES[family]
    summary = __import__(script).main(flags(tmp_path, text_dir) + ["--out-dir", str(tmp_path / "run")])
    assert summary["step"] == 2
    rows = runfolder.read_metrics(tmp_path / "run/metrics.jsonl")
    assert [r["step"] for r in rows if r["event"] == "train"] == [1, 2]
    # the checkpoint holds the plain model's names and loads into a fresh model
    model, ck = checkpoint.load_model(tmp_path / "run/best.pt")
    assert ck["family"] == family and not any(k.startswith("_orig_mod.") for k in ck["model"])


# ---- resume with a different number of GPUs (simulated) ---------------------------------------

def fake_cuda(monkeypatch, n_devices, current=0):
    """torch.cuda as a machine with n_devices GPUs would answer for the RNG calls; returns the
    {device index: state} that set_rng_state received. Like the real set_rng_state_all, the
    per-device call fails for a device the machine does not have."""
    restored = {}

    def index(device):
        d = torch.device(device)
        return torch.cuda.current_device() if d.index is None else d.index

    def get_state(device="cuda"):
        return torch.full((16,), 100 + index(device), dtype=torch.uint8)

    def set_state(state, device="cuda"):
        i = index(device)
        if i >= n_devices:
            raise IndexError(f"no CUDA device {i}")
        restored[i] = state

    def get_all():
        return [get_state(i) for i in range(n_devices)]

    def set_all(states):
        for i, s in enumerate(states):
            set_state(s, i)

    for name, fn in {"is_available": lambda: True, "device_count": lambda: n_devices, "current_device": lambda: current,
                     "get_rng_state": get_state, "set_rng_state": set_state, "get_rng_state_all": get_all,
                     "set_rng_state_all": set_all}.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    return restored


def test_rng_state_saves_only_the_process_device(monkeypatch):
    fake_cuda(monkeypatch, 4, current=2)
    state = checkpoint.rng_state(torch.device("cuda", 2))
    assert isinstance(state["cuda"], torch.Tensor) and int(state["cuda"][0]) == 102   # one GPU: its own
    assert "cuda" not in checkpoint.rng_state(torch.device("cpu"))                    # a CPU run: none


@pytest.mark.parametrize("saved,n_here,device,restored_from,note", [
    (4, 1, 0, 0, "of 4 GPU(s), this machine has 1"),     # pod with fewer GPUs: the old crash
    (1, 4, 0, 0, "of 1 GPU(s), this machine has 4"),     # more GPUs: its own entry exists
    (1, 2, 1, None, "none for cuda:1"),                  # this device has no saved entry
    (2, 2, 1, 1, None),                                  # same machine: exact, silent
])
def test_old_checkpoint_cuda_list_longer_or_shorter(monkeypatch, saved, n_here, device, restored_from, note):
    """Checkpoints written before this fix hold one CUDA state per visible GPU."""
    restored = fake_cuda(monkeypatch, n_here, current=device)
    state = checkpoint.rng_state(torch.device("cpu"))
    state["cuda"] = [torch.full((16,), 200 + i, dtype=torch.uint8) for i in range(saved)]
    got = checkpoint.set_rng_state(state, torch.device("cuda", device))
    assert (got is None) if note is None else (note in got)
    if restored_from is None:
        assert restored == {}
    else:
        assert list(restored) == [device] and int(restored[device][0]) == 200 + restored_from


@pytest.mark.parametrize("n_saved", [3, 0], ids=["longer", "shorter"])
def test_resume_from_a_checkpoint_of_a_bigger_or_smaller_pod(train_char, monkeypatch, n_saved):
    """End to end: a 1-GPU pod (simulated: CUDA calls faked, the model on the CPU) resumes a last.pt
    whose CUDA RNG list was saved on a machine with 3 GPUs, or with none; the run continues and
    train.log says what happened to the CUDA generator."""
    restored = fake_cuda(monkeypatch, 1)
    monkeypatch.setattr(checkpoint, "_cuda_device", lambda device: torch.device("cuda", 0))  # "this process is on cuda:0"
    _, out = train_char("--device", "cpu", max_steps=4)
    ck = torch.load(out / "last.pt", weights_only=True)
    assert int(ck["rng"]["cuda"][0]) == 100                       # what the simulated cuda:0 returned
    ck["rng"]["cuda"] = [torch.full((16,), 200 + i, dtype=torch.uint8) for i in range(n_saved)]
    checkpoint.save_atomic(ck, out / "last.pt")
    summary, _ = train_char("--device", "cpu", "--resume", max_steps=6)
    assert summary["step"] == 6
    log = (out / "train.log").read_text()
    if n_saved:
        assert int(restored[0][0]) == 200 and "CUDA RNG states of 3 GPU(s), this machine has 1" in log
    else:
        assert 0 not in restored and "CUDA RNG states of 0 GPU(s), none for cuda:0" in log


# ---- hybrid: each rank its own tracks of the global batch --------------------------------------

def test_hybrid_ranks_split_the_global_tracks(text_dir):
    """Two ranks at batch B see exactly the rows one process at 2B sees, passkey documents included."""
    from seqlab.hybrid.task import HybridTask
    kw = dict(context=128, seed=0, passkey_mix=0.5, doc_sep=".\n", sample_tokens=0)
    one = HybridTask(text_dir, batch_size=4, **kw)
    ranks = [HybridTask(text_dir, batch_size=2, rank=r, world=2, **kw) for r in range(2)]
    assert one.describe() == ranks[0].describe() == ranks[1].describe()
    for _ in range(3):
        whole = one.next_batch()
        parts = [t.next_batch() for t in ranks]
        for i in range(3):   # x, y, reset
            assert torch.equal(whole[i], torch.cat([p[i] for p in parts]))
    assert not torch.equal(parts[0][0], parts[1][0])


# ---- POSTFIX attention mask: built once, lives on the model's device ------------------------------

def test_postfix_mask_is_a_device_buffer_not_rebuilt_per_forward(monkeypatch):
    from seqlab.mdn.memory import PostfixConfig, PostfixMDN
    model = PostfixMDN(PostfixConfig(context=24, n_layer=1, n_head=2, n_embd=16, n_components=2, n_memory_slots=3))
    assert "full_mask" not in model.state_dict()          # a function of the config: checkpoints unchanged
    for T in (24, 10, 1):                                  # the full window, and shorter ones (rollouts)
        assert torch.equal(model.attn_mask(T), model._build_mask(T)), T
    assert model.attn_mask(24).data_ptr() == model.full_mask.data_ptr()
    monkeypatch.setattr(PostfixMDN, "_build_mask", lambda self, T: pytest.fail("mask rebuilt in forward"))
    x = 0.5 + torch.rand(2, 24)
    model(x), model(x[:, :10])
    model.to(torch.float64)                                # .to() moves the buffer with the model; bool stays bool
    assert model.full_mask.dtype == torch.bool


def test_hybrid_resume_refuses_a_state_of_other_tracks(text_dir):
    """A last.pt whose carried state covers other tracks (e.g. rank 0's only, as written before ranks
    had their own tracks) is refused in one line, not sliced into an empty state."""
    from seqlab.core.errors import UserError
    from seqlab.hybrid.model import HybridConfig, HybridLM
    from seqlab.hybrid.task import HybridTask
    model = HybridLM(HybridConfig(context=16, n_layer=2, n_head=2, n_embd=16, layout="RM"))
    ranks = [HybridTask(text_dir, 16, 2, seed=0, sample_tokens=0, rank=r, world=2) for r in range(2)]
    whole = {"served": 3, "state": model.init_state(4), "monitor": {}}
    for r, task in enumerate(ranks):
        task.load_state_dict(whole)
        assert task.state["layers"][0][0].shape[0] == 2
    with pytest.raises(UserError, match="state of 2 tracks, this run trains 4"):
        ranks[1].load_state_dict({"served": 3, "state": model.init_state(2), "monitor": {}})
