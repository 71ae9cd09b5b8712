"""A-K diagnostics of a POSTFIX memory checkpoint (E3-E5), PASS/WARN against the user's targets.

    python src/diagnose_memory_postfix.py --ckpt checkpoints/E5_best.pt --data-dir data/continuous_2M \
        --output-dir results/E5

Definitions of A-K: src/seqlab/mdn/diagnostics.py. Deterministic given --seed (eval mode,
the checkpoint's evaluation slot IDs, seeded rollouts and bootstrap). Appends one JSON row to
<output-dir>/postfix_diagnostics.jsonl and writes postfix_diagnostics.png (one panel per letter).
--ckpt-glob 'out/E5_seed*/best.pt' (instead of --ckpt) diagnoses each match and writes the mean +- std of
every value over them to <output-dir>/postfix_diagnostics_seeds.json (src/seqlab/mdn/seeds.py).
"""
from seqlab.core import cli
from seqlab.mdn import diagnostics as memory_diagnostics, seeds


def main(argv=None):
    def one(a):
        return memory_diagnostics.cli_main(a, "mdn_postfix", "postfix_diagnostics", __doc__)
    return seeds.over_checkpoints(argv, one, "postfix_diagnostics")


if __name__ == "__main__":
    cli.run(main)
