"""What a trained hybrid remembers: streamed val loss, passkey retrieval by distance, state persistence."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from seqlab.core.errors import UserError
from seqlab.hybrid.streams import doc_starts, passkey_text, stream_tracks
from seqlab.text import tokenizer


@torch.no_grad()
def evaluate_stream(model, ids, n_tracks, context, max_chunks=0, doc_sep=""):
    """Mean next-char cross-entropy (nats/char) streaming contiguous tracks with carried state
    (fresh at the start), plus bits/char and perplexity. max_chunks 0: the whole split."""
    dev = next(model.parameters()).device
    tracks = stream_tracks(ids, n_tracks, context, max_chunks)
    resets = torch.from_numpy(doc_starts(tracks.reshape(-1).numpy(), doc_sep)).view(tracks.shape) if doc_sep else None
    state, total, count = None, 0.0, 0
    for s in range(0, tracks.shape[1] - 1, context):
        x, y = tracks[:, s:s + context].to(dev), tracks[:, s + 1:s + context + 1].to(dev)
        reset = resets[:, s:s + context].to(dev) if resets is not None else None
        logits, state = model(x, state, reset)
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"))
        count += y.numel()
    loss = total / count
    return {"val_loss": loss, "val_bpc": loss / math.log(2), "val_ppl": math.exp(loss), "val_tokens": count}


# ---- memory tests (eval_hybrid.py) ----------------------------------------------------------------

PASSKEY_DISTANCES = (64, 128, 256, 512, 1024, 2048)


@torch.no_grad()
def passkey_accuracy(model, distances=PASSKEY_DISTANCES, trials=20, seed=0):
    """Passkey retrieval by distance, fed as one stream with state handoff across chunks.

    For each distance d (characters between the key and the answer), `trials` documents with
    random 5-digit keys; a trial counts as retrieved when the argmax prediction of every key
    digit is right given the digits before it (teacher forcing). Returns {d: {accuracy (0-1),
    digit_accuracy (0-1), key_nll (nats per digit)}}.
    """
    dev = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    out = {}
    for d in distances:
        keys = [f"{int(rng.integers(10000, 100000))}" for _ in range(trials)]
        texts, answer = zip(*(passkey_text(k, d, rng) for k in keys))
        ids = torch.stack([torch.from_numpy(tokenizer.encode(t).astype(np.int64)) for t in texts]).to(dev)
        logits, _ = model.forward_stream(ids[:, :answer[0] + 5])
        a = answer[0]
        pred_logits = logits[:, a - 1:a + 4].float()                    # positions that predict the 5 digits
        target = ids[:, a:a + 5]
        hit = pred_logits.argmax(-1) == target
        nll = F.cross_entropy(pred_logits.reshape(-1, pred_logits.size(-1)), target.reshape(-1))
        out[d] = {"accuracy": float(hit.all(1).float().mean()), "digit_accuracy": float(hit.float().mean()),
                  "key_nll": float(nll)}
    return out


@torch.no_grad()
def state_persistence(model, ids, position=64, horizon=512, stride=8, n_seqs=4, seed=0):
    """How long a one-token perturbation stays visible in each layer's recurrent state.

    n_seqs val sequences are streamed twice, once with the token at `position` replaced by a
    random one; after every `stride` tokens the relative state difference |S' - S| / |S|
    (Frobenius, mean over sequences) is recorded per layer, for distances 0..horizon after the
    perturbation. Returns {"distance": [...], "layers": {"i:K": [...]}}; attention layers are left
    out (they have no recurrent state).
    """
    dev = next(model.parameters()).device
    c = model.config.context
    stride = math.gcd(stride, c)
    start = position - position % stride
    length = start + stride + horizon
    need = n_seqs * length
    if len(ids) < need:
        raise UserError(f"split has {len(ids)} tokens; the persistence test needs {need} "
                        f"({n_seqs} x {length}); lower --persistence-horizon")
    x = ids[:need].view(n_seqs, length).to(dev)
    g = torch.Generator().manual_seed(seed)
    x2 = x.clone()
    x2[:, position] = (x[:, position] + torch.randint(1, 97, (n_seqs,), generator=g).to(dev) - 2) % 97 + 2
    sa = sb = None
    dist, curves = [], {}
    for s in range(0, length, stride):
        _, sa = model(x[:, s:s + stride], sa)
        _, sb = model(x2[:, s:s + stride], sb)
        if s + stride - 1 < position:
            continue
        dist.append(s + stride - 1 - position)
        for i, (a, b) in enumerate(zip(model.flat_states(sa), model.flat_states(sb))):
            if a is None:
                continue
            rel = (b - a).norm(dim=1) / a.norm(dim=1).clamp(min=1e-30)
            curves.setdefault(f"{i}:{model.layers[i].kind}", []).append(float(rel.mean()))
    return {"position": position, "distance": dist, "layers": curves}
