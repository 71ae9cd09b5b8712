"""Prepare a char-level dataset: UTF-8 text -> ASCII token ids, contiguous train/val split.

    python scripts/prepare_text.py                          # the embedded default corpus -> data/pydoc/
    python scripts/prepare_text.py --input notes.txt        # -> data/notes/

The embedded default is English prose that ships with Python itself (the help() topics of
pydoc_data), so a fresh machine can train without downloading anything.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.core import cli  # noqa: E402
from seqlab.text import data as text_data  # noqa: E402


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=None, help="UTF-8 text file (default: the embedded pydoc corpus)")
    p.add_argument("--out-dir", default=None, help="output folder (default data/<input name>/)")
    p.add_argument("--val-fraction", type=cli.fraction, default=0.05, help="last fraction of the text used as val")
    p.add_argument("--overwrite", action="store_true", help="replace an existing prepared folder")
    args = p.parse_args(argv)
    if args.input is None:
        text, source, name = text_data.default_corpus(), "embedded: pydoc_data.topics (CPython help texts)", "pydoc"
    else:
        text, source, name = text_data.read_utf8(args.input), str(args.input), Path(args.input).stem
    out = Path(args.out_dir or f"data/{name}")
    meta = text_data.prepare(text, out, val_fraction=args.val_fraction, source=source, overwrite=args.overwrite)
    print(f"{source}: {meta['n_chars']:,} chars, UNK rate {meta['unk_rate']:.4%} -> {out}/ "
          f"(train {meta['n_train']:,}, val {meta['n_val']:,}; vocab {meta['vocab_size']})")
    return meta


if __name__ == "__main__":
    cli.run(main)
