"""Plots drawn from run folders (matplotlib, Agg backend: no display needed)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqlab.core.runfolder import read_metrics  # noqa: E402


def loss_curve(metrics_path, png_path, metric="val_loss"):
    """Train loss (per logging interval) and the val metric against step, one PNG."""
    rows = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in rows if r["event"] == "train"]
    val = [(r["step"], r[metric]) for r in rows if r["event"] == "eval" and metric in r]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    if train:
        ax.plot(*zip(*train), lw=1, alpha=0.7, label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", ms=3, lw=1.5, label=metric)
        best = min(val, key=lambda sv: sv[1])
        ax.annotate(f"best {best[1]:.4f} @ {best[0]}", best, textcoords="offset points", xytext=(5, 10), fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(Path(metrics_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def run_loss_curve(ckpt_path, out_dir, metric="val_loss"):
    """The loss curve of the run folder a checkpoint sits in, drawn into out_dir (None if the
    checkpoint is not in a run folder, e.g. a promoted copy in checkpoints/)."""
    metrics_file = Path(ckpt_path).parent / "metrics.jsonl"
    if not metrics_file.is_file():
        return None
    return loss_curve(metrics_file, Path(out_dir) / "loss_curve.png", metric)


def finish_grid(fig, png_path, title):
    """Title, the margins of the telescope's 2 x 3 panel figures, save, close; returns png_path."""
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.07, top=0.91, hspace=0.3, wspace=0.22)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
