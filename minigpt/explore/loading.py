"""Loading what the explorer shows: a checkpoint (with its tokenizer) and its run's metrics.jsonl,
and writing the page as one self-contained file (`minigpt explore --static`)."""
from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write_text
from ..runfolder import METRICS_FILE, CheckpointError, read_metrics, resolve_checkpoint
from ..training import load_checkpoint
from .data import Explorer
from .page import static_html

__all__ = ["find_metrics", "load_explorer", "write_static"]


def find_metrics(ckpt_dir: Path) -> Path | None:
    """metrics.jsonl of the run a checkpoint belongs to: beside `ckpt/` (run/ckpt), two levels
    up for a snapshot (run/snapshots/step-000500), or inside the checkpoint folder itself."""
    ckpt_dir = Path(ckpt_dir)
    candidates = [ckpt_dir / METRICS_FILE, ckpt_dir.parent / METRICS_FILE]
    if ckpt_dir.parent.name == "snapshots":
        candidates.append(ckpt_dir.parent.parent / METRICS_FILE)
    return next((c for c in candidates if c.is_file()), None)


def load_explorer(ckpt) -> Explorer:
    """An Explorer for a checkpoint or run directory (CheckpointError if it is not one)."""
    found = resolve_checkpoint(ckpt)
    model, tokenizer, _ = load_checkpoint(found)
    if tokenizer is None:
        raise CheckpointError(f"checkpoint {found} has no tokenizer files; the explorer needs "
                              "them to read a prompt")
    warnings = []
    metrics_file = find_metrics(found)
    metrics = read_metrics(metrics_file, warn=warnings.append) if metrics_file else []
    return Explorer(model, tokenizer, metrics=metrics, metrics_warnings=warnings,
                    source=str(ckpt))


def write_static(explorer: Explorer, prompt: str, out: Path, force: bool) -> None:
    """The page for `prompt` as one HTML file (ValueError: a folder, or exists without force)."""
    if out.is_dir():
        raise ValueError(f"--static {out} is a directory; give a file name such as {out}/page.html")
    if out.exists() and not force:
        raise ValueError(f"--static {out} exists; pass --force to replace it")
    ids = explorer.encode_prompt(prompt)
    html = static_html(explorer.info(), explorer.analysis(ids), prompt)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html)
