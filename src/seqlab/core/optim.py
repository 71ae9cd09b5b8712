"""AdamW with parameter groups and the LR schedules (constant; linear warmup + cosine)."""
import math

import torch
import torch.nn as nn

NO_DECAY_MODULES = (nn.LayerNorm, nn.Embedding, nn.GroupNorm, nn.RMSNorm)   # nn.RMSNorm: torch >= 2.4


def param_groups(model, weight_decay, lr_mults=None):
    """Groups by (decays?, LR multiplier). No weight decay on biases, norms, embeddings, or
    any parameter the model lists in `no_decay_names()`. lr_mults maps name prefixes to LR
    multipliers (e.g. {"memory.": 0.3})."""
    lr_mults = lr_mults or {}
    extra_no_decay = set(model.no_decay_names()) if hasattr(model, "no_decay_names") else set()
    no_decay = set()
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(module, NO_DECAY_MODULES) or pname.endswith("bias") or full in extra_no_decay:
                no_decay.add(full)
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = next((m for prefix, m in lr_mults.items() if name.startswith(prefix)), 1.0)
        decay = name not in no_decay and p.dim() >= 2
        key = (decay, mult)
        g = groups.setdefault(key, {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0, "lr_mult": mult})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def make_adamw(model, lr, weight_decay, betas, lr_mults=None, device_type="cpu"):
    groups = param_groups(model, weight_decay, lr_mults)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    fused = device_type == "cuda"
    return torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups],
                             lr=lr, betas=betas, fused=fused)


def lr_factor(step, schedule, max_steps, warmup=0, min_ratio=0.1):
    """LR as a fraction of the peak at `step` (0-based).

    constant: 1 after the (optional) linear warmup. cosine: linear warmup over `warmup` steps,
    then half a cosine from 1 down to min_ratio at max_steps.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
