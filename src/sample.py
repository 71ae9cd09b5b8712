"""Sample from a checkpoint in the shell: no eval folder, nothing written.

    python src/sample.py --ckpt checkpoints/H1_passkey_RMRM_best.pt --prompt "ROMEO:" --top-k 20
    python src/sample.py --ckpt out/char_base/best.pt --interactive          # each line typed is a prompt
    python src/sample.py --ckpt checkpoints/E0_count32_cpu8k_best.pt --max-new-tokens 20   # spacings

char and hybrid checkpoints continue the prompt (the hybrid reads it as a stream and generates with
its one-token step form and carried state; with --keep-state the state also carries from one
interactive line to the next, so the model remembers the session). MDN checkpoints print
--max-new-tokens spacings sampled one at a time from a val context of the run's data (sliding
window of the model's context); for long samples and their statistics (against the data, GUE,
Wigner i.i.d. and AR, with the prime lines) use src/generate_spectra.py.
"""
import sys

import torch

from seqlab.core import checkpoint, cli, device
from seqlab.core.errors import UserError
from seqlab.text import tokenizer

TEXT_FAMILIES = ("char", "hybrid")
MDN_FAMILIES = ("mdn", "mdn_prefix", "mdn_postfix")


def continue_text(model, prompt, n_tokens, temperature, top_k, generator, state=None):
    """(continuation text, state after it). A hybrid's `state` is what it read before the prompt
    (None: fresh); a char model sees only the prompt, cropped to its context."""
    dev = next(model.parameters()).device
    ids = torch.as_tensor(tokenizer.encode(prompt or "\n"), dtype=torch.long, device=dev)[None]
    if model.family != "hybrid":
        out = model.generate(ids, n_tokens, temperature, top_k, generator=generator)
        return tokenizer.decode(out[0, ids.size(1):].tolist()), None
    out, state = model.generate(ids, n_tokens, temperature, top_k, generator, state=state, return_state=True)
    return tokenizer.decode(out[0, ids.size(1):].tolist()), state


def sample_spacings(model, ckpt, data_dir, n, generator):
    """n spacings drawn one at a time from the model's mixture, fed back, from the first val window
    (a height-aware model is told the height L = log(T / 2 pi) at the end of that window)."""
    from seqlab.mdn import evaluate as mdn_eval, heights, mixture
    from seqlab.zeta import spacings as spacing_data
    val = spacing_data.load_split(data_dir, "val")
    ctx = model.config.context
    history = mdn_eval.windows(val, ctx)[:1].double()
    height = None
    if heights.uses_height(model.config):
        height = heights.log_heights(spacing_data.load_meta(data_dir), "val", ctx)[-1:]
    step = mdn_eval.model_stepper(model, height)
    for _ in range(n):
        nxt = mixture.sample(step(history), generator, positive=True)
        history = torch.cat([history, nxt.double()[:, None]], 1)
    return history[0, ctx:].tolist()


def main(argv=None, stdin=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint of any family (best.pt, last.pt, ckpt_<step>.pt, checkpoints/*.pt)")
    p.add_argument("--data-dir", default=None, help="MDN only: dataset whose val split gives the context (default: the run's)")
    p.add_argument("--prompt", default="The ", help="text to continue (char, hybrid)")
    p.add_argument("--interactive", action="store_true", help="read prompts from standard input, one per line, until EOF")
    p.add_argument("--keep-state", action="store_true", help="hybrid, interactive: carry the state across lines")
    p.add_argument("--temperature", type=cli.positive_float, default=1.0)
    p.add_argument("--top-k", type=cli.positive_int, default=None, help="sample from the k most likely (default: all)")
    p.add_argument("--max-new-tokens", type=cli.positive_int, default=200, help="characters (text) or spacings (MDN)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    model, ckpt = checkpoint.load_model(args.ckpt)
    model.to(device.pick(args.device))
    gen = torch.Generator().manual_seed(args.seed)
    family = ckpt["family"]
    if family in MDN_FAMILIES:
        if args.interactive:
            raise UserError("--interactive needs a text model (char or hybrid); this is an MDN checkpoint")
        data_dir = args.data_dir or ckpt["data_info"]["data_dir"]
        s = sample_spacings(model, ckpt, data_dir, args.max_new_tokens, gen)
        print(" ".join(f"{x:.4f}" for x in s))
        return s
    if family not in TEXT_FAMILIES:
        raise UserError(f"{args.ckpt} is a '{family}' checkpoint; sample.py knows {TEXT_FAMILIES + MDN_FAMILIES}")
    with torch.no_grad():
        if not args.interactive:
            text, _ = continue_text(model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, gen)
            print(args.prompt + text)
            return text
        stdin = stdin or sys.stdin
        if stdin.isatty():
            print(f"{family} model, step {ckpt['step']}: type a prompt and press enter (Ctrl-D ends)", file=sys.stderr)
        outs, state = [], None
        for line in stdin:
            prompt = line.rstrip("\n")
            text, new_state = continue_text(model, prompt, args.max_new_tokens, args.temperature, args.top_k, gen,
                                            state if args.keep_state else None)
            state = new_state if args.keep_state else None
            print(prompt + text, flush=True)
            outs.append(text)
        return outs


if __name__ == "__main__":
    cli.run(main)
