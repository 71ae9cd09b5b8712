"""A-K diagnostics of a PREFIX memory checkpoint (E1/E2): the letters that apply to slots that
cannot see the data (D, I, J are N/A: no readout, nothing to attend to, no slot-ID table).

    python src/diagnose_memory.py --ckpt checkpoints/E1_prefix_best.pt --data-dir data/continuous_2M \
        --output-dir results/E1_prefix

Definitions: src/seqlab/mdn/diagnostics.py. Appends one JSON row to
<output-dir>/prefix_diagnostics.jsonl and writes prefix_diagnostics.png.
--ckpt-glob 'out/E5_seed*/best.pt' (instead of --ckpt) diagnoses each match and writes the mean +- std of
every value over them to <output-dir>/prefix_diagnostics_seeds.json (src/seqlab/mdn/seeds.py).
"""
from seqlab.core import cli
from seqlab.mdn import diagnostics as memory_diagnostics, seeds


def main(argv=None):
    def one(a):
        return memory_diagnostics.cli_main(a, "mdn_prefix", "prefix_diagnostics", __doc__)
    return seeds.over_checkpoints(argv, one, "prefix_diagnostics")


if __name__ == "__main__":
    cli.run(main)
