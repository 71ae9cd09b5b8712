"""Does a hybrid use long context? Loss by position over long val text, and needle-in-a-haystack.

Both stream text chunk by chunk with carried state, as the model trains (eval_hybrid.py
--context-length, --niah).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from seqlab.core.errors import UserError
from seqlab.text import tokenizer

NIAH_CONTEXTS = (256, 512, 1024, 2048, 4096)
NIAH_DEPTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "What is the pass key? The pass key is "


def segments(ids, length, max_segments=0):
    """Non-overlapping contiguous segments of `length` + 1 ids from the start of `ids`: (n, length + 1)."""
    n = (len(ids) - 1) // length
    if max_segments:
        n = min(n, max_segments)
    if n < 2:
        raise UserError(f"the split has {len(ids):,} tokens: fewer than 2 segments of {length} + 1; lower --context-length")
    return torch.stack([ids[i * length:(i + 1) * length + 1] for i in range(n)])


@torch.no_grad()
def loss_by_position(model, ids, length, max_segments=0, batch=16, carry=True):
    """Next-char cross-entropy (nats) at every position 0..length-1 of contiguous val segments, each read
    from a fresh state through chunks of the model's context with the state carried (carry=False: a fresh
    state at every chunk, i.e. no context beyond the chunk): (n_segments, length)."""
    dev = next(model.parameters()).device
    seg = segments(ids, length, max_segments)
    c = model.config.context
    out = []
    for i in range(0, len(seg), batch):
        x = seg[i:i + batch].to(dev)
        if carry:
            logits, _ = model.forward_stream(x[:, :-1])
        else:
            logits = torch.cat([model(x[:, s:min(s + c, length)])[0] for s in range(0, length, c)], 1)
        out.append(F.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="none").double().cpu())
    return torch.cat(out).numpy()


def context_curve(losses, context, bin_size=32, n_boot=1000, seed=0, fresh=None):
    """Bits/char by position (mean over segments, in bins of `bin_size` chars), and the benefit of context
    beyond one chunk: delta = mean bits/char of chunks 1.. minus chunk 0 at the same in-chunk positions
    (negative: the carried state helps), with a bootstrap 95% interval over segments (paired).
    With `fresh` (the same segments read with a fresh state at every chunk, loss_by_position(carry=False)):
    also carried minus fresh bits/char on chunks 1.. (the same text and positions: the value of the
    carried state itself; exactly 0 for a chunk-local model), by bin and overall with its interval.
    losses, fresh: (n_segments, length) nats from loss_by_position."""
    n, length = losses.shape
    bits = losses / math.log(2)
    edges = list(range(0, length, bin_size))
    curve = [float(bits[:, a:a + bin_size].mean()) for a in edges]
    n_chunks = length // context
    if n_chunks < 2:
        raise UserError(f"--context-length {length} holds {n_chunks} chunk(s) of {context}: give at least 2 chunks")
    per_seg = bits[:, :n_chunks * context].reshape(n, n_chunks, context).mean(2)        # (n, chunks)
    delta = per_seg[:, 1:].mean(1) - per_seg[:, 0]
    rng = np.random.default_rng(seed)
    boots = delta[rng.integers(0, n, size=(n_boot, n))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    out = {"bin_start": edges, "bin_size": bin_size, "bpc": curve, "segments": n, "length": length, "context": context,
           "bpc_by_chunk": per_seg.mean(0).tolist(), "later_minus_first_chunk_bpc": float(delta.mean()),
           "ci95": [float(lo), float(hi)]}
    if fresh is not None:
        diff = (losses - fresh) / math.log(2)                                            # (n, length) bits
        d_seg = diff[:, context:n_chunks * context].mean(1)
        boots = d_seg[rng.integers(0, n, size=(n_boot, n))].mean(1)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        out.update(carried_minus_fresh_by_bin=[float(diff[:, a:a + bin_size].mean()) for a in edges],
                   carried_minus_fresh_bpc=float(d_seg.mean()), carried_minus_fresh_ci95=[float(lo), float(hi)])
    return out


def niah_document(key, haystack, depth, length):
    """ids of a `length`-char document: haystack text with the needle at fraction `depth` of the room left by
    needle and question, the question at the end; returns (ids, index of the answer's first char)."""
    needle = tokenizer.encode(NEEDLE.format(key=key)).astype(np.int64)
    question = tokenizer.encode(QUESTION).astype(np.int64)
    room = length - len(needle) - len(question)
    if room < 0:
        raise UserError(f"NIAH context {length} is shorter than the needle and question ({len(needle) + len(question)})")
    at = int(round(depth * room))
    doc = np.concatenate([haystack[:at], needle, haystack[at:room], question, tokenizer.encode(key).astype(np.int64)])
    return doc, length


@torch.no_grad()
def niah(model, ids, contexts=NIAH_CONTEXTS, depths=NIAH_DEPTHS, trials=10, seed=0):
    """Needle-in-a-haystack accuracy by context length and depth.

    A 5-digit key sentence is put at `depth` (fraction) of a `context`-char document of val text
    (each trial from a random offset), the question at the end; the document is streamed with carried
    state. A trial counts when every key digit is the argmax given the digits before it (teacher
    forcing). Returns {"contexts", "depths", "accuracy": [depth][context], "digit_accuracy": same}.
    """
    dev = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    base = np.asarray(ids, dtype=np.int64)
    acc, dig = np.zeros((len(depths), len(contexts))), np.zeros((len(depths), len(contexts)))
    for j, L in enumerate(contexts):
        if len(base) < L + 1:
            raise UserError(f"the split has {len(base):,} tokens; NIAH context {L} needs more")
        for i, d in enumerate(depths):
            docs = []
            for _ in range(trials):
                key = f"{int(rng.integers(10000, 100000))}"
                off = int(rng.integers(0, len(base) - L))
                doc, a = niah_document(key, base[off:off + L], d, L)
                docs.append(doc)
            x = torch.from_numpy(np.stack(docs)).to(dev)
            logits, _ = model.forward_stream(x[:, :a + 4])
            hit = logits[:, a - 1:a + 4].argmax(-1) == x[:, a:a + 5]
            acc[i, j], dig[i, j] = float(hit.all(1).float().mean()), float(hit.float().mean())
    return {"contexts": list(contexts), "depths": list(depths), "trials": trials, "accuracy": acc.tolist(),
            "digit_accuracy": dig.tolist()}
