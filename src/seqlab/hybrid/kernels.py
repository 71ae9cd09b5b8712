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
"""
import functools

import torch

from seqlab.hybrid import scan

KINDS = ("torch", "auto")
PACKAGES = {"rwkv": "fla", "mamba": "mamba_ssm"}

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


@functools.cache
def _load(package):
    """(kernel function, None), or (None, why it did not import). Imported on first use, once."""
    try:
        if package == "fla":
            from fla.ops.rwkv6 import chunk_rwkv6 as fn
        else:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as fn
    except Exception as e:  # ImportError, or a compiled extension / Triton that fails to load
        return None, f"{type(e).__name__}: {e}"
    return fn, None


def resolve(kind, device):
    """{"rwkv": "fla" | "torch", "mamba": "mamba_ssm" | "torch"}: the backend each recurrence uses."""
    if kind not in KINDS:
        raise ValueError(f"kernels {kind!r}: use one of {', '.join(KINDS)}")
    cuda = kind == "auto" and torch.device(device).type == "cuda"
    return {rec: pkg if cuda and _load(pkg)[0] is not None else "torch" for rec, pkg in PACKAGES.items()}


def describe(kind, device):
    """One line for the run log: the backend of each recurrence, and why auto fell back."""
    used = resolve(kind, device)
    parts = []
    for rec, pkg in PACKAGES.items():
        why = ""
        if kind == "auto" and used[rec] == "torch":
            why = " (not CUDA)" if torch.device(device).type != "cuda" else f" ({pkg}: {_load(pkg)[1]})"
        parts.append(f"{'RWKV' if rec == 'rwkv' else 'Mamba'} {used[rec]}{why}")
    return f"Kernels (--kernels {kind}): " + ", ".join(parts)


def _kernel(package):
    fn, why = _load(package)
    if fn is None:
        raise RuntimeError(f"{package} is not importable: {why}")
    return fn


def rwkv_fla(r, k, v, logw, u, state):
    """seqlab.hybrid.scan.rwkv_sequential (no reset) through fla: (b, T, H, K) inputs, u (H, K), state
    (b, H, K, K) or None -> y (b, T, H, K) in r's dtype, final state (float32)."""
    dtype = r.dtype
    r, k, v, logw, u = (t.float() for t in (r, k, v, logw, u))
    y, S = _kernel("fla")(r, k, v, scan.floor_log_retention(logw), u, scale=1.0,
                          initial_state=None if state is None else state.float(), output_final_state=True)
    return y.to(dtype), S


def _selective_scan(x, dt, A, Bm, Cm):
    """mamba_ssm's kernel from a zero state, in our layout: x, dt (b, T, D), Bm, Cm (b, T, N) -> y (b, T, D)."""
    x, dt, Bm, Cm = (t.transpose(1, 2).contiguous() for t in (x, dt, Bm, Cm))      # (b, D, T), (b, N, T)
    y = _kernel("mamba_ssm")(x, dt, A.contiguous(), Bm, Cm, D=None, z=None, delta_bias=None,
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
