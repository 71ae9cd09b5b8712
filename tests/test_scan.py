"""Each recurrence's chunked and step forms equal its sequential reference (values and gradients)."""
import pytest
import torch

from seqlab.hybrid import scan

REL = 1e-5


def rwkv_inputs(b=2, T=37, H=2, K=8, seed=0, strong=False):
    g = torch.Generator().manual_seed(seed)
    r, k, v = (torch.randn(b, T, H, K, generator=g) * 0.5 for _ in range(3))
    # log retentions spanning no memory (floored at LOG_W_MIN) to long memory
    logw = -torch.exp(torch.randn(b, T, H, K, generator=g) * (2.5 if strong else 1.0) - 1)
    u = torch.randn(H, K, generator=g) * 0.5
    s0 = torch.randn(b, H, K, K, generator=g) * 0.3
    return [t.double().requires_grad_() for t in (r, k, v, logw, u, s0)]


def mamba_inputs(b=2, T=37, D=6, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, T, D, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(b, T, D, generator=g) * 2 - 1)
    A = -torch.exp(torch.randn(D, N, generator=g))
    Bm, Cm = torch.randn(b, T, N, generator=g), torch.randn(b, T, N, generator=g)
    h0 = torch.randn(b, D, N, generator=g) * 0.3
    return [t.double().requires_grad_() for t in (x, dt, A, Bm, Cm, h0)]


def resets(b, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(b, T, generator=g) < 0.08
    z[0, 0] = True
    return z


def outputs_and_grads(fn, inputs, **kw):
    *args, s0 = inputs
    y, s = fn(*args, state=s0, **kw)
    g = torch.Generator().manual_seed(9)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum() + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    grads = torch.autograd.grad(loss, inputs)
    return [y, s, *grads]


def assert_close(a, b):
    for x, y in zip(a, b):
        scale = y.abs().max().clamp(min=1e-12)
        assert (x - y).abs().max() / scale < REL, float((x - y).abs().max() / scale)


def float32(inputs):
    return [t.detach().float().requires_grad_() for t in inputs]


@pytest.mark.parametrize("chunk", [1, 4, 16])
@pytest.mark.parametrize("with_reset", [False, True])
def test_rwkv_chunked_equals_sequential(chunk, with_reset):
    inputs = float32(rwkv_inputs(strong=True))
    reset = resets(2, 37) if with_reset else None
    ref = outputs_and_grads(scan.rwkv_sequential, inputs, reset=reset)
    got = outputs_and_grads(scan.rwkv_chunked, inputs, reset=reset, chunk=chunk)
    assert_close(got, ref)


@pytest.mark.parametrize("chunk", [1, 5, 16])
@pytest.mark.parametrize("with_reset", [False, True])
def test_mamba_chunked_equals_sequential(chunk, with_reset):
    inputs = float32(mamba_inputs())
    reset = resets(2, 37) if with_reset else None
    ref = outputs_and_grads(scan.mamba_sequential, inputs, reset=reset)
    got = outputs_and_grads(scan.mamba_chunked, inputs, reset=reset, chunk=chunk)
    assert_close(got, ref)


def test_step_forms_equal_sequential():
    r, k, v, logw, u, s = (t.detach() for t in rwkv_inputs())
    reset = resets(2, 37)
    y_ref, s_ref = scan.rwkv_sequential(r, k, v, logw, u, s, reset)
    for t in range(37):
        y, s = scan.rwkv_step(r[:, t], k[:, t], v[:, t], logw[:, t], u, s, reset[:, t])
        assert torch.allclose(y, y_ref[:, t], rtol=1e-12, atol=1e-12)
    assert torch.allclose(s, s_ref)
    x, dt, A, Bm, Cm, h = (t.detach() for t in mamba_inputs())
    y_ref, h_ref = scan.mamba_sequential(x, dt, A, Bm, Cm, h, reset)
    for t in range(37):
        y, h = scan.mamba_step(x[:, t], dt[:, t], A, Bm[:, t], Cm[:, t], h, reset[:, t])
        assert torch.allclose(y, y_ref[:, t])
    assert torch.allclose(h, h_ref)


def test_reset_forgets_everything_before():
    """After a reset at t, outputs from t on do not depend on tokens before t (or on the initial state)."""
    r, k, v, logw, u, s0 = (t.detach() for t in rwkv_inputs(b=1, T=20))
    reset = torch.zeros(1, 20, dtype=torch.bool)
    reset[0, 9] = True
    y1, _ = scan.rwkv_chunked(r, k, v, logw, u, s0, reset, chunk=4)
    r2, k2 = r.clone(), k.clone()
    r2[:, :9], k2[:, :9] = torch.randn_like(r2[:, :9]), torch.randn_like(k2[:, :9])
    y2, _ = scan.rwkv_chunked(r2, k2, v, logw, u, torch.zeros_like(s0), reset, chunk=4)
    assert torch.allclose(y1[:, 9:], y2[:, 9:]) and not torch.allclose(y1[:, :9], y2[:, :9])


def test_strong_decay_is_finite_in_float32():
    """Retentions far below the floor (log w = -1e4) and long chunks of them stay finite."""
    r, k, v, logw, u, s0 = float32(rwkv_inputs(T=40))
    logw = torch.full_like(logw, -1e4).requires_grad_()
    y, s = scan.rwkv_chunked(r, k, v, logw, u, s0, chunk=16)
    (y.sum() + s.sum()).backward()
    assert torch.isfinite(y).all() and torch.isfinite(r.grad).all()
    x, dt, A, Bm, Cm, h0 = float32(mamba_inputs(T=40))
    y, h = scan.mamba_chunked(x, dt * 1e4, A, Bm, Cm, h0, chunk=16)
    assert torch.isfinite(y).all() and torch.isfinite(h).all()


def test_chunk_too_long_is_refused():
    r, k, v, logw, u, s0 = (t.detach() for t in rwkv_inputs())
    with pytest.raises(ValueError, match="overflow"):
        scan.rwkv_chunked(r, k, v, logw, u, s0, chunk=scan.MAX_CHUNK + 1)


# ---- the alternative chunked forms kept beside the defaults (same checks) ---------------------

@pytest.mark.parametrize("chunk", [1, 5, 16])
@pytest.mark.parametrize("with_reset", [False, True])
def test_rwkv_chunked_autograd_equals_sequential(chunk, with_reset):
    inputs = float32(rwkv_inputs(strong=True))
    reset = resets(2, 37) if with_reset else None
    ref = outputs_and_grads(scan.rwkv_sequential, inputs, reset=reset)
    got = outputs_and_grads(scan.rwkv_chunked_autograd, inputs, reset=reset, chunk=chunk)
    assert_close(got, ref)


def test_rwkv_chunked_without_state_or_reset_and_in_float64():
    """Default arguments (no initial state), a length shorter than one chunk, and float64 inputs."""
    r, k, v, logw, u, _ = rwkv_inputs(T=7)
    y, s = scan.rwkv_chunked(r, k, v, logw, u)
    y_ref, s_ref = scan.rwkv_sequential(r, k, v, logw, u)
    assert y.dtype == torch.float64 and torch.allclose(y, y_ref) and torch.allclose(s, s_ref)
    (y.sum() + s.sum()).backward()
    assert torch.isfinite(logw.grad).all()


@pytest.mark.parametrize("chunk", [1, 5, 16])
@pytest.mark.parametrize("with_reset", [False, True])
def test_mamba_chunked_autograd_equals_sequential(chunk, with_reset):
    inputs = float32(mamba_inputs())
    reset = resets(2, 37) if with_reset else None
    ref = outputs_and_grads(scan.mamba_sequential, inputs, reset=reset)
    got = outputs_and_grads(scan.mamba_chunked_autograd, inputs, reset=reset, chunk=chunk)
    assert_close(got, ref)


@pytest.mark.parametrize("chunk", [2, 8, 64])
def test_mamba_chunked_other_blocks_strong_decay_and_defaults(chunk):
    """Block lengths above and below T, strong decays (retention ~0), and no initial state."""
    x, dt, A, Bm, Cm, _ = float32(mamba_inputs(T=29))
    dt2 = (dt * 20).detach().requires_grad_()
    reset = resets(2, 29, seed=3)
    h0 = torch.zeros(2, 6, 4, requires_grad=True)
    ref = outputs_and_grads(scan.mamba_sequential, [x, dt2, A, Bm, Cm, h0], reset=reset)
    got = outputs_and_grads(scan.mamba_chunked, [x, dt2, A, Bm, Cm, h0], reset=reset, chunk=chunk)
    assert_close(got, ref)
    y, h = scan.mamba_chunked(x, dt, A, Bm, Cm)
    y_ref, h_ref = scan.mamba_sequential(x, dt, A, Bm, Cm)
    assert torch.allclose(y, y_ref, atol=1e-5) and torch.allclose(h, h_ref, atol=1e-5)


def test_chunked_forms_take_non_contiguous_inputs():
    """Inputs that are views of larger tensors (as the models' projections give) and a gradient
    that is not contiguous (the output is transposed before the loss) give the reference results."""
    r, k, v, logw, u, s0 = float32(rwkv_inputs(T=21))
    big = torch.cat([r, k], -1).detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    rr, kk = big[..., :8], big[..., 8:]
    outs = [scan.rwkv_chunked(rr, kk, v, logw, u, s0, chunk=4)[0].transpose(1, 2),
            scan.rwkv_sequential(rr, kk, v, logw, u, s0)[0].transpose(1, 2)]
    grads = [torch.autograd.grad((o * torch.arange(o.numel()).view(o.shape).sin()).sum(), big)[0] for o in outs]
    assert_close([outs[0], grads[0]], [outs[1], grads[1]])
    x, dt, A, Bm, Cm, h0 = float32(mamba_inputs(T=21))
    xb = torch.cat([x, dt], -1).detach().requires_grad_()
    outs = [scan.mamba_chunked(xb[..., :6], xb[..., 6:], A, Bm, Cm, h0, chunk=4)[0].transpose(1, 2),
            scan.mamba_sequential(xb[..., :6], xb[..., 6:], A, Bm, Cm, h0)[0].transpose(1, 2)]
    grads = [torch.autograd.grad((o * torch.arange(o.numel()).view(o.shape).sin()).sum(), xb)[0] for o in outs]
    assert_close([outs[0], grads[0]], [outs[1], grads[1]])


@pytest.mark.parametrize("b,H", [(1, 1), (1, 2), (2, 2)])
def test_chunked_forms_leave_their_inputs_alone(b, H):
    """No input is changed in place (with b = 1 the chunk layout can be a view of the input)."""
    r, k, v, logw, u, s0 = (t.detach() for t in rwkv_inputs(b=b, T=16, H=H))
    before = [t.clone() for t in (r, k, v, logw, u, s0)]
    y, s = scan.rwkv_chunked(r, k, v, logw, u, s0, chunk=4)
    assert all(torch.equal(t, c) for t, c in zip((r, k, v, logw, u, s0), before))
    y_ref, s_ref = scan.rwkv_sequential(r, k, v, logw, u, s0)
    assert torch.allclose(y, y_ref) and torch.allclose(s, s_ref)
    x, dt, A, Bm, Cm, h0 = (t.detach() for t in mamba_inputs(b=b, T=16))
    before = [t.clone() for t in (x, dt, A, Bm, Cm, h0)]
    scan.mamba_chunked(x, dt, A, Bm, Cm, h0, chunk=4)
    assert all(torch.equal(t, c) for t, c in zip((x, dt, A, Bm, Cm, h0), before))


@pytest.mark.parametrize("form", ["sequential", "chunked", "chunked_autograd"])
def test_gradient_reaches_logw_below_the_floor(form):
    """A channel floored at LOG_W_MIN still gets the gradient that raises its retention (no dead zone);
    a gradient pushing it further below the floor is dropped (no drift). Same in every form."""
    r, k, v, logw, u, s0 = (t.detach() for t in rwkv_inputs(T=6))     # short: e^(-8 * 6) is still far from 0
    k, v, s0 = k.abs(), v.abs(), s0.abs() + 0.1          # positive state: more retention = larger state
    logw = torch.full_like(logw, scan.LOG_W_MIN - 3.0)
    logw[..., 0] = -0.5                                  # one channel above the floor
    fn = getattr(scan, "rwkv_" + form)
    grads = []
    for sign in (-1.0, 1.0):                             # loss -sum(S): wants memory; +sum(S): wants less
        lw = logw.clone().requires_grad_()
        _, s = fn(r, k, v, lw, u, state=s0)
        (sign * s.sum()).backward()
        grads.append(lw.grad)
    up, down = grads
    below = logw < scan.LOG_W_MIN
    assert (up[below] < 0).all()                         # descent raises log w back towards the floor
    assert (down[below] == 0).all() and (down[~below] > 0).any()
    if form != "sequential":                             # equal to the reference's gradient
        lw = logw.clone().requires_grad_()
        _, s = scan.rwkv_sequential(r, k, v, lw, u, state=s0)
        (-s.sum()).backward()
        assert torch.allclose(lw.grad, up, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("with_reset", [False, True])
def test_cpp_mamba_scan_equals_sequential(with_reset):
    """The C++ CPU scan (float32; built on first use) against the reference: values, final state, gradients."""
    from seqlab.hybrid import mamba_cpu
    if not mamba_cpu.available():
        pytest.skip(f"C++ Mamba scan unavailable: {mamba_cpu.REASON}")
    ref_in = mamba_inputs(T=40)
    kw = {"reset": resets(2, 40)} if with_reset else {}
    ref = outputs_and_grads(scan.mamba_sequential, float32(ref_in), **kw)
    got = outputs_and_grads(lambda *a, state, reset=None: mamba_cpu.scan(*a, state, None if reset is None else ~reset),
                            float32(ref_in), **kw)
    assert_close(got, ref)
    y, _ = scan.mamba_chunked(*[t.detach() for t in float32(ref_in)[:5]])   # the default CPU path takes it
    assert torch.allclose(y.double(), scan.mamba_sequential(*[t.detach() for t in ref_in[:5]])[0], rtol=1e-4, atol=1e-5)


def test_cpp_mamba_scan_is_a_checked_custom_op_that_compiles_without_a_graph_break():
    """torch.library's own checks of the op (schema, fake shapes, autograd registration), and a
    fullgraph compile through it (an opaque pybind call would be a graph break and fail here)."""
    from seqlab.hybrid import mamba_cpu
    if not mamba_cpu.available():
        pytest.skip(f"C++ Mamba scan unavailable: {mamba_cpu.REASON}")
    x, dt, A, Bm, Cm = (t.float().detach().requires_grad_() for t in mamba_inputs(T=20)[:5])
    x = x.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()   # strided as the model's conv output
    assert not x.is_contiguous()
    h0 = torch.zeros(x.shape[0], x.shape[2], A.shape[1])
    keep = torch.ones(x.shape[0], 20)
    keep[:, 7] = 0
    torch.library.opcheck(torch.ops.seqlab.mamba_scan.default, (x, dt, A, Bm, Cm, h0, keep))
    y, hT, hs = torch.ops.seqlab.mamba_scan(x, dt, A, Bm, Cm, h0, keep)
    torch.library.opcheck(torch.ops.seqlab.mamba_scan_backward.default,
                          (torch.randn_like(y), torch.randn_like(hT), *(t.detach() for t in (x, dt, A, Bm, Cm)), keep, hs))
    f = torch.compile(lambda *a: mamba_cpu.scan(*a)[0].square().sum(), fullgraph=True, backend="aot_eager")
    got = f(x, dt, A, Bm, Cm, h0, keep)
    want = mamba_cpu.scan(x, dt, A, Bm, Cm, h0, keep)[0].square().sum()
    assert torch.allclose(got, want)
    g_got = torch.autograd.grad(got, (x, dt, A))
    g_want = torch.autograd.grad(want, (x, dt, A))
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(g_got, g_want))
