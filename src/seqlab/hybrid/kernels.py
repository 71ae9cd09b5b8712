"""Optional fused GPU kernels for family 3's two recurrences (`--kernels auto`).

Why: seqlab.hybrid.scan's forms are exact and fast on a CPU, but on a GPU they are many small eager ops
per chunk. fla's chunk_rwkv6 (Triton) and mamba_ssm's selective scan (CUDA) fuse each recurrence
into a few kernels. Both packages are optional and never required: kind "torch" (the default)
always runs seqlab.hybrid.scan; kind "auto" uses a kernel only on a CUDA device where its package
imports, and seqlab.hybrid.scan everywhere else. The functions below compute exactly seqlab.hybrid.scan's
maths in its conventions (see its docstring), so the models can switch per call.

Resets: neither kernel, called as here, clears its state in the middle of a sequence (fla's
cu_seqlens could split a flattened batch at the resets; not done), so the models call them only
for chunks without any reset; every chunk with a document start runs the torch scans.

Trust: a package that imports is not yet a kernel that works (fla 0.6 needs torch >= 2.7 and
triton >= 3.3 and may import on an older pod, then fail at its first call). So on CUDA each kernel
is probed once, forward and backward on a small input against seqlab.hybrid.scan's loop, before any
model uses it; a failed import or probe falls back to the torch scan with a WARNING line in the run
log that says what failed and how to fix it (INSTALL).
"""
import functools

import torch

from seqlab.hybrid import scan

KINDS = ("torch", "auto")
PACKAGES = {"rwkv": "fla", "mamba": "mamba_ssm"}
MODULES = {"fla": "fla.ops.rwkv6", "mamba_ssm": "mamba_ssm.ops.selective_scan_interface"}
# The install commands (docs, README and runpod_setup.sh print these; tests/test_pod_setup.py checks).
# fla-core is fla's kernels alone: no dependency that could replace the pod's torch. mamba-ssm builds
# a CUDA extension: without --no-build-isolation pip builds it against a fresh torch in a temporary
# env, and the import then fails on this torch (undefined symbol).
INSTALL = {"fla": "pip install fla-core",
           "mamba_ssm": "pip install packaging ninja wheel && pip install --no-build-isolation mamba-ssm"}
NEEDS = {"fla": "torch >= 2.7 and triton >= 3.3 (fla-core 0.6)", "mamba_ssm": "nvcc or a prebuilt wheel for this torch/CUDA"}
PROBE_RMS = {"fla": 2e-2, "mamba_ssm": 1e-3}   # RMS error / RMS of the loop's values; fla runs in TF32
PROBE_DEVICE = "cuda"

# The APIs, read from the sources of fla-core / flash-linear-attention 0.6.0 and mamba-ssm 2.3.2.post1:
#   fla.ops.rwkv6.chunk_rwkv6(r, k, v, w, u, scale=None, initial_state=None, output_final_state=False,
#       cu_seqlens=None, cu_seqlens_cpu=None, **kwargs) -> (o, final_state or None)
#     r, k, w (B, T, H, K), v (B, T, H, V): our layout; `head_first` was removed (passing it raises).
#     w is the log-decay (fla's own RWKV6 layer passes -exp(.), its example logsigmoid(.)).
#     u (H, K). initial_state / final_state (B, H, K, V): rows = key channels, like our S.
#     o_t = scale * r_t^T (S_{t-1} + diag(u) k_t v_t^T), S_t = diag(exp w_t) S_{t-1} + k_t v_t^T
#     (naive_recurrent_rwkv6; the chunk kernel puts u on the diagonal, reads the state before t):
#     our recurrence exactly, with scale = 1. The default scale is K**-0.5, so we pass 1.0.
#     Gradients flow to every input, initial_state and through final_state. Its tl.dot matmuls use
#     Triton's default float32 precision, TF32 on Ampere and later: expect ~1e-3 relative differences.
#   mamba_ssm.ops.selective_scan_interface.selective_scan_fn(u, delta, A, B, C, D=None, z=None,
#       delta_bias=None, delta_softplus=False, return_last_state=False) -> out or (out, last_state)
#     u, delta (b, D, L); A (D, N) float32; B, C (b, N, L) or grouped (b, G, N, L), same dtype as u;
#     out (b, D, L); last_state (b, D, N). No initial-state argument. With D, z, delta_bias None
#     and no softplus: h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t, out_t = C_t . h_t from h = 0.
#     Its docstring: "the gradient of the last state is not considered in the backward pass", so
#     we do not use return_last_state (see mamba_selective_scan).


def _import(package):
    """The kernel function of a package (raises what the import raises)."""
    if package == "fla":
        from fla.ops.rwkv6 import chunk_rwkv6 as fn
    else:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as fn
    return fn


def _first_line(e):
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0]
    return text if len(text) <= 300 else text[:297] + "..."


@functools.cache
def _load(package):
    """(kernel function, None), or (None, why it is not used). Imported and probed once, on first use."""
    try:
        fn = _import(package)
    except Exception as e:  # ImportError, or a compiled extension / Triton that fails to load
        return None, f"import {MODULES[package]} failed: {_first_line(e)}"
    if torch.cuda.is_available():
        why = probe(package, fn, PROBE_DEVICE)
        if why is not None:
            return None, why
    return fn, None


def _rms_rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp(min=1e-30))


def probe(package, fn, device):
    """None when `fn` (the package's kernel) runs forward and backward on `device` and matches
    seqlab.hybrid.scan's loop on a small input with a nonzero initial state: outputs, final state
    and every input gradient within PROBE_RMS[package] (RMS error / RMS of the loop's values).
    Otherwise one line saying why not."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    if package == "fla":    # b 1, T 32, H 2, K 64: one partial fla chunk, a realistic head size
        logw = (-torch.exp(rand(1, 32, 2, 64) - 1)).clamp(min=scan.LOG_W_MIN)
        inputs = [rand(1, 32, 2, 64, scale=0.5), rand(1, 32, 2, 64, scale=0.5), rand(1, 32, 2, 64, scale=0.5),
                  logw, rand(2, 64, scale=0.5), rand(1, 2, 64, 64, scale=0.3)]
        fast = functools.partial(rwkv_fla, kernel=fn)
        ref = scan.rwkv_sequential
    else:                   # b 1, T 32, D 64, N 16
        inputs = [rand(1, 32, 64), torch.nn.functional.softplus(rand(1, 32, 64) * 2 - 1), -torch.exp(rand(64, 16)),
                  rand(1, 32, 16), rand(1, 32, 16), rand(1, 64, 16, scale=0.3)]
        fast = functools.partial(mamba_selective_scan, zero_state_scan=functools.partial(_selective_scan, kernel=fn))
        ref = scan.mamba_sequential
    weights = None
    results = []
    try:
        # the first use may come from inside an eval (no_grad) or an autocast region: neither applies here
        with torch.enable_grad(), torch.autocast(torch.device(device).type, enabled=False):
            for f in (fast, ref):
                xs = [t.to(device).requires_grad_() for t in inputs]
                y, state = f(*xs[:-1], state=xs[-1])
                if weights is None:
                    weights = [rand(*t.shape).to(device) for t in (y, state)]
                loss = (y.float() * weights[0]).sum() + (state.float() * weights[1]).sum()
                results.append([y, state, *torch.autograd.grad(loss, xs)])
    except Exception as e:
        return f"{package}'s kernel failed on a test call: {_first_line(e)}"
    names = ["output", "final state"] + [f"gradient {i}" for i in range(len(inputs))]
    errs = {n: _rms_rel(a, b) for n, a, b in zip(names, *results)}
    worst = max(errs, key=lambda n: (errs[n] != errs[n], errs[n]))     # a NaN first
    if not errs[worst] < PROBE_RMS[package]:    # also catches NaN
        return (f"{package}'s kernel disagrees with the torch scan on a test call ({worst}: RMS error "
                f"{errs[worst]:.3g} of the reference, limit {PROBE_RMS[package]:g})")
    return None


def resolve(kind, device):
    """{"rwkv": "fla" | "torch", "mamba": "mamba_ssm" | "torch"}: the backend each recurrence uses."""
    if kind not in KINDS:
        raise ValueError(f"kernels {kind!r}: use one of {', '.join(KINDS)}")
    cuda = kind == "auto" and torch.device(device).type == "cuda"
    return {rec: pkg if cuda and _load(pkg)[0] is not None else "torch" for rec, pkg in PACKAGES.items()}


def describe(kind, device):
    """For the run log: one line with the backend of each recurrence, then, for each kernel that
    --kernels auto wanted on CUDA but could not use, a WARNING line with the reason and the fix."""
    used = resolve(kind, device)
    cuda = torch.device(device).type == "cuda"
    parts, warnings = [], []
    for rec, pkg in PACKAGES.items():
        name = "RWKV" if rec == "rwkv" else "Mamba"
        why = ""
        if kind == "auto" and used[rec] == "torch":
            why = " (not CUDA)" if not cuda else f" ({pkg}: {_load(pkg)[1]})"
            if cuda:
                warnings.append(f"WARNING: --kernels auto: {name} falls back to the torch scan (slow on a GPU): "
                                f"{_load(pkg)[1]}. Fix: {INSTALL[pkg]} (needs {NEEDS[pkg]}; this is torch "
                                f"{torch.__version__}), then python -m pytest -q tests/test_kernels.py; "
                                f"or run with --kernels torch.")
        parts.append(f"{name} {used[rec]}{why}")
    return "\n".join([f"Kernels (--kernels {kind}): " + ", ".join(parts)] + warnings)


def _kernel(package):
    fn, why = _load(package)
    if fn is None:
        raise RuntimeError(f"{package} is not usable: {why}")
    return fn


def rwkv_fla(r, k, v, logw, u, state, kernel=None):
    """seqlab.hybrid.scan.rwkv_sequential (no reset) through fla: (b, T, H, K) inputs, u (H, K), state
    (b, H, K, K) or None -> y (b, T, H, K) in r's dtype, final state (float32). kernel: fla's
    chunk_rwkv6 unless given (the probe passes the function it checks)."""
    dtype = r.dtype
    r, k, v, logw, u = (t.float() for t in (r, k, v, logw, u))
    y, S = (kernel or _kernel("fla"))(r, k, v, scan.floor_log_retention(logw), u, scale=1.0,
                          initial_state=None if state is None else state.float(), output_final_state=True)
    return y.to(dtype), S


def _selective_scan(x, dt, A, Bm, Cm, kernel=None):
    """mamba_ssm's kernel from a zero state, in our layout: x, dt (b, T, D), Bm, Cm (b, T, N) -> y (b, T, D)."""
    x, dt, Bm, Cm = (t.transpose(1, 2).contiguous() for t in (x, dt, Bm, Cm))      # (b, D, T), (b, N, T)
    y = (kernel or _kernel("mamba_ssm"))(x, dt, A.contiguous(), Bm, Cm, D=None, z=None, delta_bias=None,
                             delta_softplus=False, return_last_state=False)
    return y.transpose(1, 2)


def mamba_selective_scan(x, dt, A, Bm, Cm, state, zero_state_scan=None):
    """seqlab.hybrid.scan.mamba_sequential (no reset) through a zero-state scan (default mamba_ssm's):
    x, dt (b, T, D), A (D, N), Bm, Cm (b, T, N), state (b, D, N) or None -> y (b, T, D), final state.

    The kernel starts from h = 0, so the initial state enters by linearity: with
    Lam_t = A cumsum_{j<=t}(dt_j) (<= 0), h_t = [zero-state scan]_t + exp(Lam_t) h_0, hence
        y_t += sum_n C_t[n] exp(Lam_t)[d, n] h_0[d, n],   h_T = [zero-state h_T] + exp(Lam_T) h_0.
    (This keeps two (b, T, D, N) float32 tensors for the backward, exp(Lam) and its product with
    h_0, which the kernel itself avoids: ~270 MB each per layer at b=32, T=256, D=512, N=16.)
    The zero-state h_T is read out by the kernel itself, so its gradient is exact (mamba_ssm's
    return_last_state has none): N extra tokens with dt = 0 (the state is kept: exp(0 A) = 1, and
    nothing is added) and C = e_n, so the output at token T + n is h_T[:, :, n].
    zero_state_scan(x, dt, A, Bm, Cm) -> y is injectable so that this composition is testable on a CPU.
    """
    scan_fn = zero_state_scan or _selective_scan
    dtype = x.dtype
    x, dt, A, Bm, Cm = (t.float() for t in (x, dt, A, Bm, Cm))
    b, T, D = x.shape
    N = A.shape[1]
    pad = x.new_zeros(b, N, D)
    eye = torch.eye(N, dtype=x.dtype, device=x.device).expand(b, N, N)
    y = scan_fn(torch.cat([x, pad], 1), torch.cat([dt, pad], 1), A,
                torch.cat([Bm, torch.zeros_like(eye)], 1), torch.cat([Cm, eye], 1))
    y, h = y[:, :T], y[:, T:].transpose(1, 2)                                   # (b, T, D), (b, D, N)
    if state is not None:
        decay = torch.exp(dt.cumsum(1).unsqueeze(-1) * A)                       # exp(Lam_t) (b, T, D, N)
        y = y + torch.einsum("btdn,bdn,btn->btd", decay, state.float(), Cm)
        h = h + decay[:, -1] * state.float()
    return y.to(dtype), h
