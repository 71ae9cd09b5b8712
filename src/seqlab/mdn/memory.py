"""SpacingMDN with a bank of memory slots: PREFIX (E1/E2) and POSTFIX (E3-E5).

PREFIX puts M learned slot tokens before the data under plain causal attention: a slot at
position m < M sees only slots <= m, never the data, so its state is the same for every
input (it can only act as a learned bias). Kept for comparison with the original E1/E2.

POSTFIX puts the M slots after the T data tokens with the mask
    data i -> data j <= i          (causal, as in E0; data never attends to slots)
    slot m -> all data, itself     (each slot reads the whole window, nothing beyond it; slots do
                                    not read each other, so removing one changes only the readout)
then a readout pools the slot states with learnable weights, r = sum_m softmax(a)_m h_m,
and the mixture head predicts the next spacing s_T from r. One prediction per window.

Slot input embedding e_m = content_m + id[pi(m)]:
    content_mode  normal: learned content_m | zeroed: content_m = 0
    slot ID       fixed: pi = identity | off: no ID term | permute_per_batch (ID-Detox):
                  a fresh random pi for each training batch, so a slot cannot rely on its ID.
Evaluation uses eval_slot_id_mode (fixed identity by default): deterministic.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlab.mdn.model import MDNConfig, MixtureHead, SpacingTrunk, mixture_loss
from seqlab.core.transformer import init_weights

SLOT_ID_MODES = ("fixed", "off", "permute_per_batch")
EVAL_SLOT_ID_MODES = ("fixed", "off")
CONTENT_MODES = ("normal", "zeroed")
AUX_MODES = ("mean", "diagonal")
AUX_STATS = ("mean_minus_1", "log_std", "max_abs_diff", "q01", "mean_abs_diff2",
             "half_mean_gap", "mean_sq_diff2", "var_of_subwindow_vars")


def window_stats(x, n_sub=8):
    """The 8 Q3-proxy statistics of each input window x (B, T), shape (B, 8), in AUX_STATS order:
    mean - 1; log std; max |s_{i+1} - s_i|; 1% quantile; mean |second difference|;
    mean of the second half minus mean of the first half; mean squared second difference;
    variance across n_sub equal sub-windows of their variances. Computed from the inputs only
    (never the target)."""
    x = x.float()
    d1 = x.diff(dim=1)
    d2 = d1.diff(dim=1)
    half = x.size(1) // 2
    sub = x[:, : (x.size(1) // n_sub) * n_sub].reshape(x.size(0), n_sub, -1)
    return torch.stack([
        x.mean(1) - 1, torch.log(x.std(1) + 1e-6), d1.abs().amax(1), torch.quantile(x, 0.01, dim=1),
        d2.abs().mean(1), x[:, half:].mean(1) - x[:, :half].mean(1), (d2 * d2).mean(1), sub.var(2).var(1),
    ], dim=1)


@dataclass
class PrefixConfig(MDNConfig):
    n_memory_slots: int = 8


@dataclass
class PostfixConfig(MDNConfig):
    n_memory_slots: int = 8
    slot_id_mode: str = "fixed"         # training: fixed | off | permute_per_batch (ID-Detox)
    eval_slot_id_mode: str = "fixed"    # evaluation: fixed (identity) | off
    content_mode: str = "normal"        # normal | zeroed
    use_aux_loss: bool = False
    aux_mode: str = "mean"              # mean: pooled slots predict all 8 stats; diagonal: slot j%M predicts stat j
    aux_weight: float = 0.1
    aux_ramp_steps: int = 1000          # aux weight grows linearly from 0 over this many steps
    perm_warmup_steps: int = 0          # permute_per_batch: fixed slot IDs for the first N steps
    use_ortho_loss: bool = False
    ortho_weight: float = 0.01


class PrefixMDN(nn.Module):
    """E1/E2: M slot tokens before the data, plain causal attention (slots are blind to the data)."""
    family = "mdn_prefix"

    def __init__(self, config: PrefixConfig):
        super().__init__()
        self.config = c = config
        self.trunk = SpacingTrunk(c)
        self.memory = nn.ParameterDict({"slots": nn.Parameter(torch.zeros(c.n_memory_slots, c.n_embd))})
        self.head = MixtureHead(c)
        init_weights(self, c.n_layer)

    def no_decay_names(self):
        return ["memory.slots"]

    def slot_inputs(self, id_perm=None):
        """(M, C) slot input embeddings (PREFIX has no slot IDs)."""
        return self.memory["slots"]

    @staticmethod
    def scored_positions(T):
        return torch.arange(T)

    def attn_mask(self, T, drop_slots=()):
        """(M+T, M+T) causal mask; dropped slots are removed as keys (nobody attends to them)."""
        M = self.config.n_memory_slots
        mask = torch.ones(M + T, M + T, dtype=torch.bool).tril()
        for m in drop_slots:
            mask[:, m] = False
            mask[m, m] = True  # its own row must attend somewhere; its state is not read by anyone
        return mask

    def forward(self, x, drop_slots=(), slot_inputs=None, return_slots=False):
        """x (B, T) -> Mixture (B, T, K); entry t predicts s_{t+1}. slot_inputs: (M, C) to use
        instead of the learned slots (diagnostics take gradients through it)."""
        B, T = x.shape
        M = self.config.n_memory_slots
        e = self.memory["slots"] if slot_inputs is None else slot_inputs
        h = torch.cat([e.expand(B, M, -1), self.trunk.embed(x)], dim=1)  # (B, M+T, C)
        mask = self.attn_mask(T, drop_slots).to(x.device) if drop_slots else None
        h = self.trunk.run(h, mask)
        out = self.head(h[:, M:])
        return (out, h[:, :M]) if return_slots else out

    def loss(self, x, y, step=0, forward=None):
        forward = self if forward is None else forward   # not `forward or self`: bool() of a compiled module raises
        return mixture_loss(forward(x), y, self.config.entropy_reg)


class PostfixMDN(nn.Module):
    """E3-E5: M slots after the data read the whole window; a weighted readout of the slot
    states predicts the next spacing."""
    family = "mdn_postfix"

    def __init__(self, config: PostfixConfig):
        super().__init__()
        self.config = c = config
        for name, value, allowed in (("slot_id_mode", c.slot_id_mode, SLOT_ID_MODES),
                                     ("eval_slot_id_mode", c.eval_slot_id_mode, EVAL_SLOT_ID_MODES),
                                     ("content_mode", c.content_mode, CONTENT_MODES), ("aux_mode", c.aux_mode, AUX_MODES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        M, C = c.n_memory_slots, c.n_embd
        self.trunk = SpacingTrunk(c)
        self.memory = nn.ParameterDict({
            "content": nn.Parameter(torch.zeros(M, C)),
            "slot_id": nn.Parameter(torch.zeros(M, C)),
            "readout": nn.Parameter(torch.zeros(M)),       # readout logits a_m: uniform at init
            "aux_w": nn.Parameter(torch.zeros(len(AUX_STATS), C)),
            "aux_b": nn.Parameter(torch.zeros(len(AUX_STATS))),
        })
        # z-scoring of the aux targets, set from train windows by the task (stored with the model)
        self.register_buffer("aux_mean", torch.zeros(len(AUX_STATS)))
        self.register_buffer("aux_std", torch.ones(len(AUX_STATS)))
        # the mask for a full window, built once and moved with the model (not rebuilt on the host and
        # copied at every forward); not saved in checkpoints: it is a function of the config
        self.register_buffer("full_mask", self._build_mask(c.context), persistent=False)
        self.head = MixtureHead(c)
        init_weights(self, c.n_layer)

    def no_decay_names(self):
        return ["memory.content", "memory.slot_id", "memory.aux_w"]

    @staticmethod
    def scored_positions(T):
        """One prediction per window: p(s_T | s_0..s_{T-1}), i.e. position T-1."""
        return torch.tensor([T - 1])

    def _build_mask(self, T):
        M = self.config.n_memory_slots
        mask = torch.zeros(T + M, T + M, dtype=torch.bool)
        mask[:T, :T] = torch.ones(T, T, dtype=torch.bool).tril()
        mask[T:, :T] = True
        mask[T:, T:] = torch.eye(M, dtype=torch.bool)
        return mask

    def attn_mask(self, T, drop_slots=()):
        """(T+M, T+M) bool on the model's device, True = may attend: data causal and blind to slots;
        each slot sees all data and itself. drop_slots is accepted for symmetry with PREFIX: no token
        reads another slot, so removal only matters in the readout."""
        full, C = self.full_mask, self.config.context
        if T == C:
            return full
        # a shorter window: its data rows/columns are the first T of the full mask's, its slots the last M
        keep = torch.cat([torch.arange(T, device=full.device), torch.arange(C, full.size(0), device=full.device)])
        return full[keep][:, keep]

    def slot_inputs(self, id_perm=None):
        """(M, C) slot input embeddings; id_perm: slot m gets ID row id_perm[m] (None: the mode's default)."""
        c, mem = self.config, self.memory
        e = mem["content"] if c.content_mode == "normal" else torch.zeros_like(mem["content"])
        mode = c.slot_id_mode if self.training else c.eval_slot_id_mode
        if id_perm is None and mode == "permute_per_batch":
            id_perm = torch.randperm(c.n_memory_slots, device=e.device)
        if mode != "off":
            e = e + (mem["slot_id"] if id_perm is None else mem["slot_id"][id_perm])
        return e

    def readout_weights(self, drop_slots=()):
        """softmax of the readout logits over the kept slots, (M,)."""
        a = self.memory["readout"]
        if drop_slots:
            keep = torch.ones_like(a, dtype=torch.bool)
            keep[list(drop_slots)] = False
            a = a.masked_fill(~keep, float("-inf"))
        return torch.softmax(a, dim=0)

    def forward(self, x, drop_slots=(), id_perm=None, slot_inputs=None, return_slots=False, return_aux=False):
        """x (B, T) -> Mixture (B, 1, K) for s_T. drop_slots: slots removed from attention and
        readout; id_perm: an explicit slot-ID table permutation; slot_inputs: (M, C) to use instead
        of slot_inputs() (diagnostics take gradients through it). return_slots: (out, slot states
        (B, M, C)); return_aux: (out, slot states, aux predictions (B, 8)). The aux head runs
        here, not in loss(): under DistributedDataParallel every parameter must be used inside forward
        (a parameter used after it is marked ready twice and the first backward fails)."""
        B, T = x.shape
        M = self.config.n_memory_slots
        if len(set(drop_slots)) >= M:
            raise ValueError("cannot drop every slot: the readout would be empty")
        e = self.slot_inputs(id_perm) if slot_inputs is None else slot_inputs
        h = torch.cat([self.trunk.embed(x), e.expand(B, M, -1)], dim=1)  # (B, T+M, C)
        h = self.trunk.run(h, self.attn_mask(T, drop_slots))
        slots = h[:, T:]                                                   # (B, M, C)
        r = torch.einsum("m,bmc->bc", self.readout_weights(drop_slots).to(slots.dtype), slots)
        out = self.head(r.unsqueeze(1))                                    # (B, 1, K)
        if return_aux:
            return out, slots, self.aux_predictions(slots.float())
        return (out, slots) if return_slots else out

    def aux_predictions(self, slots):
        """(B, 8) predicted z-scored window statistics from slot states (B, M, C)."""
        mem = self.memory
        if self.config.aux_mode == "mean":
            return slots.mean(1) @ mem["aux_w"].t() + mem["aux_b"]
        idx = torch.arange(len(AUX_STATS), device=slots.device) % self.config.n_memory_slots
        return (slots[:, idx] * mem["aux_w"]).sum(-1) + mem["aux_b"]

    def loss(self, x, y, step=0, forward=None):
        """x (B, T) inputs, y (B, T) next spacings; only y[:, -1] = s_T is predicted."""
        c = self.config
        forward = self if forward is None else forward   # not `forward or self`: bool() of a compiled module raises
        # --perm-warmup-steps: the identity permutation (fixed IDs) until the permutations start. The
        # permutation is drawn here, outside the forward that torch.compile may have wrapped: inductor
        # (torch 2.13) fails to compile a training graph that contains randperm
        perm = None
        if c.slot_id_mode == "permute_per_batch" and self.training:
            draw = torch.arange if step < c.perm_warmup_steps else torch.randperm
            perm = draw(c.n_memory_slots, device=x.device)
        if c.use_aux_loss:
            m, slots, aux_pred = forward(x, id_perm=perm, return_slots=True, return_aux=True)
        else:
            m, slots = forward(x, id_perm=perm, return_slots=True)
        loss, parts = mixture_loss(m, y[:, -1:], c.entropy_reg)
        if c.use_aux_loss:
            target = (window_stats(x) - self.aux_mean) / self.aux_std
            aux = F.mse_loss(aux_pred, target)
            ramp = min(1.0, step / c.aux_ramp_steps) if c.aux_ramp_steps else 1.0
            loss = loss + c.aux_weight * ramp * aux
            parts["aux"] = aux.detach()
        if c.use_ortho_loss:
            u = F.normalize(slots.float(), dim=-1)
            gram = u @ u.transpose(1, 2)                                   # (B, M, M) cosines
            off = ~torch.eye(c.n_memory_slots, dtype=torch.bool, device=x.device)
            ortho = gram[:, off].pow(2).mean()
            loss = loss + c.ortho_weight * ortho
            parts["ortho"] = ortho.detach()
        return loss, parts
