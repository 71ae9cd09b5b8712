"""Train the RWKV/Mamba hybrid char LM (family 3) with state handoff, on a prepared text folder.

    python src/train_hybrid.py --data-dir data/pydoc --out-dir out/hybrid_base
    python src/train_hybrid.py --data-dir data/shk --out-dir out/pureR --layout RRRRRR --n-layer 6

Defaults follow the user's notes: 12 layers x 256, layout RMRMRMARMRMR (attention at index 6),
layer scale 0.01, chunks of 256 tokens on --batch-size parallel tracks with carried state,
AdamW with linear warmup 2000 then cosine, decay/dt/A parameters at --recurrent-lr-mult x LR.
Monitors (grad ratio, collapse, decay, selectivity, plateau rules) report at every eval;
--stop-on-red-flags makes a failed rule stop the run.
"""
from seqlab.core import cli, distributed, engine
from seqlab.core.errors import UserError
from seqlab.hybrid.task import HybridTask
from seqlab.hybrid.model import DEFAULT_LAYOUT, HybridConfig, HybridLM, check_layout
from seqlab.hybrid.scan import MAX_CHUNK

FAMILY = "hybrid"


def build_parser():
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    cli.add_train_args(p, max_steps=10000, eval_every=250, batch_size=8, lr=1e-3, n_layer=None, n_head=4, n_embd=256)
    p.set_defaults(schedule="cosine", warmup=2000)
    g = p.add_argument_group("hybrid model")
    g.add_argument("--layout", default=None,
                   help=f"one letter per layer: R RWKV, M Mamba, A attention, P R+M blend; sets --n-layer when that "
                        f"is not given (default {DEFAULT_LAYOUT} for 12 layers, else R/M alternating, A in the middle)")
    g.add_argument("--context", type=cli.positive_int, default=256, help="tokens per chunk per track (= attention window)")
    g.add_argument("--d-state", type=cli.positive_int, default=16, help="Mamba state size N")
    g.add_argument("--alpha", type=cli.fraction, default=0.6, help="P layers: RWKV share of the blend")
    g.add_argument("--learnable-alpha", action="store_true")
    g.add_argument("--gamma-init", type=cli.positive_float, default=0.01, help="layer-scale init of every residual update")
    g.add_argument("--state-norm-groups", type=cli.nonneg_int, default=0, help="StateNorm groups at chunk boundaries (0: off)")
    g.add_argument("--tie-embeddings", action="store_true")
    g.add_argument("--pos-emb", action="store_true", help="learned chunk-relative positions (use for attention-only layouts)")
    g.add_argument("--scan-chunk", type=cli.positive_int, default=16, help=f"chunk of the parallel scans (<= {MAX_CHUNK})")
    g.add_argument("--scan", choices=["auto", "chunked", "sequential"], default="auto",
                   help="scan form: auto = chunked (the fast exact forms), chunked, or sequential (the reference)")
    g.add_argument("--kernels", choices=["torch", "auto"], default="torch",
                   help="recurrence backend: torch = the pure-PyTorch scans (--scan); auto uses fla (RWKV) / mamba_ssm "
                        "(Mamba) on CUDA when importable, for chunks without a reset, and falls back to the "
                        "pure-PyTorch scans otherwise")
    g = p.add_argument_group("hybrid training")
    g.add_argument("--recurrent-lr-mult", type=cli.positive_float, default=1.0, help="LR multiplier of decay/dt/A parameters")
    g.add_argument("--doc-sep", default="", help="separator string; the token after each occurrence resets every state")
    g.add_argument("--passkey-mix", type=cli.nonneg_float, default=0.0, help="probability a track's chunk is a passkey document")
    g.add_argument("--eval-chunks", type=cli.nonneg_int, default=0, help="val chunks per track per eval (0: the whole val split)")
    g.add_argument("--stop-on-red-flags", action="store_true", help="stop when a monitor rule fails")
    g.add_argument("--prompt", default="The ")
    g.add_argument("--sample-tokens", type=cli.nonneg_int, default=200)
    return p


def default_layout(n_layer):
    if n_layer == 12:
        return DEFAULT_LAYOUT
    layout = ["RM"[i % 2] for i in range(n_layer)]
    if n_layer >= 3:
        layout[n_layer // 2] = "A"
    return "".join(layout)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.n_layer is None:          # --layout alone fixes the depth; neither: the default 12 layers
        args.n_layer = len(args.layout) if args.layout else 12
    args.doc_sep = args.doc_sep.encode().decode("unicode_escape")   # "\n\n" on the shell means two newlines
    if args.passkey_mix > 1:
        raise UserError(f"--passkey-mix {args.passkey_mix} is a probability; pass a value in [0, 1]")
    resume = engine.begin(args, FAMILY)
    if resume:
        config = HybridConfig(**resume["model_config"])
        config.kernels = args.kernels         # may change on resume (engine.RESUME_MUTABLE): same maths
    else:
        layout = args.layout or default_layout(args.n_layer)
        err = check_layout(layout, args.n_layer) if args.layout else None
        if err:
            raise UserError(err)
        if args.n_embd % args.n_head:
            raise UserError(f"--n-embd {args.n_embd} must be divisible by --n-head {args.n_head}")
        if args.state_norm_groups and (args.n_embd // args.n_head) % args.state_norm_groups:
            raise UserError(f"--state-norm-groups {args.state_norm_groups} must divide the head size {args.n_embd // args.n_head}")
        if args.scan_chunk > MAX_CHUNK:
            raise UserError(f"--scan-chunk {args.scan_chunk} > {MAX_CHUNK} could overflow float32 in the RWKV scan")
        config = HybridConfig(context=args.context, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                              layout=layout, d_state=args.d_state, alpha=args.alpha, learnable_alpha=args.learnable_alpha,
                              gamma_init=args.gamma_init, state_norm_groups=args.state_norm_groups,
                              tie_embeddings=args.tie_embeddings, chunk=args.scan_chunk, scan=args.scan,
                              kernels=args.kernels, pos_emb=args.pos_emb)
    task = HybridTask(args.data_dir, config.context, args.batch_size, args.seed, args.doc_sep, args.passkey_mix,
                      args.eval_chunks, {"stop_on_red_flags": args.stop_on_red_flags}, args.prompt, args.sample_tokens,
                      *distributed.env_rank_world())   # under torchrun: this rank's share of the global tracks
    model = HybridLM(config)
    task.lr_mults = {name: args.recurrent_lr_mult for name in model.recurrent_names()} if args.recurrent_lr_mult != 1 else None
    return engine.fit(model, task, args, resume)


if __name__ == "__main__":
    cli.run(main)
