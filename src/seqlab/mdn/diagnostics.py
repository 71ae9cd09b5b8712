"""A-K diagnostics of a memory bank (POSTFIX, and the applicable subset for PREFIX).

Every number is computed in eval mode with fixed slot IDs (the checkpoint's eval mode) and
seeded randomness, so two runs with the same --seed agree exactly. "NLL" is nats per spacing
over the model's scored positions of the val windows (POSTFIX: the last position).

  A  ablation delta: NLL with slot m removed from attention and readout, minus the full model's
     NLL (nats); plus the multi-slot curve removing the k most important slots. target max > 0.02
  B  mean |cosine| between the states of two different slots, over windows and slot pairs (the
     absolute value taken per window, so opposite signs in different windows cannot cancel;
     permute-trained: content-only slot inputs, since their IDs are shuffled in training). target < 0.5
  C  mean |Pearson correlation| between slots of d NLL / d slot input, over fixed batches. target < 0.7
  D  readout weights softmax(a); uniformity = H(w) / log M (1 = uniform). target >= 0.9
  E  effect entropy: entropy (nats) of p_m = |A_m| / sum |A|. target > 1.5 (log 8 = 2.08 at most)
  F  mean L2 norm of each slot state; reported as max/min ratio (information only)
  G  rollout drift: log-log slope of the RMSE of the position of the h-th next zero vs h
     (h = 2..100) in sampled rollouts, divided by the same slope of marginal i.i.d. draws from the
     same contexts in the same run (about 0.5, a random walk): 1 = drifts like an i.i.d. forecaster,
     ~0 = as rigid as the zeros. target < 0.5
  H  cross-block NLL by height: val windows in height order cut into blocks; per block the NLL
     shift (block mean minus the other windows' mean) with a 95% bootstrap interval over windows;
     WARN only when some interval excludes 0 (no shift)
  I  attention centre of mass: per slot, sum_j a_j j over data positions in the last layer
     (heads and windows averaged); target std across slots > 10 positions
  J  ID reliance: NLL under fixed permutations of the slot-ID table minus NLL with the identity,
     as a share of the model's NLL advantage over the marginal i.i.d. baseline (differences of
     NLLs only, never ratios of signed NLLs). target < 0.10
  K  gradient effective rank: exp(entropy of the energy shares sigma_i^2 / sum sigma^2 of the
     singular values) of the per-slot gradient matrix of C, divided by M (1.0 = M equal directions;
     a matrix with sigma_1 = 9 sigma_2 scores about 1/M + a little). target > 0.5
"""
import math

import numpy as np
import torch

from seqlab.mdn import baselines, evaluate as mdn_eval, mixture
from seqlab.mdn.memory import PostfixMDN

TARGETS = {
    "A": (">", 0.02, "max single-slot ablation delta (nats)"),
    "B": ("<", 0.5, "mean |cos| between slot states"),
    "C": ("<", 0.7, "mean |corr| between per-slot gradients"),
    "D": (">=", 0.9, "readout uniformity H(w)/log M"),
    "E": (">", 1.5, "effect entropy (nats)"),
    "F": (None, None, "slot norm max/min ratio"),
    "G": ("<", 0.5, "sampled-rollout drift slope / marginal i.i.d. slope"),
    "H": ("==", 0, "blocks whose 95% interval of NLL shift excludes 0"),
    "I": (">", 10.0, "std across slots of attention centre of mass (positions)"),
    "J": ("<", 0.10, "share of the NLL advantage over marginal i.i.d. lost under ID permutation"),
    "K": (">", 0.5, "gradient effective rank / M"),
}


def _status(key, value):
    op, target, _ = TARGETS[key]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "N/A"
    if op is None:
        return "INFO"
    ok = {">": value > target, "<": value < target, ">=": value >= target, "==": value == target}[op]
    return "PASS" if ok else "WARN"


def per_window_nll(model, wins, batch_size=64, **fw):
    """(N,) mean NLL of each window over the model's scored positions."""
    m, y, _ = mdn_eval.predict(model, wins, batch_size, **fw)
    return mixture.nll(m, y).mean(1).numpy()


def slot_gradients(model, wins, n_batches=8, batch_size=32):
    """(M, n_batches * C): d mean NLL / d slot input for each of n_batches consecutive val batches."""
    T = wins.size(1) - 1
    base = model.slot_inputs().detach()
    grads = []
    for b in range(n_batches):
        x = wins[b * batch_size:(b + 1) * batch_size]
        if len(x) == 0:
            break
        e = base.clone().requires_grad_(True)
        m = model(x[:, :T], slot_inputs=e)
        pos = model.scored_positions(T)
        nll = mixture.nll(m, x[:, 1:][:, pos].to(m.mu.dtype)).mean()
        grads.append(torch.autograd.grad(nll, e)[0].detach())
    return torch.cat(grads, dim=1).double()


def attention_com(model, wins, batch_size=32):
    """(M, T) last-layer attention of each POSTFIX slot to data positions 0..T-1, summed over heads and
    windows (com_spread turns it into centres of mass)."""
    T = wins.size(1) - 1
    M = model.config.n_memory_slots
    mask = model.attn_mask(T)
    total = torch.zeros(M, T, dtype=torch.float64)  # summed attention of each slot to each data position
    for i in range(0, len(wins), batch_size):
        x = wins[i:i + batch_size, :T]
        h = torch.cat([model.trunk.embed(x), model.slot_inputs().expand(len(x), M, -1)], dim=1)
        for block in model.trunk.blocks:
            a = block.attn
            q, k, _ = a.qkv(block.ln1(h)).split(h.size(-1), dim=2)
            hs = h.size(-1) // a.n_head
            q = q.view(len(x), -1, a.n_head, hs).transpose(1, 2)
            k = k.view(len(x), -1, a.n_head, hs).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
            probs = att.masked_fill(~mask, float("-inf")).softmax(-1)   # (B, nh, T+M, T+M)
            h = block(h, mask)
        total += probs[:, :, T:, :T].double().sum((0, 1))  # last layer, slot rows, data columns
    return total


def bootstrap_block_shifts(nll, n_blocks=4, n_boot=1000, seed=0):
    """Per block of consecutive windows: (shift, lo, hi) of block mean minus other windows' mean, 95%."""
    rng = np.random.default_rng(seed)
    blocks = np.array_split(np.arange(len(nll)), n_blocks)
    out = []
    for idx in blocks:
        rest = np.setdiff1d(np.arange(len(nll)), idx)
        if len(idx) < 2 or len(rest) < 2:
            out.append((float("nan"),) * 3)
            continue
        a, b = nll[idx], nll[rest]
        boots = (a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1)
                 - b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1))
        out.append((float(a.mean() - b.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))))
    return out


def effective_rank(mat):
    """exp(entropy of the energy shares p_i = sigma_i^2 / sum_j sigma_j^2) of mat's singular values
    sigma (Roy & Vetterli 2007, on energies): between 1 (rank one) and min(mat.shape) (equal sigmas).
    Returns (effective rank, singular values)."""
    s = torch.linalg.svdvals(mat)
    p = s ** 2 / (s ** 2).sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum())), s.tolist()


def mean_abs_cos(states):
    """B: states (N, M, C) -> (mean over windows and pairs m != m' of |cos(h_m, h_m')|, the (M, M)
    matrix of the window-mean |cos|, the (M, M) matrix of the window-mean signed cos)."""
    u = torch.nn.functional.normalize(states, dim=-1)
    cos = u @ u.transpose(1, 2)                                           # (N, M, M)
    M = states.size(1)
    off = ~torch.eye(M, dtype=torch.bool)
    abs_mean = cos.abs().mean(0)
    return float(abs_mean[off].mean()), abs_mean, cos.mean(0)


def mean_abs_corr(g):
    """C: g (M, D) per-slot gradients -> (mean |Pearson correlation| over slot pairs, (M, M) matrix)."""
    corr = torch.corrcoef(g)
    off = ~torch.eye(len(g), dtype=torch.bool)
    return float(corr[off].abs().mean()), corr


def com_spread(probs):
    """I: probs (M, T) attention of each slot over data positions (rows sum to 1) -> (std across slots
    of the centre of mass sum_j a_j j, in positions; the (M,) centres)."""
    w = probs / probs.sum(1, keepdim=True)
    com = (w * torch.arange(probs.size(1), dtype=w.dtype)).sum(1)
    return float(com.std(unbiased=False)), com


def rollout_drift(stepper, wins, train_stream, n_samples=4, seed=0, horizon=100):
    """G: sampled rollouts of `stepper` and of marginal i.i.d. draws from the last-`horizon` contexts of
    wins; value = drift_slope(model) / drift_slope(marginal), both measured here (see the module docstring)."""
    ctx = wins.size(1) - horizon
    r = mdn_eval.rollout(stepper, wins, ctx, horizon, n_samples, seed)
    ref = mdn_eval.rollout(mdn_eval.iid_stepper(baselines.marginal_iid(train_stream)), wins, ctx, horizon,
                           n_samples, seed)
    slope, ref_slope = mdn_eval.drift_slope(r["sampled"]["cum_rmse"]), mdn_eval.drift_slope(ref["sampled"]["cum_rmse"])
    return {"value": slope / ref_slope, "slope": slope, "cum_rmse": r["sampled"]["cum_rmse"],
            "marginal_iid_slope": ref_slope, "marginal_iid_cum_rmse": ref["sampled"]["cum_rmse"]}


@torch.no_grad()
def _states(model, wins, batch_size=64, **fw):
    T = wins.size(1) - 1
    outs = [model(wins[i:i + batch_size, :T], return_slots=True, **fw)[1] for i in range(0, len(wins), batch_size)]
    return torch.cat(outs).double()                                       # (N, M, C)


def diagnose(model, wins, train_stream, seed=0, n_perms=8, rollout_windows=16, rollout_samples=4,
             n_blocks=4, grad_batches=8):
    """All of A-K for `model` (eval mode) on val windows (N, T+1). Returns {letter: result dict}."""
    torch.manual_seed(seed)
    model.eval()
    postfix = isinstance(model, PostfixMDN)
    M = model.config.n_memory_slots
    res = {}
    with torch.no_grad():
        base_w = per_window_nll(model, wins)
        base = float(base_w.mean())
        single = [float(per_window_nll(model, wins, drop_slots=(m,)).mean() - base) for m in range(M)]
        order = list(np.argsort(single)[::-1])
        curve = [float(per_window_nll(model, wins, drop_slots=tuple(int(j) for j in order[:k])).mean() - base)
                 for k in range(1, M if postfix else M + 1)]
    res["A"] = {"value": max(single), "per_slot": single, "removal_order": [int(j) for j in order],
                "multi_slot_curve": curve, "base_nll": base}

    permuted = postfix and model.config.slot_id_mode == "permute_per_batch"
    fw = {"slot_inputs": model.memory["content"] if model.config.content_mode == "normal"
          else torch.zeros_like(model.memory["content"])} if permuted else {}
    states = _states(model, wins, **fw)
    b, abs_cos, cos = mean_abs_cos(states)
    res["B"] = {"value": b, "matrix": cos.tolist(), "abs_matrix": abs_cos.tolist(),
                "basis": "content-only slot inputs (permute-trained: IDs are shuffled in training)" if permuted
                else "slot states with the evaluation slot IDs"}

    g = slot_gradients(model, wins, grad_batches)
    c, corr = mean_abs_corr(g)
    res["C"] = {"value": c, "matrix": corr.tolist(), "n_batches": grad_batches}
    erank, svals = effective_rank(g)
    res["K"] = {"value": erank / M, "effective_rank": erank, "singular_values": svals}

    if postfix:
        w = model.readout_weights().detach().double()
        res["D"] = {"value": float(-(w * w.log()).sum() / math.log(M)), "weights": w.tolist()}
    else:
        res["D"] = {"value": None, "note": "PREFIX has no readout"}
    total = sum(abs(d) for d in single)
    if max(abs(d) for d in single) < TARGETS["A"][1]:
        res["E"] = {"value": None, "note": "no slot's ablation effect reaches A's 0.02 nats: the entropy "
                                           "of such effects would describe noise"}
    elif total > 1e-12:
        p = np.array([abs(d) / total for d in single])
        p = p[p > 0]
        res["E"] = {"value": float(-(p * np.log(p)).sum()), "max_possible": math.log(M)}
    else:
        res["E"] = {"value": None, "note": "no slot has any ablation effect"}
    norms = states.norm(dim=-1).mean(0)
    res["F"] = {"value": float(norms.max() / norms.min()), "per_slot": norms.tolist()}

    H = 100
    n_roll = min(rollout_windows, len(wins))
    if wins.size(1) >= H + 2 and n_roll:
        res["G"] = rollout_drift(mdn_eval.model_stepper(model), wins[:n_roll], train_stream, rollout_samples, seed, H)
    else:
        res["G"] = {"value": None, "note": f"windows shorter than {H + 2}: no rollouts"}

    shifts = bootstrap_block_shifts(base_w, n_blocks, seed=seed)
    flagged = [i for i, (_, lo, hi) in enumerate(shifts) if lo > 0 or hi < 0]
    res["H"] = {"value": len(flagged), "blocks": shifts, "flagged": flagged,
                "max_abs_shift": float(np.nanmax(np.abs([s[0] for s in shifts])))}

    if postfix:
        with torch.no_grad():
            spread, com = com_spread(attention_com(model, wins))
        res["I"] = {"value": spread, "per_slot": com.tolist()}
        gen = torch.Generator().manual_seed(seed)
        perms = []
        while len(perms) < n_perms:
            p = torch.randperm(M, generator=gen)
            if not torch.equal(p, torch.arange(M)):
                perms.append(p)
        with torch.no_grad():
            deltas = [float(per_window_nll(model, wins, id_perm=p).mean() - base) for p in perms]
        marginal = float(baselines.marginal_iid(train_stream).nll(wins[:, -1].numpy()).mean())
        advantage = marginal - base
        res["J"] = {"value": float(np.mean(deltas) / advantage) if advantage > 0 else None,
                    "nll_increase_nats": float(np.mean(deltas)), "per_permutation": deltas,
                    "marginal_iid_nll": marginal, "advantage_over_marginal": advantage,
                    "eval_slot_id_mode": model.config.eval_slot_id_mode,
                    **({} if advantage > 0 else {"note": "model does not beat the marginal baseline"})}
    else:
        res["I"] = {"value": None, "note": "PREFIX slots see no data"}
        res["J"] = {"value": None, "note": "PREFIX has no slot-ID table"}
    for key in TARGETS:
        res[key]["status"] = _status(key, res[key]["value"])
        res[key]["definition"] = TARGETS[key][2]
        res[key]["target"] = None if TARGETS[key][0] is None else f"{TARGETS[key][0]} {TARGETS[key][1]}"
    return dict(sorted(res.items()))


def fmt(v):
    return "-" if v is None else f"{v:.4g}"


def plot(res, png_path, title=""):
    """One panel per letter A-K plus a summary table."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 4, figsize=(18, 12), dpi=72)
    ax = iter(axes.ravel())

    def head(a, key):
        r = res[key]
        v = r["value"]
        a.set_title(f"{key}: {TARGETS[key][2]}\n= {fmt(v)} [{r['status']}]", fontsize=9)

    a = next(ax); head(a, "A")
    M = len(res["A"]["per_slot"])
    a.bar(range(M), res["A"]["per_slot"], label="one slot removed")
    a.plot(range(len(res["A"]["multi_slot_curve"])), res["A"]["multi_slot_curve"], "ro-", ms=3,
           label="k+1 most important removed")
    a.axhline(0.02, ls="--", c="k", lw=0.8)
    a.set_xlabel("slot / k")
    a.set_ylabel("NLL increase (nats)")
    a.legend(fontsize=7)
    for key in ("B", "C"):
        a = next(ax); head(a, key)
        im = a.imshow(np.array(res[key]["matrix"]), vmin=-1, vmax=1, cmap="coolwarm")
        fig.colorbar(im, ax=a, fraction=0.046)
    a = next(ax); head(a, "D")
    if "weights" in res["D"]:
        a.bar(range(M), res["D"]["weights"])
        a.axhline(1 / M, ls="--", c="k", lw=0.8)
    a = next(ax); head(a, "E")
    tot = sum(abs(d) for d in res["A"]["per_slot"]) or 1.0
    a.bar(range(M), [abs(d) / tot for d in res["A"]["per_slot"]])
    a.set_ylabel("share of ablation effect")
    a = next(ax); head(a, "F")
    a.bar(range(M), res["F"]["per_slot"])
    a = next(ax); head(a, "G")
    if "cum_rmse" in res["G"]:
        h = np.arange(1, len(res["G"]["cum_rmse"]) + 1)
        a.loglog(h, res["G"]["cum_rmse"], label="model (sampled)")
        a.loglog(h, res["G"]["marginal_iid_cum_rmse"], label="marginal i.i.d.")
        a.loglog(h, 0.5 * np.sqrt(h), "k--", lw=0.8, label="slope 0.5")
        a.set_xlabel("horizon h")
        a.legend(fontsize=7)
    a = next(ax); head(a, "H")
    b = np.array(res["H"]["blocks"], dtype=float)
    a.errorbar(range(len(b)), b[:, 0], yerr=[b[:, 0] - b[:, 1], b[:, 2] - b[:, 0]], fmt="o", capsize=3)
    a.axhline(0, c="k", lw=0.8)
    a.set_xlabel("block (increasing height)")
    a.set_ylabel("NLL shift (nats)")
    a = next(ax); head(a, "I")
    if "per_slot" in res["I"]:
        a.bar(range(M), res["I"]["per_slot"])
        a.set_ylabel("centre of mass (position)")
    a = next(ax); head(a, "J")
    if "per_permutation" in res["J"]:
        a.bar(range(len(res["J"]["per_permutation"])), res["J"]["per_permutation"])
        a.set_xlabel("fixed permutation")
        a.set_ylabel("NLL increase (nats)")
    a = next(ax); head(a, "K")
    a.bar(range(len(res["K"]["singular_values"])), res["K"]["singular_values"])
    a.set_xlabel("singular value index")
    a = next(ax)
    a.axis("off")
    lines = [f"{k}  {r['status']:<5} {fmt(r['value']):>9}  target {r['target']}" for k, r in res.items()]
    a.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.05, right=0.97, bottom=0.05, top=0.92, hspace=0.45, wspace=0.35)  # tight_layout costs seconds
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


# ---- what diagnose_memory.py and diagnose_memory_postfix.py share --------------------------------
def cli_main(argv, family, stem, description):
    """Parse --ckpt --data-dir --output-dir --seed ..., run A-K, print the table, append one JSONL
    row to <output-dir>/<stem>.jsonl and write <stem>.png."""
    import json
    from pathlib import Path

    from seqlab.core import checkpoint, cli, paths
    from seqlab.zeta import spacings as spacing_data

    p = cli.OneLineParser(description=description, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data-dir", default=None, help="spacing dataset (default: the one the run trained on)")
    p.add_argument("--output-dir", default=None, help=f"where {stem}.jsonl (appended) and {stem}.png go")
    p.add_argument("--split", choices=["val", "train"], default="val")
    p.add_argument("--max-windows", type=cli.positive_int, default=256, help="val windows used (in height order)")
    p.add_argument("--n-perms", type=cli.positive_int, default=8, help="J: fixed slot-ID permutations")
    p.add_argument("--rollout-windows", type=cli.nonneg_int, default=16, help="G: windows rolled out (0: skip G)")
    p.add_argument("--rollout-samples", type=cli.positive_int, default=4)
    p.add_argument("--n-blocks", type=cli.positive_int, default=4, help="H: height blocks")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    model, ckpt = checkpoint.load_model(args.ckpt, family)
    data_dir = args.data_dir or ckpt["data_info"]["data_dir"]
    split = spacing_data.load_split(data_dir, args.split)
    train_stream = spacing_data.load_split(data_dir, "train").flatten().numpy()
    wins = mdn_eval.windows(split, model.config.context + 1)[: args.max_windows]
    res = diagnose(model, wins, train_stream, args.seed, args.n_perms, args.rollout_windows, args.rollout_samples,
                   args.n_blocks)
    c = model.config
    print(f"{family} step {ckpt['step']} | {len(wins)} {args.split} windows of {wins.size(1)} | seed {args.seed}"
          + (f" | slot IDs: trained {c.slot_id_mode}, evaluated {c.eval_slot_id_mode} | content {c.content_mode}"
             if family == "mdn_postfix" else ""))
    for k, r in res.items():
        note = r.get("note") or r.get("basis") or ""
        print(f"  {k} {r['status']:<5} {fmt(r['value']):>9}  (target {r['target']})  {r['definition']}"
              + (f" [{note}]" if note else ""))
    row = {"ckpt": paths.shown(args.ckpt), "family": family, "step": ckpt["step"], "data_dir": paths.shown(data_dir),
           "split": args.split, "n_windows": len(wins), "seed": args.seed, "run_id": ckpt["manifest"]["run_id"],
           "summary": {k: {"value": r["value"], "status": r["status"]} for k, r in res.items()}, "details": res}
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"{stem}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        plot(res, out / f"{stem}.png", f"{family} A-K | {paths.shown(args.ckpt)} | step {ckpt['step']} | seed {args.seed}")
        print(f"wrote {out / (stem + '.jsonl')} (appended), {out / (stem + '.png')}")
    return row
