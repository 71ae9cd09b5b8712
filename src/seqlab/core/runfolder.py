"""The run-folder contract: config.json, metrics.jsonl, train.log, best.pt, last.pt.

A folder is never reused without --resume or --overwrite, and --overwrite only deletes a
folder that is a run folder (has config.json), never an arbitrary directory.
"""
import json
import shutil
import time
from pathlib import Path

from seqlab.core.errors import UserError

RUN_FILES = ("config.json", "metrics.jsonl", "train.log", "best.pt", "last.pt")


def check(out_dir, resume, overwrite):
    """Raise UserError if the run folder cannot be used as asked; touches nothing."""
    out = Path(out_dir)
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out-dir {out} is a file, not a folder")
    occupied = out.is_dir() and any(out.iterdir())
    if resume:
        if not (out / "last.pt").is_file():
            raise UserError(f"--resume: {out} has no last.pt to resume from; start without --resume")
        return out
    if occupied:
        if not overwrite:
            raise UserError(f"{out} already holds files; pass --resume to continue that run or --overwrite to replace it")
        if not (out / "config.json").is_file():
            raise UserError(f"--overwrite: {out} is not a run folder (no config.json); refusing to delete it")
    return out


def create(out_dir, resume, overwrite):
    """Check, then make the run folder (deleting the old run under --overwrite). Returns its Path."""
    out = check(out_dir, resume, overwrite)  # again: another process may have started a run here since
    if overwrite and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        try:  # claim the folder atomically: a second run started at the same moment fails here
            (out / "config.json").open("x").close()
        except FileExistsError:
            raise UserError(f"another run is starting in {out}; pick another --out-dir") from None
    return out


class RunLog:
    """Human lines to stdout + train.log, events to metrics.jsonl (append-only, flushed).

    `enabled=False` (non-zero DDP ranks) makes every call a no-op.
    """

    def __init__(self, out, enabled=True, echo=print):
        self.enabled, self.echo = enabled, echo
        if enabled:
            self._log = open(Path(out) / "train.log", "a", buffering=1)
            self._jsonl = open(Path(out) / "metrics.jsonl", "a", buffering=1)

    def line(self, text):
        if self.enabled:
            self.echo(text)
            self._log.write(text + "\n")

    def event(self, event, **fields):
        if self.enabled:
            self._jsonl.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
            self._jsonl.flush()

    def close(self):
        if self.enabled:
            self._log.close()
            self._jsonl.close()


def read_metrics(path):
    """All rows of a metrics.jsonl (a truncated last line, e.g. after a kill, is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
