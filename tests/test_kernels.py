"""Optional fused kernels (seqlab.hybrid.kernels, `--kernels auto`).

On any machine: the backend choice, the mamba_ssm initial-state composition (the reference scan
standing in for the kernel), the layout conversions against stand-ins with the packages'
documented signatures and layouts, and the model / CLI wiring. On CUDA with the package
importable: each kernel against seqlab.hybrid.scan's loop (skipped elsewhere; see docs/hybrid.md).
"""
import json

import pytest
import torch

from seqlab.core import checkpoint
from seqlab.hybrid import kernels, scan
from seqlab.hybrid.model import HybridConfig, HybridLM
from test_hybrid import doc_resets, tiny, train_hybrid  # noqa: F401  (train_hybrid is a fixture)
from test_scan import mamba_inputs, rwkv_inputs

REL = 1e-5          # CPU compositions: max abs error / max abs reference, float32 (as tests/test_scan.py)
# GPU kernels: RMS error / RMS of the reference. fla's Triton matmuls run in TF32 (10-bit mantissa);
# mamba_ssm's scan is float32 throughout but sums in another order (and atomically for dA).
RMS_FLA, RMS_MAMBA = 1e-2, 1e-4


def outputs_and_grads(fn, inputs, **kw):
    """[y, final state, d(loss)/d(each input)] for a loss that reads both y and the final state."""
    *args, s0 = inputs
    y, s = fn(*args, state=s0, **kw)
    g = torch.Generator().manual_seed(9)
    wy, ws = (torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device) for t in (y, s))
    return [y, s, *torch.autograd.grad((y * wy).sum() + (s * ws).sum(), inputs)]


def assert_close(got, ref, rel=REL):
    for name, a, b in zip(["y", "state", *(f"grad {i}" for i in range(len(ref) - 2))], got, ref):
        a, b = a.detach(), b.detach()
        err = float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
        assert err < rel, (name, err)


def assert_rms_close(got, ref, rel):
    for name, a, b in zip(["y", "state", *(f"grad {i}" for i in range(len(ref) - 2))], got, ref):
        a, b = a.detach(), b.detach()
        err = float((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp(min=1e-12))
        assert err < rel, (name, err)


def on(inputs, device="cpu"):
    return [t.detach().float().to(device).requires_grad_() for t in inputs]


def sequential_zero_state(x, dt, A, Bm, Cm):
    return scan.mamba_sequential(x, dt, A, Bm, Cm)[0]


# ---- stand-ins with the packages' signatures and layouts (the maths from seqlab.hybrid.scan) ------------

def fake_chunk_rwkv6(r, k, v, w, u, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None,
                     **kwargs):
    """fla 0.6.0's chunk_rwkv6: r, k, v, w (B, T, H, K), w = log decay, u (H, K), states (B, H, K, V),
    o_t = scale * r_t^T (S_{t-1} + diag(u) k_t v_t^T); the default scale would be K**-0.5."""
    B, T, H, K = r.shape
    assert not kwargs and cu_seqlens is None and output_final_state and scale == 1.0
    assert k.shape == v.shape == w.shape == r.shape and u.shape == (H, K) and initial_state.shape == (B, H, K, K)
    assert (w >= scan.LOG_W_MIN).all()                # clamped before the kernel (it has no floor)
    return scan.rwkv_sequential(r * scale, k, v, w, u, initial_state)


def fake_selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False):
    """mamba_ssm 2.3.2's selective_scan_fn from h = 0: u, delta (b, D, L), A (D, N), B, C (b, N, L) -> out (b, D, L)."""
    b, dim, L = u.shape
    assert D is None and z is None and delta_bias is None and not delta_softplus and not return_last_state
    assert delta.shape == u.shape and A.shape[0] == dim and B.shape == C.shape == (b, A.shape[1], L)
    assert u.is_contiguous() and delta.is_contiguous() and B.is_contiguous() and C.is_contiguous()
    y, _ = scan.mamba_sequential(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2))
    return y.transpose(1, 2)


@pytest.fixture
def fake_kernels(monkeypatch):
    """Pretend both packages import and the device is CUDA; count the kernel calls."""
    calls = {"fla": 0, "mamba_ssm": 0}

    def counted(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapper
    fakes = {"fla": counted("fla", fake_chunk_rwkv6), "mamba_ssm": counted("mamba_ssm", fake_selective_scan_fn)}
    monkeypatch.setattr(kernels, "_load", lambda package: (fakes[package], None))
    real = kernels.resolve
    monkeypatch.setattr(kernels, "resolve", lambda kind, device: real(kind, "cuda"))
    return calls


# ---- backend choice ------------------------------------------------------------------------------

def test_resolve_is_torch_on_cpu_and_for_kind_torch(monkeypatch):
    torch_only = {"rwkv": "torch", "mamba": "torch"}
    assert kernels.resolve("torch", "cpu") == kernels.resolve("auto", "cpu") == torch_only
    assert kernels.resolve("auto", torch.device("cpu")) == torch_only
    assert kernels.describe("auto", "cpu") == "Kernels (--kernels auto): RWKV torch (not CUDA), Mamba torch (not CUDA)"
    with pytest.raises(ValueError, match="use one of torch, auto"):
        kernels.resolve("fast", "cpu")
    # kind torch never imports anything, even on CUDA; auto on CUDA uses what imports, the rest falls back
    monkeypatch.setattr(kernels, "_load", lambda p: (object(), None) if p == "fla" else (None, "ImportError: nope"))
    assert kernels.resolve("torch", "cuda") == torch_only
    assert kernels.resolve("auto", "cuda:0") == {"rwkv": "fla", "mamba": "torch"}
    line, warning = kernels.describe("auto", "cuda").split("\n")
    assert line == "Kernels (--kernels auto): RWKV fla, Mamba torch (mamba_ssm: ImportError: nope)"
    # the fallback on CUDA is loud: why, the fix (install without build isolation), the check
    assert warning.startswith("WARNING: --kernels auto: Mamba falls back to the torch scan") and "ImportError: nope" in warning
    assert kernels.INSTALL["mamba_ssm"] in warning and "--no-build-isolation" in warning and "tests/test_kernels.py" in warning
    assert "\n" not in kernels.describe("torch", "cuda") and "\n" not in kernels.describe("auto", "cpu")


def test_a_failed_import_is_reported_not_raised():
    fn, why = kernels._load("mamba_ssm")
    if fn is None:
        assert why.startswith("import mamba_ssm.ops.selective_scan_interface failed: ") or "kernel" in why
        assert kernels.resolve("auto", "cuda")["mamba"] == "torch"
        with pytest.raises(RuntimeError, match="mamba_ssm is not usable"):
            kernels.mamba_selective_scan(*on(mamba_inputs()))


# ---- the probe: an importable kernel is used only after a test call agrees with the loop ----------

def broken(exc):
    def fn(*a, **kw):
        raise exc
    return fn


def test_probe_accepts_a_correct_kernel_and_rejects_failing_or_wrong_ones():
    assert kernels.probe("fla", fake_chunk_rwkv6, "cpu") is None
    assert kernels.probe("mamba_ssm", fake_selective_scan_fn, "cpu") is None
    # an old fla on an old torch: imports, then fails at the first call (Triton)
    why = kernels.probe("fla", broken(RuntimeError("triton: unsupported\nmore detail")), "cpu")
    assert why == "fla's kernel failed on a test call: RuntimeError: triton: unsupported"
    # a kernel that runs but computes something else (e.g. an fla whose default scale K**-0.5 applies)
    def rescaled(r, k, v, w, u, scale=None, **kw):
        return scan.rwkv_sequential(r * 0.125, k, v, w, u, kw["initial_state"])
    assert kernels.probe("fla", rescaled, "cpu").startswith("fla's kernel disagrees with the torch scan on a test call")
    def nan_scan(*a, **kw):
        return fake_selective_scan_fn(*a, **kw) * float("nan")
    assert "disagrees" in kernels.probe("mamba_ssm", nan_scan, "cpu")


def test_load_probes_on_cuda_and_falls_back_with_the_reason(monkeypatch):
    """_load itself (uncached): the import, then on a CUDA machine the probe (run on the CPU here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kernels, "PROBE_DEVICE", "cpu")
    load = kernels._load.__wrapped__
    monkeypatch.setattr(kernels, "_import", lambda package: fake_chunk_rwkv6)
    assert load("fla") == (fake_chunk_rwkv6, None)
    monkeypatch.setattr(kernels, "_import", lambda package: broken(RuntimeError("no kernel image for sm_90")))
    fn, why = load("fla")
    assert fn is None and why == "fla's kernel failed on a test call: RuntimeError: no kernel image for sm_90"
    monkeypatch.setattr(kernels, "_import", broken(ImportError("selective_scan_cuda.so: undefined symbol: _ZN3c10")))
    assert load("mamba_ssm") == (None, "import mamba_ssm.ops.selective_scan_interface failed: "
                                       "ImportError: selective_scan_cuda.so: undefined symbol: _ZN3c10")


# ---- the compositions, on a CPU ------------------------------------------------------------------

def test_mamba_initial_state_by_linearity_equals_the_reference():
    """Zero-state scan + readout tokens + exp(Lam) h0 = the loop with h0: outputs, final state, all gradients."""
    inputs = on(mamba_inputs())                                             # b 2, T 37, D 6, N 4
    ref = outputs_and_grads(scan.mamba_sequential, inputs)
    got = outputs_and_grads(kernels.mamba_selective_scan, inputs, zero_state_scan=sequential_zero_state)
    assert_close(got, ref)
    x, dt, A, Bm, Cm, _ = (t.detach() for t in inputs)
    y, h = kernels.mamba_selective_scan(x, dt, A, Bm, Cm, None, zero_state_scan=sequential_zero_state)
    y_ref, h_ref = scan.mamba_sequential(x, dt, A, Bm, Cm)
    assert torch.allclose(y, y_ref, atol=1e-6) and torch.allclose(h, h_ref, atol=1e-6)


def test_kernel_calls_use_the_packages_layouts(fake_kernels):
    inputs = on(rwkv_inputs(strong=True))                                   # log w far below the floor too
    assert_close(outputs_and_grads(kernels.rwkv_fla, inputs), outputs_and_grads(scan.rwkv_sequential, inputs))
    inputs = on(mamba_inputs())
    assert_close(outputs_and_grads(kernels.mamba_selective_scan, inputs), outputs_and_grads(scan.mamba_sequential, inputs))
    assert fake_kernels == {"fla": 1, "mamba_ssm": 1}
    r, k, v, logw, u, s0 = (t.detach() for t in rwkv_inputs())
    y, _ = kernels.rwkv_fla(r.half(), k.half(), v.half(), logw.half(), u, s0)
    assert y.dtype == torch.float16                                         # float32 inside, the input's dtype out


# ---- the model -----------------------------------------------------------------------------------

def test_auto_on_cpu_is_the_torch_model():
    x = torch.randint(0, 99, (2, 24))
    fast, auto = tiny("RMAP"), tiny("RMAP", kernels="auto")
    auto.load_state_dict(fast.state_dict())
    for reset in (None, doc_resets(2, 24), torch.zeros(2, 24, dtype=torch.bool)):
        assert torch.equal(fast(x, reset=reset)[0], auto(x, reset=reset)[0])
    with pytest.raises(ValueError, match="kernels 'cuda'"):
        HybridLM(HybridConfig(n_layer=2, layout="RM", kernels="cuda"))


def test_model_takes_the_kernel_path_only_without_resets(fake_kernels):
    x = torch.randint(0, 99, (2, 24))
    ref, model = tiny("RMP"), tiny("RMP", kernels="auto")
    model.load_state_dict(ref.state_dict())
    for reset, calls in ((None, 2), (torch.zeros(2, 24, dtype=torch.bool), 2), (doc_resets(2, 24), 0)):
        before = dict(fake_kernels)
        a, sa = ref(x, reset=reset)
        b, sb = model(x, reset=reset)
        assert torch.allclose(a, b, atol=1e-5)
        assert all(torch.allclose(s, t, atol=1e-5) for s, t in zip(ref.flat_states(sa), model.flat_states(sb)) if s is not None)
        assert [fake_kernels[p] - before[p] for p in ("fla", "mamba_ssm")] == [calls, calls]   # R + P's R, M + P's M
    before = dict(fake_kernels)
    model(x[:, :1])                                                          # step mode: always torch
    assert fake_kernels == before


# ---- the script ----------------------------------------------------------------------------------

def test_kernels_flag_logging_resume_and_old_checkpoints(train_hybrid):
    # --device cpu: this checks the CPU wording, also on a GPU pod (where auto would pick CUDA)
    _, out = train_hybrid("--kernels", "auto", "--device", "cpu", max_steps=5)
    assert "Kernels (--kernels auto): RWKV torch (not CUDA), Mamba torch (not CUDA)" in (out / "train.log").read_text()
    assert json.loads((out / "config.json").read_text())["model"]["kernels"] == "auto"
    train_hybrid("--kernels", "torch", "--device", "cpu", "--resume", out="run", max_steps=6)   # may change on resume
    log = (out / "train.log").read_text()
    assert "Kernels (--kernels torch)" in log and "Resuming" in log
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["model_config"]["kernels"] == "torch"
    del ck["model_config"]["kernels"]                                        # a checkpoint from before the flag
    checkpoint.save_atomic(ck, out / "old.pt")
    model, _ = checkpoint.load_model(out / "old.pt", "hybrid")
    assert model.config.kernels == "torch"


# ---- the kernels themselves, on CUDA --------------------------------------------------------------

def importable(package):
    try:
        kernels._import(package)
    except Exception:
        return False
    return True


def needs(package):
    """Skip without CUDA or without the package; a package that imports but fails its probe fails the tests."""
    missing = not torch.cuda.is_available() or not importable(package)
    return pytest.mark.skipif(missing, reason=f"needs CUDA and an importable {package}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_installed_kernel_passes_its_probe_on_cuda():
    """The pod's kernel check: what --kernels auto would do with each installed package, and why."""
    installed = [p for p in kernels.PACKAGES.values() if importable(p)]
    if not installed:
        pytest.skip("neither fla nor mamba_ssm is installed: --kernels auto runs the torch scans")
    for package in installed:
        fn, why = kernels._load(package)
        assert fn is not None, f"{package}: {why} (fix: {kernels.INSTALL[package]})"


@needs("fla")
def test_fla_equals_the_reference_on_cuda():
    """T = 37 (not a multiple of fla's 64-token chunks), head size 64, nonzero initial state."""
    inputs = on(rwkv_inputs(T=37, H=2, K=64, strong=True), "cuda")
    assert_rms_close(outputs_and_grads(kernels.rwkv_fla, inputs), outputs_and_grads(scan.rwkv_sequential, inputs), RMS_FLA)


@needs("mamba_ssm")
def test_mamba_ssm_equals_the_reference_on_cuda():
    """T = 37, 64 channels, N = 16, nonzero initial state; gradients through y and the final state."""
    inputs = on(mamba_inputs(T=37, D=64, N=16), "cuda")
    ref = outputs_and_grads(scan.mamba_sequential, inputs)
    assert_rms_close(outputs_and_grads(kernels.mamba_selective_scan, inputs), ref, RMS_MAMBA)


@needs("fla")
@needs("mamba_ssm")
def test_model_with_kernels_matches_torch_on_cuda():
    torch.manual_seed(0)
    cfg = dict(context=40, n_layer=3, n_head=2, n_embd=128, layout="RMP", gamma_init=0.5)
    ref = HybridLM(HybridConfig(**cfg)).cuda().eval()
    model = HybridLM(HybridConfig(**cfg, kernels="auto")).cuda().eval()
    model.load_state_dict(ref.state_dict())
    x = torch.randint(0, 99, (2, 37), device="cuda")
    a, b = ref(x)[0], model(x)[0]
    assert float((a - b).square().mean().sqrt() / a.square().mean().sqrt()) < RMS_FLA
