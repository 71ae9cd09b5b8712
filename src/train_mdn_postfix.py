"""Train SpacingMDN with POSTFIX memory (E3-E5): M slots placed after the data.

    python src/train_mdn_postfix.py --data-dir data/continuous_2M --out-dir out/E5_ortho \
        --seed 7 --slot-id-mode permute_per_batch --use-aux-loss --early-stop --patience 800 \
        --batch-size 512 --use-amp

Slots attend to all data, data never attends to slots (and never to the future); the readout
pools the slot states with learnable weights and the mixture head predicts the next spacing
s_T from s_0..s_{T-1}: one prediction per window, so val_nll is nats per spacing at the last
position only (compare with E0's val_nll_last, not its val_nll over all positions).
ID-Detox = --slot-id-mode permute_per_batch: a fresh slot-ID permutation for every training
batch. Evaluation is deterministic (--eval-slot-id-mode, default fixed identity).
Samples are sliding windows over the flattened train stream.
"""
from seqlab.core import cli
from seqlab.mdn import task as mdn_task
from seqlab.mdn.memory import (AUX_MODES, AUX_STATS, CONTENT_MODES, EVAL_SLOT_ID_MODES, SLOT_ID_MODES,
                                      PostfixConfig, PostfixMDN)


def build_parser():
    p = mdn_task.build_parser(__doc__, PostfixMDN.family)
    p.set_defaults(val_stride=32)
    g = p.add_argument_group("POSTFIX memory")
    g.add_argument("--n-memory-slots", type=cli.positive_int, default=8)
    g.add_argument("--slot-id-mode", choices=SLOT_ID_MODES, default="fixed",
                   help="slot-ID embedding in training: fixed (slot m gets ID m), off (none), "
                        "permute_per_batch (ID-Detox: a random ID permutation per batch)")
    g.add_argument("--eval-slot-id-mode", choices=EVAL_SLOT_ID_MODES, default=None,
                   help="slot IDs at evaluation: fixed identity (default; 'off' when training with off)")
    g.add_argument("--content-mode", choices=CONTENT_MODES, default="normal",
                   help="normal: learned slot content; zeroed: slots carry only their ID")
    g.add_argument("--use-aux-loss", action="store_true",
                   help="Q3-proxy: slots predict z-scored statistics of the input window: " + ", ".join(AUX_STATS))
    g.add_argument("--aux-mode", choices=AUX_MODES, default="mean",
                   help="mean: the mean slot state predicts all 8 statistics; diagonal: slot j%%M predicts statistic j")
    g.add_argument("--aux-weight", type=cli.nonneg_float, default=0.1)
    g.add_argument("--aux-ramp-steps", type=cli.nonneg_int, default=1000, help="aux weight ramps up linearly over these steps")
    g.add_argument("--perm-warmup-steps", type=cli.nonneg_int, default=0,
                   help="with permute_per_batch: keep the slot IDs fixed for the first N steps, then permute")
    g.add_argument("--use-ortho-loss", action="store_true", help="penalise squared cosine similarity between slot states")
    g.add_argument("--ortho-weight", type=cli.nonneg_float, default=0.01)
    g.add_argument("--memory-lr-mult", type=cli.positive_float, default=0.3,
                   help="LR multiplier of the memory parameters (slot content, IDs, readout, aux head)")
    return p


def main(argv=None):
    args = mdn_task.parse(build_parser(), argv)
    eval_mode = args.eval_slot_id_mode or ("off" if args.slot_id_mode == "off" else "fixed")
    config = dict(mdn_task.base_config(args), n_memory_slots=args.n_memory_slots, slot_id_mode=args.slot_id_mode,
                  eval_slot_id_mode=eval_mode, content_mode=args.content_mode, use_aux_loss=args.use_aux_loss,
                  aux_mode=args.aux_mode, aux_weight=args.aux_weight, aux_ramp_steps=args.aux_ramp_steps,
                  perm_warmup_steps=args.perm_warmup_steps,
                  use_ortho_loss=args.use_ortho_loss, ortho_weight=args.ortho_weight)
    return mdn_task.train(args, PostfixMDN, PostfixConfig, config, lr_mults={"memory.": args.memory_lr_mult})


if __name__ == "__main__":
    cli.run(main)
