"""Family 1's task for the engine: next-char cross-entropy on non-overlapping windows,
plus the metrics and sampling that eval_char.py shares with training."""
import math

import torch
import torch.nn.functional as F

from seqlab.text import data as text_data, tokenizer
from seqlab.core import paths
from seqlab.core.errors import UserError


class CharTask:
    """Next-char cross-entropy on shuffled non-overlapping train windows; val over all windows."""
    family, metric = "char", "val_loss"

    def __init__(self, data_dir, context, batch_size, seed, eval_windows=0, prompt="The ", sample_tokens=200,
                 rank=0, world=1, stride=None):
        self.data_dir, self.context = data_dir, context
        train, self.val = text_data.load_split(data_dir, "train"), text_data.load_split(data_dir, "val")
        if len(self.val) < context + 1:
            raise UserError(f"val split has {len(self.val)} tokens, fewer than context {context} + 1; "
                            "lower --context or prepare with a larger --val-fraction")
        self.sampler = text_data.WindowSampler(train, context, batch_size, seed, rank, world, stride)
        n_val = text_data.n_windows(len(self.val), context)
        self.n_val_windows = min(n_val, eval_windows) if eval_windows else n_val
        self.batch_size, self.seed, self.prompt, self.sample_tokens = batch_size, seed, prompt, sample_tokens

    def next_batch(self):
        return self.sampler.next_batch()

    def loss(self, model, batch):
        dev = next(model.parameters()).device
        x, y = (t.to(dev, non_blocking=True) for t in batch)
        return model(x, y)[1]

    def evaluate(self, model):
        return evaluate_split(model, self.val, self.context, self.batch_size, self.n_val_windows)

    def on_eval(self, model, step, log, state):
        if self.sample_tokens:
            text = sample(model, self.prompt, self.sample_tokens, seed=self.seed)
            log.line(f"Sample @ {step}: {text!r}")
            log.event("sample", step=step, prompt=self.prompt, text=text)

    def state_dict(self):
        return self.sampler.state_dict()

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state)

    def describe(self):
        return {"data_dir": paths.shown(self.data_dir), "n_train_tokens": len(self.sampler.ids), "n_val_tokens": len(self.val),
                "train_windows": self.sampler.n, "val_windows_scored": self.n_val_windows}


def evaluate_split(model, ids, context, batch_size, n_windows=None):
    """Mean next-char cross-entropy (nats/char) over non-overlapping windows, plus bits/char and perplexity."""
    dev = next(model.parameters()).device
    n = n_windows or text_data.n_windows(len(ids), context)
    total, count = 0.0, 0
    for start in range(0, n, batch_size):
        xs, ys = zip(*(text_data.window(ids, i, context) for i in range(start, min(n, start + batch_size))))
        x, y = torch.stack(xs).to(dev), torch.stack(ys).to(dev)
        logits = model(x)
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"))
        count += y.numel()
    loss = total / count
    return {"val_loss": loss, "val_bpc": loss / math.log(2), "val_ppl": math.exp(loss), "val_tokens": count}


def sample(model, prompt, n_tokens, temperature=1.0, top_k=None, seed=0):
    """Text continuation of `prompt`, from a private generator seeded with `seed`."""
    dev = next(model.parameters()).device
    ids = torch.as_tensor(tokenizer.encode(prompt or "\n"), dtype=torch.long, device=dev)[None]
    was_training = model.training
    model.eval()
    out = model.generate(ids, n_tokens, temperature, top_k, generator=torch.Generator().manual_seed(seed))
    model.train(was_training)
    return tokenizer.decode(out[0, ids.size(1):].tolist())
