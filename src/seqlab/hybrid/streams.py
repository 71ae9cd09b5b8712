"""Text streams of family 3: parallel tracks of one stream, document starts, passkey documents."""
import numpy as np
import torch

from seqlab.core.errors import UserError
from seqlab.text import tokenizer


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


def move_state(state, dev):
    """A carried state dict with its tensors on `dev`."""
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
