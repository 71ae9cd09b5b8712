"""The two linear recurrences of family 3, each written three ways that are tested equal.

RWKV-6 time-mix recurrence (Peng et al. 2024, "Eagle and Finch"), per head:
    y_t = r_t^T (S_{t-1} + diag(u) k_t v_t^T)
    S_t = diag(w_t) S_{t-1} + k_t v_t^T
Mamba selective SSM (Gu & Dao 2023, Algorithm 2, "S6"), per channel d:
    h_t = exp(dt_t A) * h_{t-1} + dt_t x_t B_t
    y_t = C_t . h_t

Glossary (code name: symbol, shape):
    b batch, T time, H heads, K head size (RWKV key and value width), D channels, N state size
    r, k, v  : r_t, k_t, v_t  receptance / key / value      (b, T, H, K)
    logw     : log w_t = -exp(.) <= 0, log retention per token (b, T, H, K); retention 1 = remember;
               floored at LOG_W_MIN in every form (floor_log_retention: gradients pass)
    u        : u, the bonus of the current token              (H, K)
    S        : S_t, the matrix state of a head                (b, H, K, K), rows = key channels
    x, dt    : x_t, Delta_t > 0                               (b, T, D)
    A        : A < 0 (A = -exp(A_log))                        (D, N)
    Bm, Cm   : B_t, C_t (input-dependent)                     (b, T, N)
    h        : h_t                                            (b, D, N)
    reset    : (b, T) bool; True at t clears the state before token t (a document starts at t)

The three forms:
    *_sequential  the definition: a loop over time, vectorised over everything else.
    *_chunked     the training path, chunks of L tokens with the state carried across them,
                  with the backward written out (torch.autograd.Function), so autograd records
                  one node instead of hundreds of small ops. RWKV: decays enter as cumulative
                  log-retentions inside a chunk, so every exponent is bounded (|exponent| <= 45
                  given the retention floor below). Mamba on a CPU: blocks of L tokens scanned in
                  cache (no matmul form exists; see _MambaBlocked).
    *_chunked_autograd  the same chunked maths left to autograd (the earlier default; Mamba's is
                  the GPU path: its log-space exponents are <= 0); tested equal like the rest.
    *_step        one token with an explicit state (generation, state handoff).
Every function returns (y, final state), so a long sequence may be fed in pieces.
The module knows nothing about the models that call it.
"""
import torch

from seqlab.hybrid import mamba_cpu

# Retention floor of RWKV: log w >= LOG_W_MIN (w >= 0.0067 per token, i.e. no memory at all
# beyond a few tokens), part of the definition in every form. It bounds the exponents of the
# chunked form (see rwkv_chunked) so float32 is safe for chunks up to MAX_CHUNK tokens.
LOG_W_MIN = -5.0
MAX_CHUNK = 16


def _floor_grad(logw, g):
    """The floor's gradient: g where log w >= LOG_W_MIN, and below it only where descent (-g) would raise log w."""
    return g * ((logw >= LOG_W_MIN) | (g < 0)).to(g.dtype)


class _Floor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logw):
        ctx.save_for_backward(logw)
        return logw.clamp(min=LOG_W_MIN)

    @staticmethod
    def backward(ctx, g):
        return _floor_grad(ctx.saved_tensors[0], g)


def floor_log_retention(logw):
    """max(log w, LOG_W_MIN) with no gradient dead zone below the floor.

    A plain clamp gives a channel below the floor zero gradient, so it could never learn its way
    back to longer memory. Here the forward is the clamp; the backward passes the gradient where
    log w >= LOG_W_MIN and, below the floor, wherever a descent step would raise log w (g < 0: a
    one-sided straight-through estimator); a gradient pushing further down is dropped, so a channel
    does not drift ever lower while its forward value stays at the floor.
    """
    return _Floor.apply(logw)


# ---- RWKV ------------------------------------------------------------------------------------

def _zero_if(state, reset_t):
    """state with the rows of batch elements that reset at this token set to zero."""
    if reset_t is None:
        return state
    return state * (~reset_t).to(state.dtype).view(-1, *([1] * (state.dim() - 1)))


def rwkv_step(r, k, v, logw, u, state, reset=None):
    """One token: r, k, v, logw (b, H, K); state (b, H, K, K); reset (b,) or None -> y (b, H, K), state."""
    state = _zero_if(state, reset)
    logw = floor_log_retention(logw)
    # y = r^T (S + diag(u) k v^T) = r^T S + (r . u k) v: no (K, K) temporary for the bonus
    y = torch.einsum("bhk,bhkv->bhv", r, state) + (r * u * k).sum(-1, keepdim=True) * v
    return y, torch.exp(logw).unsqueeze(-1) * state + k.unsqueeze(-1) * v.unsqueeze(-2)


def rwkv_sequential(r, k, v, logw, u, state=None, reset=None):
    """The definition, token by token. (b, T, H, K) inputs -> y (b, T, H, K), final state."""
    b, T, H, K = r.shape
    if state is None:
        state = r.new_zeros(b, H, K, K)
    resets = reset.unbind(1) if reset is not None else [None] * T
    ys = []
    for r_t, k_t, v_t, w_t, z_t in zip(r.unbind(1), k.unbind(1), v.unbind(1), logw.unbind(1), resets):
        y, state = rwkv_step(r_t, k_t, v_t, w_t, u, state, z_t)
        ys.append(y)
    return torch.stack(ys, 1), state


def _chunks(t, L):
    """(b, T, ...) -> (b, T/L, L, ...), zero-padding T up to a multiple of L."""
    b, T = t.shape[:2]
    pad = (-T) % L
    if pad:
        t = torch.cat([t, t.new_zeros(b, pad, *t.shape[2:])], 1)
    return t.reshape(b, -1, L, *t.shape[2:])


def _segments(reset, L):
    """Per chunk, the number of resets up to each token (b, n, L); None without resets."""
    if reset is None:
        return None
    return _chunks(reset.to(torch.int32), L).cumsum(2)


def rwkv_chunked_autograd(r, k, v, logw, u, state=None, reset=None, chunk=16):
    """Same result as rwkv_sequential, computed a chunk of `chunk` tokens at a time.

    Inside a chunk, Lam_t = sum_{j<=t} log w_j (cumulative log-retention, Lam = 0 before the
    chunk) and m is the chunk's middle token:
        y_t = sum_{s<t} [(r_t exp(Lam_{t-1} - Lam_m)) . (k_s exp(Lam_m - Lam_s))] v_s   intra-chunk
            + (r_t . u k_t) v_t                                                         bonus
            + (r_t exp(Lam_{t-1}))^T S_0                                                carried state
        S_L = exp(Lam_L) S_0 + sum_s (k_s exp(Lam_L - Lam_s)) v_s^T
    The pair factor exp(Lam_{t-1} - Lam_s) is split at m so the intra-chunk term is one matmul;
    every exponent is a difference of log-retentions inside one chunk, at most
    |LOG_W_MIN| * (chunk/2 + 1) in size (45 at chunk 16), so float32 neither overflows nor
    underflows; the carried-state factors have exponent <= 0. A reset at t removes every term
    whose source lies before t.
    This version leaves the backward to autograd; rwkv_chunked (the default) computes the same
    forward with its backward written out (_RWKVChunked), tested equal to both.
    """
    b, T, H, K = r.shape
    L = chunk
    if L > MAX_CHUNK:
        raise ValueError(f"chunk {L} > {MAX_CHUNK}: the exponents could overflow float32")
    if state is None:
        state = r.new_zeros(b, H, K, K)
    logw = floor_log_retention(logw)
    # (b, T, H, K) -> (b, H, n, L, K), one copy each, so the matmuls below need no more copies
    rc, kc, vc, wc = (_chunks(t.transpose(1, 2).flatten(0, 1), L).view(b, H, -1, L, K) for t in (r, k, v, logw))
    lam = wc.cumsum(3)                        # Lam_t, inclusive
    lam_prev = lam - wc                       # Lam_{t-1}
    lam_end = lam[..., -1:, :]                # Lam_L            (b, H, n, 1, K)
    lam_mid = lam[..., (L - 1) // 2:(L + 1) // 2, :]  # Lam_m
    mask = torch.ones(L, L, dtype=torch.bool, device=r.device).tril(-1)        # s < t
    seg = _segments(reset, L)
    if seg is not None:
        seg = seg.unsqueeze(1)                                                 # (b, 1, n, L)
        mask = mask & (seg.unsqueeze(-1) == seg.unsqueeze(-2))                 # (b, 1, n, L, L)
    q = rc * torch.exp(lam_prev - lam_mid)
    kk = kc * torch.exp(lam_mid - lam)
    att = torch.where(mask, q @ kk.transpose(-1, -2), 0.0)   # masked pairs (s >= t) may be huge: drop, never multiply
    y = att @ vc + (rc * u[None, :, None, None] * kc).sum(-1, keepdim=True) * vc
    # carried state: read it, then advance it by the chunk's own contribution; a loop over chunks only
    k_end = kc * torch.exp(lam_end - lam)
    carry = torch.exp(lam_end).transpose(-1, -2)                               # (b, H, n, K, 1)
    q0 = rc * torch.exp(lam_prev)
    if seg is not None:
        k_end = k_end * (seg == seg[..., -1:]).unsqueeze(-1)
        carry = carry * (seg[..., -1:] == 0).unsqueeze(-1)
        q0 = q0 * (seg == 0).unsqueeze(-1)
    ys = []
    for q0_c, k_c, v_c, carry_c in zip(q0.unbind(2), k_end.unbind(2), vc.unbind(2), carry.unbind(2)):
        ys.append(q0_c @ state)
        state = carry_c * state + k_c.transpose(-1, -2) @ v_c
    y = (y + torch.stack(ys, 2)).flatten(2, 3)[:, :, :T].transpose(1, 2)      # (b, T, H, K)
    return y, state


# ---- Mamba -----------------------------------------------------------------------------------

def mamba_step(x, dt, A, Bm, Cm, state, reset=None):
    """One token: x, dt (b, D); Bm, Cm (b, N); state (b, D, N) -> y (b, D), state."""
    state = _zero_if(state, reset)
    state = torch.exp(dt.unsqueeze(-1) * A) * state + (dt * x).unsqueeze(-1) * Bm.unsqueeze(1)
    return (state * Cm.unsqueeze(1)).sum(-1), state


def mamba_sequential(x, dt, A, Bm, Cm, state=None, reset=None):
    """The definition, token by token. x, dt (b, T, D); Bm, Cm (b, T, N) -> y (b, T, D), final state."""
    b, T, D = x.shape
    if state is None:
        state = x.new_zeros(b, D, A.shape[1])
    resets = reset.unbind(1) if reset is not None else [None] * T
    ys = []
    for x_t, dt_t, B_t, C_t, z_t in zip(x.unbind(1), dt.unbind(1), Bm.unbind(1), Cm.unbind(1), resets):
        y, state = mamba_step(x_t, dt_t, A, B_t, C_t, state, z_t)
        ys.append(y)
    return torch.stack(ys, 1), state


def mamba_chunked_autograd(x, dt, A, Bm, Cm, state=None, reset=None, chunk=16):
    """Same result as mamba_sequential, computed as chunk-local scans run side by side.

    Mamba's retention exp(dt_t A) differs per channel and state index, so no form avoids one
    value per (token, channel, state index); what a loop over time wastes is the T sequential
    steps. Here the T/L chunks are scanned together from a zero state (L steps, each over all
    chunks at once), then the chunk-start states h_0 are carried over the chunks (T/L steps):
        h_t = [local scan of the chunk up to t] + exp(Lam_t) h_0,   Lam_t = sum_{j<=t} dt_j A
    with Lam_t <= 0 accumulated in log space from the chunk start, so nothing overflows.
    y_t = C_t . h_t = C_t . local_t + (C_t exp(Lam_t)) . h_0.
    Autograd records every step; on a CPU this is slower than the loop over time (its (b, T/L, D, N)
    tensors live in main memory). mamba_chunked (the default) is the blocked form with its backward
    written out (_MambaBlocked).
    """
    b, T, D = x.shape
    N = A.shape[1]
    L = chunk
    if state is None:
        state = x.new_zeros(b, D, N)
    xc, dtc, Bc, Cc = (_chunks(t, L) for t in (x, dt, Bm, Cm))                # (b, n, L, .)
    n = xc.shape[1]
    seg = _segments(reset, L)                                                  # (b, n, L)
    h = x.new_zeros(b, n, D, N)
    lam = x.new_zeros(b, n, D, N)
    ys, qs = [], []
    keep = None if seg is None else torch.cat([seg[:, :, :1] == 0, seg[:, :, 1:] == seg[:, :, :-1]], 2)
    for t, (x_t, dt_t, B_t, C_t) in enumerate(zip(xc.unbind(2), dtc.unbind(2), Bc.unbind(2), Cc.unbind(2))):
        dA = dt_t.unsqueeze(-1) * A                                            # log retention (b, n, D, N)
        if keep is not None:
            h = h * keep[:, :, t, None, None]
        h = torch.exp(dA) * h + (dt_t * x_t).unsqueeze(-1) * B_t.unsqueeze(2)
        lam = lam + dA
        C_t = C_t.unsqueeze(2)
        ys.append((h * C_t).sum(-1))
        q = torch.exp(lam) * C_t
        if seg is not None:
            q = q * (seg[:, :, t] == 0)[..., None, None]
        qs.append(q)
    carry = torch.exp(lam)                                                     # (b, n, D, N)
    if seg is not None:
        carry = carry * (seg[:, :, -1] == 0).to(carry.dtype)[..., None, None]
    starts = []
    for carry_c, h_c in zip(carry.unbind(1), h.unbind(1)):
        starts.append(state)
        state = carry_c * state + h_c
    y = torch.stack(ys, 2) + torch.einsum("bntdN,bndN->bntd", torch.stack(qs, 2), torch.stack(starts, 1))
    return y.reshape(b, -1, D)[:, :T], state


# ---- hand-written backward (the default chunked paths) ---------------------------------------
# Autograd over the chunked forms records ~100 elementwise ops on (b, H, n, L, K) tensors; the
# Functions below compute the same forward with fewer, larger ops and a backward written out:
# the adjoint of the carried state is the same linear recurrence run backwards over the chunks
# (g_c = carry_c * g_{c+1} + q0_c^T gy_c), and every gradient of a log-retention is an
# elementwise product X * dX of a factor X = x exp(.) with its gradient, summed by a reverse cumsum.

class _RWKVChunked(torch.autograd.Function):
    """rwkv_chunked's forward, laid out (chunk, b*H, L, K) so each chunk is one contiguous block, with
    the state carried by a loop over chunks of small in-cache matmuls, and the backward written out."""

    @staticmethod
    def forward(ctx, r, k, v, logw, u, state, seg, L):
        b, T, H, K = r.shape
        n = -(-T // L)
        BH, m = b * H, (L - 1) // 2
        rc, kc, vc, wc = (_to_chunks(t, L) for t in (r, k, v, logw))          # (n, BH, L, K)
        # log-retentions in base 2 (exp2 is 2-3x cheaper than exp in PyTorch's CPU kernels)
        wc = wc.clamp(min=LOG_W_MIN).mul_(LOG2E)                             # (new tensor: wc may view logw)
        lam = torch.matmul(torch.ones(L, L, dtype=r.dtype, device=r.device).tril(), wc)  # Lam_t, inclusive
        lam_mid = lam[:, :, m:m + 1]
        lam_end = lam[:, :, -1:]
        E1 = torch.sub(lam, wc).sub_(lam_mid).exp2_()                         # exp(Lam_{t-1} - Lam_m) <= e^45
        E2 = torch.sub(lam_mid, lam).exp2_()                                  # exp(Lam_m - Lam_t)     <= e^45
        f_mid = lam_mid.exp2()                                                 # <= 1
        f_end = torch.sub(lam_end, lam_mid).exp2_()                           # <= 1
        carry = lam_end.exp2().transpose(-1, -2)                               # exp(Lam_L) (n, BH, K, 1)
        q = rc * E1
        kk = kc * E2
        q0 = q * f_mid                                                         # r exp(Lam_{t-1})
        k_end = kk * f_end                                                     # k exp(Lam_L - Lam_t)
        mask = torch.ones(L, L, dtype=torch.bool, device=r.device).tril(-1)   # s < t
        m3 = m4 = None
        if seg is not None:
            seg = seg.transpose(0, 1).unsqueeze(2).expand(n, b, H, L).reshape(n, BH, L)
            mask = mask & (seg.unsqueeze(-1) == seg.unsqueeze(-2))
            m3 = (seg == 0).unsqueeze(-1).to(r.dtype)                          # reads the carried state
            m4 = (seg == seg[..., -1:]).unsqueeze(-1).to(r.dtype)              # reaches the chunk end
            q0 *= m3
            k_end *= m4
            carry = carry * (seg[..., -1:] == 0).unsqueeze(-1).to(r.dtype)
        att = torch.bmm(q.flatten(0, 1), kk.flatten(0, 1).transpose(1, 2))
        att = att.view(n, BH, L, L).masked_fill_(~mask, 0.0)                  # masked pairs may be huge: drop
        ub = u.repeat(b, 1).unsqueeze(1)                                       # (BH, 1, K)
        bonus = (rc * kc).mul_(ub).sum(-1, keepdim=True)                       # (n, BH, L, 1)
        y = torch.baddbmm((bonus * vc).flatten(0, 1), att.flatten(0, 1), vc.flatten(0, 1)).view(n, BH, L, K)
        S = r.new_empty(n, BH, K, K)                                           # state at each chunk start
        state = state.reshape(BH, K, K)
        for c in range(n):
            S[c] = state
            y[c].baddbmm_(q0[c], state)
            state = torch.baddbmm(carry[c] * state, k_end[c].transpose(1, 2), vc[c])
        ctx.save_for_backward(logw, u, rc, kc, vc, q, kk, q0, k_end, E1, E2, f_mid, f_end, carry, S, att, bonus,
                              mask, *(() if seg is None else (m3, m4)))
        ctx.shape = (b, T, H, K, L, n, m, seg is not None)
        return _from_chunks(y, b, T, H), state.view(b, H, K, K)

    @staticmethod
    def backward(ctx, gy, gS):
        b, T, H, K, L, n, m, has_seg = ctx.shape
        logw, u, rc, kc, vc, q, kk, q0, k_end, E1, E2, f_mid, f_end, carry, S, att, bonus, mask, *ms = ctx.saved_tensors
        BH = b * H
        gy = _to_chunks(gy, L)
        dv = torch.baddbmm((bonus * gy).flatten(0, 1), att.flatten(0, 1).transpose(1, 2), gy.flatten(0, 1))
        dv = dv.view(n, BH, L, K)
        dq0, dk_end = torch.empty_like(q0), torch.empty_like(k_end)
        dcarry = torch.empty_like(carry)
        g = gS.reshape(BH, K, K)                                               # grad of the state after chunk c
        for c in range(n - 1, -1, -1):                                         # the same recurrence, backwards
            torch.bmm(vc[c], g.transpose(1, 2), out=dk_end[c])
            dv[c].baddbmm_(k_end[c], g)
            torch.sum(g * S[c], -1, keepdim=True, out=dcarry[c])
            torch.bmm(gy[c], S[c].transpose(1, 2), out=dq0[c])
            g = torch.baddbmm(carry[c] * g, q0[c].transpose(1, 2), gy[c])
        if has_seg:
            m3, m4 = ms
            dq0 *= m3
            dk_end *= m4
        datt = torch.bmm(gy.flatten(0, 1), vc.flatten(0, 1).transpose(1, 2)).view(n, BH, L, L).masked_fill_(~mask, 0.0)
        dq = torch.bmm(datt.flatten(0, 1), kk.flatten(0, 1)).view(n, BH, L, K)
        dkk = torch.bmm(datt.flatten(0, 1).transpose(1, 2), q.flatten(0, 1)).view(n, BH, L, K)
        s = (gy * vc).sum(-1, keepdim=True)
        su = s * u.repeat(b, 1).unsqueeze(1)
        dr = torch.addcmul(dq, dq0, f_mid).mul_(E1).addcmul_(su, kc)
        dk = torch.addcmul(dkk, dk_end, f_end).mul_(E2).addcmul_(su, rc)
        du = (rc * kc).mul_(s).sum((0, 2)).view(b, H, K).sum(0)
        # log-retentions: each factor X = x exp(z) gives dz = X dX
        g1 = dq * q
        g3 = dq0 * q0
        g2 = dkk * kk
        g4 = dk_end * k_end
        dlam_prev = g1 + g3
        dlam = dlam_prev - g2 - g4                                             # lam_prev = lam - wc
        dlam[:, :, m:m + 1] += g2.sum(2, keepdim=True) - g1.sum(2, keepdim=True)
        dlam[:, :, -1:] += g4.sum(2, keepdim=True) + (dcarry * carry).transpose(-1, -2)
        # lam = cumsum(wc), lam_prev = lam - wc: a reverse cumsum (one small matmul)
        dwc = torch.matmul(torch.ones(L, L, dtype=dlam.dtype, device=dlam.device).triu(), dlam).sub_(dlam_prev)
        dlogw = _floor_grad(logw, _from_chunks(dwc, b, T, H))             # floor_log_retention's backward
        return (_from_chunks(dr, b, T, H), _from_chunks(dk, b, T, H), _from_chunks(dv, b, T, H), dlogw, du,
                g.view(b, H, K, K), None, None)


def _to_chunks(t, L):
    """(b, T, H, K) -> (n, b*H, L, K), contiguous, zero-padding T up to n*L."""
    b, T, H, K = t.shape
    pad = (-T) % L
    if pad:
        t = torch.cat([t, t.new_zeros(b, pad, H, K)], 1)
    return t.reshape(b, -1, L, H, K).permute(1, 0, 3, 2, 4).reshape(-1, b * H, L, K)


def _from_chunks(t, b, T, H):
    """(n, b*H, L, K) -> (b, T, H, K), the inverse of _to_chunks."""
    n, _, L, K = t.shape
    return t.view(n, b, H, L, K).permute(1, 0, 3, 2, 4).reshape(b, n * L, H, K)[:, :T]


def rwkv_chunked(r, k, v, logw, u, state=None, reset=None, chunk=16):
    """Same result as rwkv_sequential: the chunked form of rwkv_chunked_autograd (the formulas are in
    its docstring) with the backward written out (_RWKVChunked); the training path."""
    b, T, H, K = r.shape
    if chunk > MAX_CHUNK:
        raise ValueError(f"chunk {chunk} > {MAX_CHUNK}: the exponents could overflow float32")
    if state is None:
        state = r.new_zeros(b, H, K, K)
    return _RWKVChunked.apply(r, k, v, logw, u, state, _segments(reset, chunk), chunk)


class _MambaBlocked(torch.autograd.Function):
    """mamba_sequential's recurrence over blocks of L tokens, everything inside a block in cache.

    Forward, per block: a = exp(dt A) and u = dt x B for all L tokens at once, the scan
    h_t = a_t h_{t-1} + u_t as L in-place multiply-adds, y = C . h as one batched matmul; only the
    state at each block start is kept. Backward, blocks in reverse: recompute a and h of the block
    from its start state, then the adjoint g_t = dL/dh_t = C_t gy_t + a_{t+1} g_{t+1} (the same
    recurrence run backwards), and every input gradient as a batched product with g or h:
        dL/d(dt_t A) = g_t a_t h_{t-1} =: z_t,   ddt = sum_n z A + x sum_n g B,   dx = dt sum_n g B,
        dA = sum_{b,t} z dt,   dB_t = sum_d g (dt x),   dC_t = sum_d gy h_t,   dh_0 = a_0 g_0.
    A reset at t multiplies a_t by 0, which is exactly the reference's clearing of the state.
    Layout (T, b, N, D): a block is one contiguous slab, the sums over n run across contiguous
    rows of D, and no (b, T, D, N) tensor is ever made (on a CPU those live in main memory, not cache).
    exp(x) is computed as exp2(x log2 e), which is 2-3x cheaper in PyTorch's CPU kernels.
    """

    @staticmethod
    def _block(dt, dtx, A2, Bm, keep, h0, abuf, hbuf):
        """Fill abuf[:l] with a_t and hbuf[:l + 1] with h_{t0-1}, h_{t0}, ..., h_{t0+l-1} (l, b, N, D)."""
        l = dt.shape[0]
        a, h = abuf[:l], hbuf[:l + 1]
        torch.mul(dt.unsqueeze(2), A2, out=a).exp2_()
        if keep is not None:
            a.mul_(keep[:, :, None, None])
        h[0] = h0                                                              # (h0 may be hbuf[-1]: copy it first)
        torch.mul(dtx.unsqueeze(2), Bm.unsqueeze(3), out=h[1:])
        for i in range(l):
            h[i + 1].addcmul_(a[i], h[i])
        return a, h

    @staticmethod
    def forward(ctx, x, dt, A, Bm, Cm, h0, keep, L):
        b, T, D = x.shape
        N = A.shape[1]
        dtT, xT = dt.transpose(0, 1).contiguous(), x.transpose(0, 1).contiguous()          # (T, b, D)
        BT, CT = Bm.transpose(0, 1).contiguous(), Cm.transpose(0, 1).contiguous()          # (T, b, N)
        dtx = dtT * xT
        A2 = A.t().contiguous() * LOG2E                                         # (N, D)
        kT = None if keep is None else keep.transpose(0, 1).to(x.dtype).contiguous()       # (T, b)
        starts = range(0, T, L)
        abuf = x.new_empty(L, b, N, D)
        hbuf = x.new_empty(L + 1, b, N, D)
        y = x.new_empty(T, b, D)
        hs = x.new_empty(len(starts), b, N, D)                                  # state at each block start
        h = h0.transpose(1, 2)
        for j, t0 in enumerate(starts):
            t1 = min(t0 + L, T)
            hs[j] = h
            _, hb = _MambaBlocked._block(dtT[t0:t1], dtx[t0:t1], A2, BT[t0:t1], None if kT is None else kT[t0:t1],
                                         h, abuf, hbuf)
            torch.bmm(CT[t0:t1].reshape(-1, 1, N), hb[1:].flatten(0, 1), out=y[t0:t1].view(-1, 1, D))
            h = hb[-1]
        h = h.transpose(1, 2).contiguous()                                      # (b, N, D) -> (b, D, N)
        ctx.save_for_backward(xT, dtT, dtx, A2, BT, CT, kT, hs)
        ctx.L = L
        return y.transpose(0, 1), h

    @staticmethod
    def backward(ctx, gy, gh):
        xT, dtT, dtx, A2, BT, CT, kT, hs = ctx.saved_tensors
        L = ctx.L
        T, b, D = xT.shape
        N = A2.shape[0]
        gyT = gy.transpose(0, 1).contiguous()                                   # (T, b, D)
        abuf = xT.new_empty(L, b, N, D)
        hbuf = xT.new_empty(L + 1, b, N, D)
        gbuf = xT.new_empty(L, b, N, D)
        zbuf = xT.new_empty(L, b, N, D)
        gB = xT.new_empty(T, b, D)
        zA = xT.new_empty(T, b, D)
        dB, dC = xT.new_empty(T, b, N), xT.new_empty(T, b, N)
        dA = xT.new_zeros(N, D)
        gcar = gh.transpose(1, 2)                                               # a_{t+1} g_{t+1} past the block
        for j, t0 in reversed(list(enumerate(range(0, T, L)))):
            t1 = min(t0 + L, T)
            l = t1 - t0
            a, h = _MambaBlocked._block(dtT[t0:t1], dtx[t0:t1], A2, BT[t0:t1], None if kT is None else kT[t0:t1],
                                        hs[j], abuf, hbuf)
            g = torch.mul(gyT[t0:t1].unsqueeze(2), CT[t0:t1].unsqueeze(3), out=gbuf[:l])
            g[l - 1] += gcar
            for i in range(l - 2, -1, -1):
                g[i].addcmul_(a[i + 1], g[i + 1])
            gcar = a[0] * g[0]
            z = torch.mul(g, a, out=zbuf[:l]).mul_(h[:l])                       # dL/d(dt_t A)
            torch.bmm(BT[t0:t1].reshape(-1, 1, N), g.flatten(0, 1), out=gB[t0:t1].view(-1, 1, D))
            torch.sum(g.mul_(dtx[t0:t1].unsqueeze(2)), -1, out=dB[t0:t1])
            torch.sum(h[1:].mul_(gyT[t0:t1].unsqueeze(2)), -1, out=dC[t0:t1])
            torch.sum(z * A2, 2, out=zA[t0:t1])
            dA += z.mul_(dtT[t0:t1].unsqueeze(2)).sum((0, 1))
        dx = gB * dtT
        ddt = torch.addcmul(zA.mul_(1 / LOG2E), gB, xT)
        dA = dA.t()
        return (dx.transpose(0, 1), ddt.transpose(0, 1), dA, dB.transpose(0, 1), dC.transpose(0, 1),
                gcar.transpose(1, 2), None, None)


LOG2E = 1.4426950408889634


def mamba_chunked(x, dt, A, Bm, Cm, state=None, reset=None, chunk=8):
    """Same result as mamba_sequential. On a CPU in float32 through the C++ loop of
    seqlab.hybrid.mamba_cpu when it builds (3-4x faster than _MambaBlocked at D=512, measured in
    results/bench/scan.json), else through _MambaBlocked: blocks of `chunk` tokens (any chunk is
    exact; it trades Python steps against cache: 8 is the fastest at d=256, N=16, batch 8).
    Elsewhere (GPU) through mamba_chunked_autograd, whose L + T/L steps mean far fewer kernel
    launches than the blocked form's few per token (an expectation: not measured on a GPU)."""
    if x.device.type != "cpu":
        return mamba_chunked_autograd(x, dt, A, Bm, Cm, state, reset, chunk)
    b, T, D = x.shape
    if state is None:
        state = x.new_zeros(b, D, A.shape[1])
    keep = None if reset is None else ~reset
    if x.dtype == torch.float32 and mamba_cpu.available():
        return mamba_cpu.scan(x, dt, A, Bm, Cm, state, keep)
    return _MambaBlocked.apply(x, dt, A, Bm, Cm, state, keep, chunk)
