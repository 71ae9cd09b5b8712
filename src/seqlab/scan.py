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
               clamped at LOG_W_MIN in every form
    u        : u, the bonus of the current token              (H, K)
    S        : S_t, the matrix state of a head                (b, H, K, K), rows = key channels
    x, dt    : x_t, Delta_t > 0                               (b, T, D)
    A        : A < 0 (A = -exp(A_log))                        (D, N)
    Bm, Cm   : B_t, C_t (input-dependent)                     (b, T, N)
    h        : h_t                                            (b, D, N)
    reset    : (b, T) bool; True at t clears the state before token t (a document starts at t)

The three forms:
    *_sequential  the definition: a loop over time, vectorised over everything else.
    *_chunked     the training path, chunks of L tokens with the state carried across them.
                  Decays enter as cumulative log-retentions inside a chunk, so every exponent is
                  bounded (RWKV: |exponent| <= 45 given the retention floor below; Mamba: <= 0).
    *_step        one token with an explicit state (generation, state handoff).
Every function returns (y, final state), so a long sequence may be fed in pieces.
The module knows nothing about the models that call it.
"""
import torch

# Retention floor of RWKV: log w >= LOG_W_MIN (w >= 0.0067 per token, i.e. no memory at all
# beyond a few tokens), part of the definition in every form. It bounds the exponents of the
# chunked form (see rwkv_chunked) so float32 is safe for chunks up to MAX_CHUNK tokens.
LOG_W_MIN = -5.0
MAX_CHUNK = 16


# ---- RWKV ------------------------------------------------------------------------------------

def _zero_if(state, reset_t):
    """state with the rows of batch elements that reset at this token set to zero."""
    if reset_t is None:
        return state
    return state * (~reset_t).to(state.dtype).view(-1, *([1] * (state.dim() - 1)))


def rwkv_step(r, k, v, logw, u, state, reset=None):
    """One token: r, k, v, logw (b, H, K); state (b, H, K, K); reset (b,) or None -> y (b, H, K), state."""
    state = _zero_if(state, reset)
    logw = logw.clamp(min=LOG_W_MIN)
    kv = k.unsqueeze(-1) * v.unsqueeze(-2)                                   # (b, H, K, K)
    y = torch.einsum("bhk,bhkv->bhv", r, state + u.unsqueeze(-1) * kv)
    return y, torch.exp(logw).unsqueeze(-1) * state + kv


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


def rwkv_chunked(r, k, v, logw, u, state=None, reset=None, chunk=16):
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
    """
    b, T, H, K = r.shape
    L = chunk
    if L > MAX_CHUNK:
        raise ValueError(f"chunk {L} > {MAX_CHUNK}: the exponents could overflow float32")
    if state is None:
        state = r.new_zeros(b, H, K, K)
    logw = logw.clamp(min=LOG_W_MIN)
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


def mamba_chunked(x, dt, A, Bm, Cm, state=None, reset=None, chunk=16):
    """Same result as mamba_sequential, computed as chunk-local scans run side by side.

    Mamba's retention exp(dt_t A) differs per channel and state index, so no form avoids one
    value per (token, channel, state index); what a loop over time wastes is the T sequential
    steps. Here the T/L chunks are scanned together from a zero state (L steps, each over all
    chunks at once), then the chunk-start states h_0 are carried over the chunks (T/L steps):
        h_t = [local scan of the chunk up to t] + exp(Lam_t) h_0,   Lam_t = sum_{j<=t} dt_j A
    with Lam_t <= 0 accumulated in log space from the chunk start, so nothing overflows.
    y_t = C_t . h_t = C_t . local_t + (C_t exp(Lam_t)) . h_0.
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
