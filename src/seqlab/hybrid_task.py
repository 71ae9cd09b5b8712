"""Family 3's task for the engine: state-handoff training on parallel tracks of one text stream.

The train stream is cut into `batch_size` equal tracks; step i feeds each track's i-th chunk of
`context` tokens, with the recurrent state the previous chunk left behind (detached: values
are carried, gradients are not). States start fresh at every epoch and for validation, which
streams contiguous val tracks the same way. A reset flag at token t (a document starts after
a `doc_sep` occurrence) clears every state before t. With `passkey_mix` p, each track's chunk
is replaced with probability p by a passkey document (seqlab.hybrid_task.passkey_text), so the
passkey test of eval_hybrid measures learned memory rather than luck.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from seqlab import kernels, monitors, text_data, tokenizer
from seqlab.errors import UserError
from seqlab.models.hybrid import detach_state

PASSKEY_MIN_DIST = 40            # characters from the key to the answer, shortest mixed into training
PASSKEY_OVERHEAD = 67            # characters of a passkey document besides its filler
FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ")


def doc_starts(ids, sep):
    """(N,) bool: True at the first token after each occurrence of the string `sep` (empty: none)."""
    n = len(ids)
    out = np.zeros(n, dtype=bool)
    if not sep:
        return out
    pat = tokenizer.encode(sep)
    arr = np.asarray(ids, dtype=np.uint8)
    m = len(pat)
    if n < m:
        return out
    hit = np.ones(n - m + 1, dtype=bool)
    for j, c in enumerate(pat):
        hit &= arr[j:n - m + 1 + j] == c
    ends = np.nonzero(hit)[0] + m
    out[ends[ends < n]] = True
    return out


def passkey_text(key, distance, rng, question="What is the pass key? The pass key is "):
    """A passkey document: 'The pass key is KEY. Remember it.' then filler, then the question.

    `distance` is the number of characters between the end of the key and the end of the
    question (where the key must be produced). Returns (text, index of the answer's first char).
    """
    head = f"The pass key is {key}. Remember it. {key} is the pass key. "
    n_fill = max(0, distance - len(question))
    start = int(rng.integers(0, len(FILLER)))
    filler = (FILLER * (n_fill // len(FILLER) + 2))[start:start + n_fill]
    text = head + filler + question
    return text + key + ".\n", len(text)


class HybridTask:
    family, metric = "hybrid", "val_loss"

    def __init__(self, data_dir, context, batch_size, seed, doc_sep="", passkey_mix=0.0, eval_chunks=0,
                 monitor_cfg=None, prompt="The ", sample_tokens=200):
        self.data_dir, self.context, self.batch_size, self.seed = data_dir, context, batch_size, seed
        self.doc_sep, self.passkey_mix, self.eval_chunks = doc_sep, passkey_mix, eval_chunks
        self.prompt, self.sample_tokens = prompt, sample_tokens
        train, self.val = text_data.load_split(data_dir, "train"), text_data.load_split(data_dir, "val")
        self.track_len = len(train) // batch_size
        if self.track_len < context + 1:
            raise UserError(f"train split has {len(train)} tokens: {batch_size} tracks of at least context {context} + 1 "
                            "need more; lower --batch-size or --context")
        if len(self.val) // batch_size < context + 1:
            raise UserError(f"val split has {len(self.val)} tokens, fewer than {batch_size} tracks x (context {context} + 1); "
                            "lower --batch-size/--context or prepare with a larger --val-fraction")
        if passkey_mix and context < PASSKEY_OVERHEAD + PASSKEY_MIN_DIST:
            raise UserError(f"--passkey-mix needs --context >= {PASSKEY_OVERHEAD + PASSKEY_MIN_DIST} (a passkey document fits in one chunk)")
        self.tracks = train[:self.track_len * batch_size].view(batch_size, self.track_len)
        self.resets = torch.from_numpy(doc_starts(self.tracks.reshape(-1).numpy(), doc_sep)).view(batch_size, -1)
        self.chunks_per_epoch = (self.track_len - 1) // context
        self.served, self.state = 0, None           # chunks served; the carried model state
        self.monitor = monitors.Monitor(**(monitor_cfg or {}))

    # ---- training data -------------------------------------------------------------------------
    def next_batch(self):
        epoch, i = divmod(self.served, self.chunks_per_epoch)
        if i == 0:
            self.state = None                       # fresh states at every epoch start
        s = i * self.context
        x = self.tracks[:, s:s + self.context].clone()
        y = self.tracks[:, s + 1:s + self.context + 1].clone()
        reset = self.resets[:, s:s + self.context].clone()
        if self.passkey_mix:
            self._mix_passkeys(x, y, reset)
        self.served += 1
        return x, y, reset

    def _mix_passkeys(self, x, y, reset):
        """Replace some tracks' chunks by a passkey document (whole, inside the chunk) followed by
        the stream; resets before and after the document. Drawn from (seed, chunk index): resumable."""
        rng = np.random.default_rng([self.seed, self.served])
        T = self.context
        for b in np.nonzero(rng.random(self.batch_size) < self.passkey_mix)[0]:
            key = f"{int(rng.integers(10000, 100000))}"
            dist = int(rng.integers(PASSKEY_MIN_DIST, T - PASSKEY_OVERHEAD + 1))
            text, _ = passkey_text(key, dist, rng)
            ids = torch.from_numpy(tokenizer.encode(text).astype(np.int64))
            n = len(ids)
            x[b, :n], y[b, :n - 1] = ids, ids[1:]
            y[b, n - 1] = x[b, n] if n < T else y[b, n - 1]
            reset[b, 0] = True
            if n < T:
                reset[b, n] = True

    def loss(self, model, batch):
        dev = next(model.parameters()).device
        x, y, reset = (t.to(dev) for t in batch)
        state = _to(self.state, dev) if self.state is not None else None
        _, new_state, loss = model(x, state, reset, targets=y)
        self.state = detach_state(new_state)
        return loss

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, model):
        metrics = evaluate_stream(model, self.val, self.batch_size, self.context, self.eval_chunks, self.doc_sep)
        self.last_val = metrics["val_loss"]       # the monitors' overfit rule reads it in on_eval
        return metrics

    def on_start(self, model, device, log):
        log.line(kernels.describe(model.config.kernels, device))

    def after_backward(self, model, step):
        self.monitor.accumulate_grads(model)

    def on_eval(self, model, step, log, state):
        stop = self.monitor.report(model, self.val, step, log, state, self.context, self.batch_size,
                                   self.last_val)
        if self.sample_tokens:
            from seqlab.char_task import sample
            text = sample(model, self.prompt, self.sample_tokens, seed=self.seed)
            log.line(f"Sample @ {step}: {text!r}")
            log.event("sample", step=step, prompt=self.prompt, text=text)
        return stop

    # ---- resume ---------------------------------------------------------------------------------
    def state_dict(self):
        return {"served": self.served, "state": self.state, "monitor": self.monitor.state_dict()}

    def load_state_dict(self, d):
        self.served, self.state = int(d["served"]), d["state"]
        self.monitor.load_state_dict(d.get("monitor", {}))

    def describe(self):
        return {"data_dir": str(self.data_dir), "n_train_tokens": int(self.tracks.numel()), "n_val_tokens": len(self.val),
                "tracks": self.batch_size, "track_len": self.track_len, "chunks_per_epoch": self.chunks_per_epoch,
                "doc_sep": self.doc_sep, "doc_starts_train": int(self.resets.sum()), "passkey_mix": self.passkey_mix}


def _to(state, dev):
    def m(x):
        if isinstance(x, torch.Tensor):
            return x.to(dev)
        if isinstance(x, (list, tuple)):
            return type(x)(m(v) for v in x)
        return x
    return {"pos": state["pos"], "layers": m(state["layers"])}


def stream_tracks(ids, n_tracks, context, max_chunks=0):
    """Contiguous tracks of a split: (n_tracks, n_chunks * context + 1) ids, cut at the chunk size."""
    track_len = len(ids) // n_tracks
    n_chunks = (track_len - 1) // context
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    if n_chunks < 1:
        raise UserError(f"{len(ids)} tokens cannot fill {n_tracks} tracks of one chunk of {context} + 1")
    return ids[:track_len * n_tracks].view(n_tracks, track_len)[:, :n_chunks * context + 1]


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
