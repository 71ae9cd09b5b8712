"""Char-level text datasets: prepare (encode + contiguous split) and serve windows.

A prepared folder holds train.npy / val.npy (uint8 token ids) and meta.json.
Windows are non-overlapping: window i is tokens [i*T, i*T + T + 1) (inputs + shifted targets).
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from seqlab.text import tokenizer
from seqlab.core.errors import UserError

MAX_UNK_RATE = 0.5  # above this the file is not text this tokenizer can learn from


def default_corpus():
    """English prose that ships with every CPython: the interpreter's help() topics."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def read_utf8(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} does not exist; pass an existing UTF-8 text file to --input")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 (bad byte at offset {e.start}); convert it, e.g. iconv -t UTF-8") from None


def prepare(text, out_dir, *, val_fraction=0.05, source="", overwrite=False):
    """Encode `text`, split it contiguously (first 1-f train, last f val), write the folder.

    Returns the meta dict. Refuses text that is mostly outside the ASCII policy.
    """
    if not text:
        raise UserError("the input text is empty; pass a non-empty UTF-8 file to --input")
    ids = tokenizer.encode(text)
    rate = tokenizer.unk_rate(ids)
    if rate > MAX_UNK_RATE:
        raise UserError(f"{rate:.1%} of the characters are outside printable ASCII (UNK rate); "
                        "this tokenizer needs mostly-ASCII text")
    n_val = int(round(len(ids) * val_fraction))
    if n_val < 2 or len(ids) - n_val < 2:
        raise UserError(f"{len(ids)} characters is too short to split with --val-fraction {val_fraction}")
    out = Path(out_dir)
    if out.exists() and (out / "meta.json").exists() and not overwrite:
        raise UserError(f"{out} already holds a prepared dataset; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    train, val = ids[:-n_val], ids[-n_val:]
    np.save(out / "train.npy", train)
    np.save(out / "val.npy", val)
    meta = {
        "kind": "char_text",
        "source": source,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "n_chars": len(ids),
        "n_train": len(train),
        "n_val": len(val),
        "val_fraction": val_fraction,
        "split": "contiguous: first (1-f) train, last f val",
        "unk_rate": rate,
        "vocab_size": tokenizer.VOCAB_SIZE,
        "alphabet": tokenizer.ALPHABET,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_split(data_dir, split):
    """Token ids of one split as an int64 tensor, with a clear error for a missing folder."""
    d = Path(data_dir)
    if not d.is_dir():
        raise UserError(f"data dir {d} does not exist; run scripts/prepare_text.py --out-dir {d} first")
    f = d / f"{split}.npy"
    if not f.is_file():
        raise UserError(f"{f} is missing: {d} is not a prepared text dataset; run scripts/prepare_text.py --out-dir {d}")
    ids = np.load(f)
    if ids.size == 0:
        raise UserError(f"{f} is empty; re-run scripts/prepare_text.py on a non-empty text")
    return torch.from_numpy(ids.astype(np.int64))


def n_windows(n_tokens, context):
    return (n_tokens - 1) // context


def window(ids, i, context):
    """(x, y) of non-overlapping window i: x = ids[iT:iT+T], y shifted by one."""
    s = i * context
    chunk = ids[s:s + context + 1]
    return chunk[:-1], chunk[1:]


class WindowSampler:
    """Shuffled windows, epoch after epoch, deterministic given the seed.

    Windows start every `stride` tokens: stride = context (the default) gives the decision
    log's non-overlapping windows; stride 1 gives every offset (as nanoGPT's random crops do).

    The only state is the number of windows served, so resume is exact: epoch e's order is
    a permutation drawn from a generator seeded with (seed, e). Under data parallelism each
    step serves a global batch of batch_size x world windows and rank r keeps its slice.
    """

    def __init__(self, ids, context, batch_size, seed, rank=0, world=1, stride=None):
        self.ids, self.context, self.batch_size, self.seed = ids, context, batch_size, seed
        self.rank, self.world, self.stride = rank, world, stride or context
        self.n = (len(ids) - 1 - context) // self.stride + 1 if len(ids) > context else 0
        if self.n < 1:
            raise UserError(f"train split has {len(ids)} tokens, fewer than context {context} + 1; "
                            "lower --context or use more text")
        self.served = 0
        self._epoch, self._order = -1, None

    def _order_of(self, epoch):
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.n, generator=g)
        return self._order

    def next_batch(self):
        idx = []
        first = self.served + self.rank * self.batch_size
        for j in range(first, first + self.batch_size):
            epoch, k = divmod(j, self.n)
            idx.append(int(self._order_of(epoch)[k]))
        self.served += self.batch_size * self.world
        chunks = [self.ids[i * self.stride:i * self.stride + self.context + 1] for i in idx]
        batch = torch.stack(chunks)
        return batch[:, :-1], batch[:, 1:]

    def state_dict(self):
        return {"served": self.served}

    def load_state_dict(self, state):
        self.served = int(state["served"])
