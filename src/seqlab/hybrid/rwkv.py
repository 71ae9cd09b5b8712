"""RWKV-6 ("Finch") blocks: time-mix with data-dependent token shift and decay, and channel-mix.

Peng et al. 2024, "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence", Sec. 4.
Glossary: B batch, T time, C = n_embd, H heads, K = C // H head size, l layer index of n_layer.
    xx        x_{t-1} - x_t (token shift)
    ddlerp    data-dependent lerp: z_* = x + xx * (mu_* + lora_*(x + xx * mu_x)), * in r, k, v, w, g,
              the five lora_* read one shared low-rank projection: tanh((x + xx mu_x) W1) W2[*]
    w_t       per-channel retention exp(-exp(d_t)), d_t = decay + tanh(z_w V1) V2 (low rank)
    u         bonus of the current token
    S         matrix state per head (K x K); the recurrence itself lives in seqlab.hybrid.scan
State of a block: (x_{t-1} of time-mix, S, x_{t-1} of channel-mix); a reset at t (a new
document) zeroes x_{t-1} and S before token t.

Initialisation follows the published RWKV-6 code (RWKV-LM, RWKV_Tmix_x060 / RWKV_CMix_x060),
with a = l / (n_layer - 1) (0 -> 1 with depth), b = 1 - l / n_layer (1 -> ~0), c = channel / C:
    mu_x, mu_w, mu_k = 1 - c^b;  mu_v = 1 - (c^b + 0.3 a);  mu_r, mu_g = 1 - c^(b/2)
        (low channels read mostly the previous token, high channels the current one; deeper
        layers shift less)
    decay_n = -6 + 5 (n / (C-1))^(0.7 + 1.3 a): retention exp(-exp(decay)) from 0.9975 (channel 0,
        half-life ~280 tokens) down to 0.69 (last channel, ~2 tokens); heads hold contiguous
        channels, so head 0 is the long-memory head
    u_n = a (1 - n / (C-1)) + ((n + 1) % 3 - 1) * 0.1
    W1, V1 = 0 (first factors), W2, V2 ~ U(-0.01, 0.01): the low-rank parts start exactly at zero
        and still learn: dL/dW1 = z^T (g W2^T) is non-zero from the first step (W2 != 0), W2 moves
        from the second; channel-mix mu_k, mu_r = 1 - c^b.
Checkpoints of the earlier static-mix block (mu only, decay rank 32) load exactly: their missing
mix weights are zero and the decay low rank is zero-padded (see TimeMix._load_from_state_dict).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlab.hybrid import kernels, scan

MIX_RANK = 32      # RWKV-LM's TIME_MIX_EXTRA_DIM (C < 4096)
DECAY_RANK = 64    # RWKV-LM's TIME_DECAY_EXTRA_DIM (C < 4096)


def token_shift(x, prev, reset):
    """x_{t-1} for every t: the previous token, `prev` (B, C) before the first, zero after a reset."""
    shifted = torch.cat([prev.unsqueeze(1), x[:, :-1]], 1)
    if reset is not None:
        shifted = shifted * (~reset).unsqueeze(-1).to(x.dtype)
    return shifted


def layer_ratios(layer_id, n_layer):
    """(a, b) of the published init: a = l / (n_layer - 1) in [0, 1], b = 1 - l / n_layer in (0, 1]."""
    return layer_id / max(n_layer - 1, 1), 1 - layer_id / n_layer


def init_decay(n, layer_id=0, n_layer=1):
    """Per-channel decay d (retention exp(-exp(d))): -6 + 5 (i / (n-1))^(0.7 + 1.3 a), the published ramp."""
    a, _ = layer_ratios(layer_id, n_layer)
    return -6 + 5 * (torch.arange(n, dtype=torch.float32) / max(n - 1, 1)) ** (0.7 + 1.3 * a)


class TimeMix(nn.Module):
    def __init__(self, n_embd, n_head, layer_id=0, n_layer=1, chunk=16, scan_mode="auto", kernels="torch"):
        super().__init__()
        C, H = n_embd, n_head
        if C % H:
            raise ValueError(f"n_embd {C} is not divisible by n_head {H}")
        self.H, self.K, self.chunk, self.scan_mode, self.kernels = H, C // H, chunk, scan_mode, kernels
        a, b = layer_ratios(layer_id, n_layer)
        c = torch.arange(C, dtype=torch.float32) / C
        self.mu_x = nn.Parameter(1 - c ** b)
        self.mu = nn.Parameter(torch.stack([1 - c ** (0.5 * b), 1 - c ** b, 1 - (c ** b + 0.3 * a),
                                            1 - c ** b, 1 - c ** (0.5 * b)]))          # r, k, v, w, g
        self.mix_w1 = nn.Parameter(torch.zeros(C, 5 * MIX_RANK))
        self.mix_w2 = nn.Parameter(torch.empty(5, MIX_RANK, C).uniform_(-0.01, 0.01))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.gate = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.decay = nn.Parameter(init_decay(C, layer_id, n_layer))
        self.decay_w1 = nn.Parameter(torch.zeros(C, DECAY_RANK))
        self.decay_w2 = nn.Parameter(torch.empty(DECAY_RANK, C).uniform_(-0.01, 0.01))
        n = torch.arange(C, dtype=torch.float32)
        self.bonus = nn.Parameter((a * (1 - n / max(C - 1, 1)) + ((n + 1) % 3 - 1) * 0.1).view(H, self.K))
        self.ln_x = nn.GroupNorm(H, C, eps=64e-5)             # per-head norm of the readout

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the earlier static-mix block had no mix_w1/mix_w2/mu_x and a rank-32 decay: zeros make it exact
        if prefix + "mu" in state_dict and prefix + "mix_w1" not in state_dict:
            for name in ("mu_x", "mix_w1", "mix_w2"):
                state_dict[prefix + name] = torch.zeros_like(getattr(self, name))
            w1, w2 = state_dict[prefix + "decay_w1"], state_dict[prefix + "decay_w2"]
            pad = DECAY_RANK - w1.shape[1]
            if pad > 0:
                state_dict[prefix + "decay_w1"] = torch.cat([w1, w1.new_zeros(w1.shape[0], pad)], 1)
                state_dict[prefix + "decay_w2"] = torch.cat([w2, w2.new_zeros(pad, w2.shape[1])], 0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def mixes(self, x, xx):
        """ddlerp: the five token-shift mixes z_r, z_k, z_v, z_w, z_g (each (B, T, C))."""
        B, T, C = x.shape
        m = torch.tanh((x + xx * self.mu_x) @ self.mix_w1).view(B * T, 5, MIX_RANK).transpose(0, 1)
        m = torch.bmm(m, self.mix_w2).view(5, B, T, C) + self.mu.view(5, 1, 1, C)   # (5, B, T, C)
        return (x + xx * m).unbind(0)

    def log_retention(self, xw):
        """log w_t = -exp(d_t) per channel (B, T, C); retention w near 1 = long memory."""
        return -torch.exp(self.decay + torch.tanh(xw @ self.decay_w1) @ self.decay_w2)

    def forward(self, x, state, reset=None):
        """x (B, T, C); state (x_prev (B, C), S (B, H, K, K)) -> (B, T, C), new state."""
        B, T, C = x.shape
        prev, S = state
        xx = token_shift(x, prev, reset) - x
        xr, xk, xv, xw, xg = self.mixes(x, xx)
        r, k, v = (lin(z).view(B, T, self.H, self.K) for lin, z in
                   ((self.receptance, xr), (self.key, xk), (self.value, xv)))
        logw = self.log_retention(xw).view(B, T, self.H, self.K)
        self.last_logw = logw.detach()                                   # for the decay monitor
        with torch.autocast(x.device.type, enabled=False):   # the scans run in float32 (see seqlab.hybrid.scan)
            r, k, v, logw = r.float(), k.float(), v.float(), logw.float()
            if T == 1:
                y, S = scan.rwkv_step(r[:, 0], k[:, 0], v[:, 0], logw[:, 0], self.bonus.float(), S,
                                      None if reset is None else reset[:, 0])
                y = y.unsqueeze(1)
            elif reset is None and kernels.resolve(self.kernels, x.device)["rwkv"] == "fla":
                y, S = kernels.rwkv_fla(r, k, v, logw, self.bonus.float(), S)
            elif self.scan_mode == "sequential":
                y, S = scan.rwkv_sequential(r, k, v, logw, self.bonus.float(), S, reset)
            else:
                y, S = scan.rwkv_chunked(r, k, v, logw, self.bonus.float(), S, reset, self.chunk)
        y = y.to(x.dtype)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        return self.output(y * F.silu(self.gate(xg))), (x[:, -1], S)


class ChannelMix(nn.Module):
    def __init__(self, n_embd, hidden, layer_id=0, n_layer=1):
        super().__init__()
        _, b = layer_ratios(layer_id, n_layer)
        c = torch.arange(n_embd, dtype=torch.float32) / n_embd
        self.mu = nn.Parameter(torch.stack([1 - c ** b, 1 - c ** b]))  # k, r
        self.key = nn.Linear(n_embd, hidden, bias=False)
        self.value = nn.Linear(hidden, n_embd, bias=False)
        self.receptance = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x, prev, reset=None):
        xx = token_shift(x, prev, reset) - x
        xk, xr = x + xx * self.mu[0], x + xx * self.mu[1]
        k = torch.relu(self.key(xk)).square()                 # squared ReLU
        return torch.sigmoid(self.receptance(xr)) * self.value(k), x[:, -1]


class RWKVBlock(nn.Module):
    """Pre-LN RWKV layer: x + g1 * TimeMix(ln1 x), then + g2 * ChannelMix(ln2 x) (g = layer scale).

    `off` names the parts whose update is dropped (ablation, seqlab.hybrid.ablation): "time-mix"
    or "layer"; the state still advances, only the residual update is zero.
    """
    kind = "R"
    PARTS = ("time-mix", "layer")

    def __init__(self, n_embd, n_head, gamma_init=0.01, chunk=16, scan_mode="auto", kernels="torch",
                 layer_id=0, n_layer=1):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.att = TimeMix(n_embd, n_head, layer_id, n_layer, chunk=chunk, scan_mode=scan_mode, kernels=kernels)
        self.ffn = ChannelMix(n_embd, int(3.5 * n_embd), layer_id, n_layer)
        self.gamma = nn.Parameter(torch.full((2, n_embd), float(gamma_init)))
        self.off = set()

    def init_state(self, B, device, dtype=torch.float32):
        C, H, K = self.ln1.normalized_shape[0], self.att.H, self.att.K
        return (torch.zeros(B, C, device=device, dtype=dtype), torch.zeros(B, H, K, K, device=device, dtype=dtype),
                torch.zeros(B, C, device=device, dtype=dtype))

    def delta(self, x, state, reset=None):
        """The block's residual update and new state (so a parallel R+M layer can blend updates)."""
        a, (p1, S) = self.att(self.ln1(x), state[:2], reset)
        h = x if self.off else x + self.gamma[0] * a
        f, p2 = self.ffn(self.ln2(h), state[2], reset)
        d = h - x + self.gamma[1] * f
        return (torch.zeros_like(d) if "layer" in self.off else d), (p1, S, p2)

    def forward(self, x, state, reset=None):
        d, state = self.delta(x, state, reset)
        return x + d, state
