"""Train SpacingMDN with PREFIX memory (E1/E2): M learned slots placed BEFORE the data.

    python src/train_mdn_memory.py --data-dir data/continuous_2M --out-dir out/E1_prefix --seed 7

Under causal attention a slot at position m sees only slots <= m, never the data: its state
is the same for every input, so PREFIX memory can act only as a learned bias ("decorative"
memory, as E1/E2 found). Kept for comparison with POSTFIX (src/train_mdn_postfix.py), where
slots come after the data and read it. Teacher-forced NLL on every data position, as E0.
"""
from seqlab.core import cli
from seqlab.mdn import task as mdn_task
from seqlab.mdn.memory import PrefixConfig, PrefixMDN


def main(argv=None):
    p = mdn_task.build_parser(__doc__, PrefixMDN.family)
    p.add_argument_group("PREFIX memory").add_argument("--n-memory-slots", type=cli.positive_int, default=8)
    args = mdn_task.parse(p, argv)
    config = dict(mdn_task.base_config(args), n_memory_slots=args.n_memory_slots)
    return mdn_task.train(args, PrefixMDN, PrefixConfig, config)


if __name__ == "__main__":
    cli.run(main)
