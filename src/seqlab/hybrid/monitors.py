"""Training monitors of the hybrid (family 3): the user's G3.5 band and stop rules as checks.

At every eval `Monitor.report` writes one "monitor" row to metrics.jsonl and prints a WARNING
line per triggered rule. Rules (levels: ok / warn / fail; `--stop-on-red-flags` stops on fail):
    grad ratio      RMS gradient per parameter, RWKV / Mamba: (|g_R| / sqrt(n_R)) / (|g_M| / sqrt(n_M)),
                    |g| the L2 norm (mean over the steps since the last eval), n the parameter
                    count (the components differ ~2x in size, which alone would move a ratio of
                    raw norms by ~1.4x): 0.3-3 ok, 0.1-0.3 or 3-10 warn, else fail (G3.5 band);
                    the raw-norm ratio is logged too
    collapse        a layer whose update's std over batch and time (per channel, averaged) is
                    below `collapse_rel` (1e-5) x the std of its input: fail (activations
                    collapsed); below `near_dead_rel` (1e-3) x: warn (a near-dead component)
    decay           share of RWKV channels with mean retention < 0.05 or > 0.9995: warn above
                    `decay_frac` (time decay collapsing to 0 or 1)
    selectivity     Mamba dt variance across tokens (per channel, averaged) below 1e-10: fail
    lr drops        2+ LR drops (plateau LR cuts) without val improvement: fail
    overfit         val >= 5% above its best while the train loss is below its value then: fail
    plateau         steps since the best val as a share of max_steps: > 20% warn
Numbers: grad norms are L2 norms of the gradient (loss units per parameter unit); state norm
is the Frobenius norm of a layer's recurrent state per sequence (mean over the batch), after a
probe chunk of val tokens from a fresh state.
"""
import torch

from seqlab.hybrid.streams import stream_tracks

RATIO_OK, RATIO_WARN = (0.3, 3.0), (0.1, 10.0)
COMPONENTS = ("rwkv", "mamba", "attention", "other")


def component_of(model, name):
    """Which component a parameter belongs to: rwkv, mamba, attention or other."""
    parts = name.split(".")
    if parts[0] != "layers":
        return "other"
    kind = model.config.layout[int(parts[1])]
    if kind == "P":
        return {"r": "rwkv", "m": "mamba"}.get(parts[2], "other")
    return {"R": "rwkv", "M": "mamba", "A": "attention"}[kind]


def ratio_level(ratio):
    """ok / warn / fail for an RWKV/Mamba gradient-norm ratio (None when a component is absent)."""
    if ratio is None:
        return "ok"
    if RATIO_OK[0] <= ratio <= RATIO_OK[1]:
        return "ok"
    if RATIO_WARN[0] <= ratio <= RATIO_WARN[1]:
        return "warn"
    return "fail"


@torch.no_grad()
def probe(model, ids, context, batch_size):
    """Forward one chunk of val tokens per track from a fresh state, layer by layer.

    Returns {layer index: {kind, update_std, input_std, state_norm, dt_var (M, P)}} and, under
    ("ret", i), the mean retention per RWKV channel of layer i.
    """
    dev = next(model.parameters()).device
    n = min(batch_size, max(1, (len(ids) - 1) // context))
    idx = ids[:n * context].view(n, context).to(dev)
    was = model.training
    model.eval()
    try:
        x = model.tok_emb(idx)
        if model.pos_emb is not None:
            x = x + model.pos_emb(torch.arange(context, device=dev))
        stats = {}
        for i, (layer, s) in enumerate(zip(model.layers, model.init_state(n, dev)["layers"])):
            d, s = layer.delta(x, s)
            stats[i] = {"kind": layer.kind, "update_std": _std(d), "input_std": _std(x), "state_norm": _state_norm(layer, s)}
            if layer.kind in "MP":
                m = layer.mixer if layer.kind == "M" else layer.m.mixer
                stats[i]["dt_var"] = float(m.last_dt.float().var(dim=(0, 1)).mean())
            if layer.kind in "RP":
                att = layer.att if layer.kind == "R" else layer.r.att
                stats[("ret", i)] = [torch.exp(att.last_logw.float()).mean(dim=(0, 1)).flatten()]
            x = x + d
    finally:
        model.train(was)
    return stats


def _std(t):
    """Std over batch and time, per channel, averaged over channels."""
    return float(t.float().std(dim=(0, 1)).mean())


def _state_norm(layer, s):
    def fro(t):
        return float(t.float().flatten(1).norm(dim=1).mean())
    if layer.kind == "R":
        return fro(s[1])
    if layer.kind == "M":
        return fro(s[1])
    if layer.kind == "P":
        return (fro(s[0][1]) ** 2 + fro(s[1][1]) ** 2) ** 0.5
    return 0.0


class Monitor:
    def __init__(self, collapse_rel=1e-5, decay_frac=0.5, stop_on_red_flags=False, near_dead_rel=1e-3):
        self.collapse_rel, self.decay_frac, self.stop = collapse_rel, decay_frac, stop_on_red_flags
        self.near_dead_rel = near_dead_rel
        self.sq = {c: 0.0 for c in COMPONENTS}   # sums of per-step norms, on the host
        self._pending = None   # the same sums since the last read, on the gradients' device (COMPONENTS order)
        self.n_steps = 0
        self.history = []      # (step, val, train, lr_scale) at each eval

    # ---- gradients ----------------------------------------------------------------------------
    def accumulate_grads(self, model):
        """Add this step's per-component gradient L2 norms (called after backward, before clipping).

        No host sync per step (a float() per parameter would be ~200 on a GPU): the norms stay on the
        device and are read back in one transfer when grad_norms() needs them.
        """
        groups = {c: [] for c in COMPONENTS}
        for name, p in model.named_parameters():
            if p.grad is not None:
                groups[component_of(model, name)].append(p.grad.detach().float().square().sum())
        present = [t for g in groups.values() for t in g]
        if present:
            zero = present[0].new_zeros(())
            norms = torch.stack([torch.stack(g).sum() if g else zero for g in groups.values()]).sqrt()
            self._pending = norms if self._pending is None else self._pending + norms
        self.n_steps += 1

    def _fold(self):
        """Move the device-side sums into self.sq (one transfer)."""
        if self._pending is not None:
            for c, v in zip(COMPONENTS, self._pending.tolist()):
                self.sq[c] += v
            self._pending = None

    def grad_norms(self):
        """Mean per-step gradient L2 norm of each component since the last report."""
        self._fold()
        n = max(self.n_steps, 1)
        return {c: self.sq[c] / n for c in COMPONENTS}

    # ---- the report ---------------------------------------------------------------------------
    def checks(self, model, stats, step, val, state):
        """[(rule, level, message)] for the current eval, plus the row of numbers."""
        layout = model.config.layout
        g = self.grad_norms()
        has_r, has_m = any(k in "RP" for k in layout), any(k in "MP" for k in layout)
        n = {c: 0 for c in COMPONENTS}
        for name, p in model.named_parameters():
            n[component_of(model, name)] += p.numel()
        ratio = raw = None
        if has_r and has_m and g["mamba"] > 0:
            raw = g["rwkv"] / g["mamba"]
            ratio = raw * (n["mamba"] / n["rwkv"]) ** 0.5          # per-parameter RMS ratio
        row = {"grad_norm_" + c: g[c] for c in COMPONENTS}
        row["grad_ratio_rwkv_mamba"] = ratio
        row["grad_ratio_rwkv_mamba_raw"] = raw
        out = []
        level = ratio_level(ratio)
        if level != "ok":
            out.append(("grad_ratio", level, f"RWKV/Mamba per-parameter gradient ratio {ratio:.3g} outside the G3.5 band "
                                             f"0.3-3 (raw norms {raw:.3g})"))
        layers = {i: s for i, s in stats.items() if isinstance(i, int)}
        row["state_norm"] = [layers[i]["state_norm"] for i in sorted(layers)]
        row["update_std"] = [layers[i]["update_std"] for i in sorted(layers)]
        collapsed = [i for i, s in layers.items() if s["update_std"] < self.collapse_rel * max(s["input_std"], 1e-12)]
        row["collapsed_layers"] = collapsed
        if collapsed:
            kinds = "".join(layout[i] for i in collapsed)
            out.append(("collapse", "fail", f"activation collapse: layers {collapsed} ({kinds}) output a constant "
                                            f"(update std < {self.collapse_rel:g} x input std)"))
        weak = [i for i, s in layers.items() if i not in collapsed
                and s["update_std"] < self.near_dead_rel * max(s["input_std"], 1e-12)]
        row["near_dead_layers"] = weak
        if weak:
            out.append(("collapse", "warn", f"near-dead layers {weak} ({''.join(layout[i] for i in weak)}): update std "
                                            f"< {self.near_dead_rel:g} x input std"))
        rets = [w for key, ws in stats.items() if isinstance(key, tuple) for w in ws]
        if rets:
            w = torch.cat(rets)
            short, long_ = float((w < 0.05).float().mean()), float((w > 0.9995).float().mean())
            row.update(decay_frac_short=short, decay_frac_long=long_, retention_median=float(w.median()))
            if short + long_ > self.decay_frac:
                out.append(("decay", "warn", f"RWKV decay collapsing: {short:.0%} of channels retain < 0.05, "
                                             f"{long_:.0%} retain > 0.9995 per token"))
        dts = [s["dt_var"] for s in layers.values() if "dt_var" in s]
        if dts:
            row["dt_var_min"] = min(dts)
            if min(dts) < 1e-10:
                out.append(("selectivity", "fail", f"Mamba selection shows zero variance (dt var {min(dts):.2g})"))
        # plateau / stop rules on the eval history
        best, best_step, max_steps = state["best"], state["best_step"], state["max_steps"]
        train = state.get("train_loss")
        self.history.append((step, val, train, state.get("lr_scale", 1.0)))
        since = [h for h in self.history if h[0] > best_step]
        scales = [h[3] for h in self.history if h[0] >= best_step]
        drops = sum(1 for a, b in zip(scales, scales[1:]) if b < a)
        row["lr_drops_since_best"] = drops
        if drops >= 2:
            out.append(("lr_drops", "fail", f"{drops} LR drops without val improvement since step {best_step}"))
        at_best = next((h for h in self.history if h[0] == best_step), None)
        if at_best and at_best[2] is not None and train is not None and val > 1.05 * best and train < at_best[2]:
            out.append(("overfit", "fail", f"val {val:.4f} is {val / best - 1:.0%} above its best {best:.4f} while "
                                           f"train fell {at_best[2]:.4f} -> {train:.4f}"))
        share = (step - best_step) / max(max_steps, 1)
        row["plateau_share"] = share
        if share > 0.2 and since:
            out.append(("plateau", "warn", f"no val improvement for {step - best_step} steps ({share:.0%} of training): "
                                           "converged or stuck"))
        return out, row

    def report(self, model, val_ids, step, log, state, context, batch_size, val):
        """Log the monitor row and warnings; return a stop reason under --stop-on-red-flags.

        val: this eval's val loss; state: the engine's (best, best_step, max_steps, lr_scale, train_loss).
        """
        stats = probe(model, val_ids, context, batch_size)
        flags, row = self.checks(model, stats, step, val, state)
        row["flags"] = [f"{r}:{lvl}" for r, lvl, _ in flags]
        log.event("monitor", step=step, **row)
        ratio = row["grad_ratio_rwkv_mamba"]
        log.line(f"Monitor @ {step}: grad rwkv {row['grad_norm_rwkv']:.3g} mamba {row['grad_norm_mamba']:.3g} "
                 f"attn {row['grad_norm_attention']:.3g} other {row['grad_norm_other']:.3g}"
                 + (f" | ratio R/M {ratio:.3g}" if ratio is not None else "")
                 + f" | plateau {row['plateau_share']:.0%}")
        for rule, level, msg in flags:
            log.line(f"WARNING [{rule}, {level}]: {msg}")
        self.sq = {c: 0.0 for c in COMPONENTS}
        self._pending = None
        self.n_steps = 0
        fails = [msg for _, level, msg in flags if level == "fail"]
        if self.stop and fails:
            return "red flag: " + fails[0]
        return None

    def state_dict(self):
        self._fold()
        return {"history": [list(h) for h in self.history], "sq": dict(self.sq), "n_steps": self.n_steps}

    def load_state_dict(self, d):
        self.history = [tuple(h) for h in d.get("history", [])]
        self.sq = dict(d.get("sq", self.sq))
        self._pending = None
        self.n_steps = d.get("n_steps", 0)


# ---- G3.5 gate (diagnose_hybrid.py) --------------------------------------------------------------

G35 = {"frozen_cos": 0.99, "churn_cos": 0.1, "saturated": 0.5}


def _matrices(layer, s):
    """The state of a layer as a batch of matrices (RWKV: one K x K per head; Mamba: D x N)."""
    if layer.kind == "R":
        return [s[1].flatten(0, 1)]
    if layer.kind == "M":
        return [s[1]]
    if layer.kind == "P":
        return _matrices(layer.r, s[0]) + _matrices(layer.m, s[1])
    return []


def _retentions(layer):
    """Per-token retentions of the layer's last forward (RWKV w; Mamba exp(dt A)), flattened."""
    if layer.kind == "P":
        return _retentions(layer.r) + _retentions(layer.m)
    if layer.kind == "R":
        return [torch.exp(layer.att.last_logw.float()).flatten()]
    if layer.kind == "M":
        m = layer.mixer
        return [torch.exp(m.last_dt.float().unsqueeze(-1) * -torch.exp(m.A_log.float())).flatten()]
    return []


@torch.no_grad()
def g35_report(model, ids, n_tracks, context, max_chunks=16):
    """The G3.5 gate, in the mode the model trained in (chunks with state handoff on val tracks).

    Per recurrent layer:
        cos_sim     mean cosine similarity of the layer's state at consecutive chunk ends
                    (1 = frozen, ~0 = no memory carried); gate: churn_cos < cos_sim < frozen_cos
        svd_top5    share of the state's squared singular values in the top 5 (per head matrix
                    for RWKV, the D x N matrix for Mamba), mean over tracks and chunk ends
        saturated   share of per-token retentions > 0.9995 (never forgets) or < 0.05 (never
                    remembers); gate: <= G35["saturated"]
    Returns (list of per-layer dicts, passed: bool).
    """
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        return _g35(model, dev, stream_tracks(ids, n_tracks, context, max_chunks), context)
    finally:
        model.train(was)                                     # the caller's mode, as found


def _g35(model, dev, tracks, context):
    flat, svd, sat = [], {}, {}
    state = None
    for s in range(0, tracks.shape[1] - 1, context):
        _, state = model(tracks[:, s:s + context].to(dev), state)
        flat.append(model.flat_states(state))
        for i, layer in enumerate(model.layers):
            for m in _matrices(layer, state["layers"][i]):
                sv = torch.linalg.svdvals(m.float()).square()
                svd.setdefault(i, []).append(float((sv[..., :5].sum(-1) / sv.sum(-1).clamp(min=1e-30)).mean()))
            for w in _retentions(layer):
                n_sat = float(((w > 0.9995) | (w < 0.05)).float().sum())
                a, b = sat.get(i, (0.0, 0))
                sat[i] = (a + n_sat, b + w.numel())
    rows = []
    for i, layer in enumerate(model.layers):
        if flat[0][i] is None:
            continue
        cos = [float(torch.nn.functional.cosine_similarity(a[i], b[i], dim=1).mean()) for a, b in zip(flat, flat[1:])]
        row = {"layer": i, "kind": layer.kind, "cos_sim": sum(cos) / len(cos) if cos else float("nan"),
               "svd_top5": sum(svd[i]) / len(svd[i]), "saturated": sat[i][0] / sat[i][1]}
        row["frozen"] = row["cos_sim"] > G35["frozen_cos"]
        row["churning"] = row["cos_sim"] < G35["churn_cos"]
        row["pass"] = not row["frozen"] and not row["churning"] and row["saturated"] <= G35["saturated"]
        rows.append(row)
    return rows, all(r["pass"] for r in rows)


def layout_class(layout):
    """pure-R, pure-M, attention, hybrid (R and M both present) or other, from a layout string."""
    kinds = set(layout) - {"A"}
    if not kinds:
        return "attention"
    if kinds == {"R"}:
        return "pure-R"
    if kinds == {"M"}:
        return "pure-M"
    return "hybrid" if kinds & {"P"} or kinds >= {"R", "M"} else "other"


def baseline_verdict(hybrid, pure_r, pure_m):
    """The notes' reading of a hybrid's val loss against the pure baselines (lower is better)."""
    worst, best = max(pure_r, pure_m), min(pure_r, pure_m)
    if hybrid > worst:
        return "hybrid worse than both baselines: a training problem (optimisation, LR, balance)"
    if hybrid >= best:
        return "hybrid between the baselines: a capacity/architecture problem"
    return "hybrid better than both baselines"
