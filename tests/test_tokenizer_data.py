import numpy as np
import pytest

from seqlab.text import data as text_data, tokenizer
from seqlab.core.errors import UserError


def test_vocab_layout():
    assert tokenizer.VOCAB_SIZE == 99
    assert tokenizer.PAD == 0 and tokenizer.UNK == 1
    ids = tokenizer.encode("\t\n ~")
    assert ids.tolist() == [2, 3, 4, 98]


def test_round_trip_ascii():
    text = "Hello,\tworld!\n{[(~)]} 0123456789 `'\"\\"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_unk_mapping_and_rate():
    ids = tokenizer.encode("café €1 😀\x07")
    assert ids.tolist().count(tokenizer.UNK) == 4  # é, €, the emoji, the bell control char
    assert tokenizer.decode(ids) == "caf\ufffd \ufffd1 \ufffd\ufffd"
    assert tokenizer.unk_rate(ids) == pytest.approx(4 / 10)


def test_split_is_contiguous(tmp_path):
    text = "".join(chr(32 + i % 95) for i in range(5000))
    meta = text_data.prepare(text, tmp_path / "d", val_fraction=0.05)
    train, val = np.load(tmp_path / "d/train.npy"), np.load(tmp_path / "d/val.npy")
    assert len(val) == 250 and meta["n_train"] == 4750
    assert np.array_equal(np.concatenate([train, val]), tokenizer.encode(text))


def test_prepare_refuses_bad_text(tmp_path):
    with pytest.raises(UserError, match="empty"):
        text_data.prepare("", tmp_path / "e")
    with pytest.raises(UserError, match="UNK rate"):
        text_data.prepare("данные " * 100, tmp_path / "r")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        text_data.read_utf8(bad)
    assert not (tmp_path / "e").exists() and not (tmp_path / "r").exists()


def test_prepare_does_not_overwrite(tmp_path):
    text_data.prepare("abc " * 100, tmp_path / "d")
    with pytest.raises(UserError, match="--overwrite"):
        text_data.prepare("xyz " * 100, tmp_path / "d")
    assert tokenizer.decode(np.load(tmp_path / "d/train.npy"))[:4] == "abc "


def test_window_sampler_is_deterministic_and_resumable():
    import torch
    ids = torch.arange(1000)
    a = text_data.WindowSampler(ids, 16, 5, seed=1)
    batches = [a.next_batch() for _ in range(30)]  # crosses epoch boundaries (62 windows)
    b = text_data.WindowSampler(ids, 16, 5, seed=1)
    for _ in range(11):
        b.next_batch()
    c = text_data.WindowSampler(ids, 16, 5, seed=1)
    c.load_state_dict(b.state_dict())
    for x, y in batches[11:]:
        cx, cy = c.next_batch()
        assert torch.equal(x, cx) and torch.equal(y, cy)
    x, y = batches[0]
    assert torch.equal(y[:, :-1], x[:, 1:])  # targets are the inputs shifted by one
    assert (x[:, 0] % 16 == 0).all()  # non-overlapping windows start at multiples of the context
    first_epoch = torch.cat([bx[:, 0] for bx, _ in batches[:13]])[:62] // 16
    assert sorted(first_epoch.tolist()) == list(range(62))  # each window once per epoch
