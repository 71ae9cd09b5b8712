"""Train SpacingMDN without memory (E0) on a spacing dataset (data/continuous_2M or smaller).

    python src/train_mdn.py --data-dir data/continuous_2M --out-dir out/E0_baseline --seed 7
    python src/train_mdn.py --data-dir data/continuous_2M --out-dir out/E0_cpu --preset cpu

Linear(1, D) spacing input, learned positions, the shared causal blocks, a K-component
Gaussian mixture head; teacher-forced NLL on every position minus --entropy-reg x the
entropy of the mixture weights. Samples are sliding windows over the flattened train stream.
Defaults are the original GPU run's (--preset gpu); --preset cpu is a small fast config.
The val metric val_nll is nats per spacing averaged over all positions of the val windows.
"""
from seqlab.core import cli
from seqlab.mdn import task as mdn_task
from seqlab.mdn.model import MDNConfig, SpacingMDN


def main(argv=None):
    args = mdn_task.parse(mdn_task.build_parser(__doc__, SpacingMDN.family), argv)
    return mdn_task.train(args, SpacingMDN, MDNConfig, mdn_task.base_config(args))


if __name__ == "__main__":
    cli.run(main)
