"""ASCII character tokenizer of the decision log: <PAD>=0, <UNK>=1, then '\\t', '\\n', 32..126.

99 ids in all. Anything outside the policy becomes <UNK>; decoding <UNK> gives U+FFFD.
"""
import numpy as np

PAD, UNK = 0, 1
ALPHABET = "\t\n" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = 2 + len(ALPHABET)  # 99

_ENCODE = np.full(128, UNK, dtype=np.uint8)
for _i, _c in enumerate(ALPHABET):
    _ENCODE[ord(_c)] = 2 + _i
_DECODE = np.array(["", "\ufffd"] + list(ALPHABET))


def encode(text):
    """str -> uint8 token ids (vectorised; non-ASCII code points map to <UNK>)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.full(codes.shape, UNK, dtype=np.uint8)
    ascii_ = codes < 128
    ids[ascii_] = _ENCODE[codes[ascii_]]
    return ids


def decode(ids):
    """token ids -> str (<PAD> decodes to nothing, <UNK> to U+FFFD)."""
    return "".join(_DECODE[np.asarray(ids, dtype=np.int64)])


def unk_rate(ids):
    """Fraction of tokens that are <UNK>."""
    return float((np.asarray(ids) == UNK).mean()) if len(ids) else 0.0
