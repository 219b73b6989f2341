"""Language-model pretraining (the paper's L1 objective) with safe, exactly resumable checkpoints.

A run directory holds:
    ckpt/          the latest checkpoint (see checkpoint.py), replaced by a crash-proof swap
    snapshots/     with snapshot_every N: step-000500/ ... a checkpoint (weights, tokenizer,
                   state.json; no optimizer state) at every multiple of N and at the last
                   step, for accuracy-vs-pretraining-steps curves; each is loadable like ckpt/
    metrics.jsonl  one JSON line per step: step, loss, lr, tokens/s, and val_loss when evaluated
    loss.png       the loss curves (written at the end, when matplotlib is installed)
    .lock          while a process trains there (see loop.py)

Every argument and input (ranges, preset, corpus) is checked before the run directory is
touched; the folder guard, lock, Ctrl-C, progress bar and NaN stop are loop.py's, shared with
fine-tuning.

Resuming restores weights, Adam moments, the step, and both random streams (dropout and batch
sampling), so a run stopped and resumed follows the uninterrupted run's loss curve exactly.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import random as mgrandom
from ..autograd import no_grad
from ..checks import (check_fields, fraction, nonneg_float, nonneg_int, positive_float,
                      positive_int, short_list)
from ..model import GPT, GPTConfig
from ..optim import Adam, warmup_cosine
from .checkpoint import (CheckpointError, clean_leftovers, find_checkpoint, load_checkpoint,
                         names_with_leftovers, resolve_checkpoint, save_checkpoint)
from .loop import Run, RunDirectory, TrainingError, read_metrics, run_loop, write_metrics

__all__ = ["TrainConfig", "TRAIN_RULES", "pretrain", "evaluate", "evaluate_full", "plot_losses",
           "snapshot_name", "SNAPSHOTS"]

RESUME_KEYS = ("step", "train_config", "data_rng", "dropout_rng", "optimizer")
SNAPSHOTS = "snapshots"


def snapshot_name(step: int) -> str:
    """The folder name of the snapshot taken after update `step`: step-000500."""
    return f"step-{step:06d}"


# the documented range of each numeric TrainConfig field (the CLI checks the same at parse time)
TRAIN_RULES = {
    "bpe_vocab_size": positive_int, "steps": positive_int, "batch_size": positive_int,
    "block_size": positive_int, "n_layer": positive_int, "n_embd": positive_int,
    "n_head": positive_int, "lr": positive_float, "warmup": nonneg_int,
    "weight_decay": nonneg_float, "max_grad_norm": positive_float, "dropout": fraction,
    "eval_interval": positive_int, "eval_batches": positive_int, "ckpt_interval": positive_int,
    "snapshot_every": positive_int, "seed": nonneg_int,
}


@dataclass
class TrainConfig:
    """Pretraining arguments; a value outside its range (TRAIN_RULES) is a ValueError here."""
    data: str = "shakespeare"
    preset: str = "tiny"
    tokenizer: str = "char"          # "char" or "bpe"
    bpe_vocab_size: int = 1000
    bpe_keep_case: bool = False       # True: BPE keeps capitals and accents (GPT-1's lowercases)
    bpe_keep_newlines: bool = False   # True: each "\n" is a token of its own (GPT-1's: a space)
    steps: int | None = 1000          # None with resume: keep the checkpoint's own
    batch_size: int = 32
    block_size: int | None = None     # default: the preset's n_ctx
    n_layer: int | None = None        # override the preset's depth, width and heads
    n_embd: int | None = None
    n_head: int | None = None
    lr: float = 2.5e-4                # GPT-1's max lr; small models like more (demo: 2e-3)
    warmup: int = 100                 # GPT-1: 2000 updates
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    dropout: float | None = None      # override the preset's dropout (all three)
    eval_interval: int = 100
    eval_batches: int = 8
    ckpt_interval: int = 200
    snapshot_every: int | None = None  # keep OUT/snapshots/step-000500/ ... every N steps
    seed: int = 1337
    out: str = "runs/tiny"

    def __post_init__(self):
        check_fields(self, TRAIN_RULES)
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"unknown tokenizer {self.tokenizer!r}: expected 'char' or 'bpe'")
        if self.tokenizer == "char":
            for name in ("bpe_keep_case", "bpe_keep_newlines"):
                if getattr(self, name):
                    raise ValueError(f"{name} (--{name.replace('_', '-')}) is an option of the "
                                     "BPE tokenizer (--tokenizer bpe): the char tokenizer "
                                     "already keeps every character, capitals and newlines")
        base = GPTConfig.preset(self.preset)  # ValueError naming the presets if unknown
        n_ctx = base.n_ctx
        try:
            GPTConfig.preset(self.preset, **self.size_overrides())
        except ValueError as e:  # n_embd not a multiple of n_head
            raise ValueError(f"{e}; the {self.preset} preset has n_embd={base.n_embd}, "
                             f"n_head={base.n_head}: choose n_embd (--n-embd) a multiple of "
                             "n_head (--n-head)") from None
        if self.block_size is not None and self.block_size > n_ctx:
            raise ValueError(f"block_size {self.block_size} is above the {self.preset} preset's "
                             f"context n_ctx={n_ctx}; use at most {n_ctx}")

    def size_overrides(self) -> dict:
        """The preset sizes this config overrides: {n_layer, n_embd, n_head: value} as given."""
        return {k: getattr(self, k) for k in ("n_layer", "n_embd", "n_head")
                if getattr(self, k) is not None}


def _build_tokenizer(cfg: TrainConfig, corpus):
    from ..tokenizers import BPETokenizer, CharTokenizer
    if cfg.tokenizer == "char":
        return CharTokenizer.train(corpus.train + corpus.val)
    if cfg.tokenizer == "bpe":
        return BPETokenizer.train(corpus.train, vocab_size=cfg.bpe_vocab_size,
                                  lowercase=not cfg.bpe_keep_case,
                                  keep_newlines=cfg.bpe_keep_newlines)
    raise TrainingError(f"unknown tokenizer {cfg.tokenizer!r}: expected 'char' or 'bpe'")


def _model_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
    overrides = {"vocab_size": vocab_size, **cfg.size_overrides()}
    if cfg.block_size is not None:
        overrides["n_ctx"] = cfg.block_size
    if cfg.dropout is not None:
        overrides.update(embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, resid_pdrop=cfg.dropout)
    return GPTConfig.preset(cfg.preset, **overrides)


def evaluate(model: GPT, data: np.ndarray, block_size: int, batch_size: int, n_batches: int,
             seed: int = 0) -> float:
    """Mean loss on n_batches random windows drawn from a fresh generator (same windows each call)."""
    from ..data import get_batch
    positive_int(n_batches, "n_batches")  # 0 batches would be a NaN mean
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    losses = []
    with no_grad():
        for _ in range(n_batches):
            x, y = get_batch(data, batch_size, block_size, rng)
            losses.append(model.loss(x, y).item())
    model.train(was_training)
    return float(np.mean(losses))


def evaluate_full(model: GPT, data: np.ndarray, block_size: int, batch_size: int = 16) -> float:
    """Mean next-token loss over the whole sequence, in consecutive non-overlapping windows."""
    n = (len(data) - 1) // block_size
    if n == 0:
        raise TrainingError(f"validation data has {len(data)} tokens, fewer than one window of "
                            f"{block_size + 1}")
    starts = np.arange(n) * block_size
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with no_grad():
        for i in range(0, n, batch_size):
            s = starts[i:i + batch_size]
            x = np.stack([data[j:j + block_size] for j in s]).astype(np.int64)
            y = np.stack([data[j + 1:j + 1 + block_size] for j in s]).astype(np.int64)
            total += model.loss(x, y).item() * x.size
            count += x.size
    model.train(was_training)
    return total / count


def plot_losses(run_dir, out_png=None) -> Path | None:
    """Write the train/val loss curves of a run to loss.png (None if matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    if not rows:
        return None
    out_png = Path(out_png or run_dir / "loss.png")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.8, alpha=0.6, label="train")
    val = [r for r in rows if "val_loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(f"minigpt pretraining: {run_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def _resumed_config(out: Path, state: dict, cfg: TrainConfig) -> TrainConfig:
    """The checkpoint's training arguments (with a new --steps, if given); CheckpointError
    naming state.json when it is not a resumable pretraining state."""
    state_file = resolve_checkpoint(out) / "state.json"
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{state_file}: cannot resume, missing {', '.join(missing)} (not "
                              "a pretraining checkpoint, or a weights-only one?)")
    saved = state["train_config"]
    if not isinstance(saved, dict):
        raise CheckpointError(f"{state_file}: 'train_config' must be a JSON object")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise CheckpointError(f"{state_file}: unknown training arguments "
                              f"{short_list(unknown, quote=True)}")
    if isinstance(state["step"], bool) or not isinstance(state["step"], int) or state["step"] < 0:
        raise CheckpointError(f"{state_file}: 'step' must be an integer >= 0, got "
                              f"{state['step']!r}")
    try:
        saved = TrainConfig(**saved)
    except ValueError as e:
        raise CheckpointError(f"{state_file}: train_config: {e}") from None
    return dataclasses.replace(
        saved, steps=saved.steps if cfg.steps is None else cfg.steps, out=str(out),
        snapshot_every=saved.snapshot_every if cfg.snapshot_every is None else cfg.snapshot_every)


def _prepare_data(cfg: TrainConfig, tokenizer, corpus, block: int):
    from ..data import encode_corpus
    train_ids = encode_corpus(tokenizer, corpus.train)
    val_ids = encode_corpus(tokenizer, corpus.val)
    for name, ids in (("train", train_ids), ("validation", val_ids)):
        if len(ids) <= block:
            raise TrainingError(f"the {name} split has {len(ids)} tokens, fewer than "
                                f"block_size + 1 = {block + 1}")
    return train_ids, val_ids


def pretrain(cfg: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True,
             log=print) -> dict:
    """Train (or resume) a GPT language model; returns a summary dict of the run.

    Order: arguments, corpus, tokenizer and model are checked first; only then is the run
    directory taken (loop.RunDirectory: lock, --force keeping the old run until the new one's
    first checkpoint). cfg.steps None with resume: keep the checkpoint's own --steps (and
    cfg.snapshot_every None: its own snapshot_every).
    """
    from ..data import get_batch, load_corpus

    out = Path(cfg.out)
    folder = RunDirectory(out, force=force, resume=resume, command="pretrain", log=log)
    folder.check()
    if not resume:
        if cfg.steps is None:
            raise ValueError("steps is required (None keeps a checkpoint's own steps, with "
                             "resume only)")
        corpus = load_corpus(cfg.data)
        tokenizer = _build_tokenizer(cfg, corpus)
        model = GPT(_model_config(cfg, tokenizer.vocab_size), seed=cfg.seed)
        block = model.config.n_ctx if cfg.block_size is None else cfg.block_size
        train_ids, val_ids = _prepare_data(cfg, tokenizer, corpus, block)

    # the folder is locked from here on (for --resume: before the checkpoint is read)
    with Run(folder, progress=progress, append_metrics=resume) as run:
        state = {}
        if resume:
            model, tokenizer, state = load_checkpoint(out, with_optimizer_state=True)
            cfg = _resumed_config(out, state, cfg)
            corpus = load_corpus(cfg.data)
            block = model.config.n_ctx if cfg.block_size is None else cfg.block_size
            train_ids, val_ids = _prepare_data(cfg, tokenizer, corpus, block)
        opt = Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                   max_grad_norm=cfg.max_grad_norm, schedule=warmup_cosine(cfg.warmup, cfg.steps))
        data_rng = np.random.default_rng(cfg.seed)
        mgrandom.manual_seed(cfg.seed)
        step = 0
        if resume:
            try:
                opt.load_state_dict(state["optimizer"])
                data_rng.bit_generator.state = state["data_rng"]
                mgrandom.set_state(state["dropout_rng"])
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(f"{resolve_checkpoint(out) / 'state.json'}: cannot restore "
                                      f"the optimizer or random state ({type(e).__name__}: {e})"
                                      ) from None
            step = int(state["step"])
            if step >= cfg.steps:
                log(f"checkpoint is at step {step}, nothing to do for --steps {cfg.steps}")
            # keep the metrics up to the resumed step: a crash after the checkpoint wrote lines
            # beyond it (and maybe a torn last line, skipped with a warning)
            metrics_path = out / "metrics.jsonl"
            write_metrics(metrics_path, [r for r in read_metrics(metrics_path)
                                         if r["step"] <= step])
        summary = _train(run, cfg, model, tokenizer, opt, data_rng, step, state, block,
                         train_ids, val_ids, log, get_batch)
    png = plot_losses(out)
    summary["plot"] = str(png) if png else None
    return summary


def _train(run: Run, cfg, model, tokenizer, opt, data_rng, step, state, block, train_ids,
           val_ids, log, get_batch) -> dict:
    out = Path(cfg.out)
    ckpt_dir = out / "ckpt"
    snap_dir = out / SNAPSHOTS
    last = {"loss": state.get("last_loss"), "val": state.get("last_val_loss")}

    def checkpoint(at):
        run.checkpoint(lambda: save_checkpoint(ckpt_dir, model, tokenizer, opt, {
            "step": at, "train_config": dataclasses.asdict(cfg),
            "data_rng": data_rng.bit_generator.state, "dropout_rng": mgrandom.get_state(),
            "last_loss": last["loss"], "last_val_loss": last["val"]}))

    def snapshot(at):
        # written before the checkpoint of the same step, so that a crash in between is
        # redone on --resume; one that exists (this run's before a crash) is not rewritten
        name = snapshot_name(at)
        if at <= 0 or find_checkpoint(snap_dir, name) is not None:
            return
        save_checkpoint(snap_dir / name, model, tokenizer, None, {
            "step": at, "train_config": dataclasses.asdict(cfg), "last_loss": last["loss"],
            "last_val_loss": last["val"]})
        clock["t"] = time.perf_counter()

    if cfg.snapshot_every:
        _tidy_snapshots(snap_dir, log)

    n_params = model.num_parameters()
    log(f"model: {cfg.preset} preset, {n_params:,} parameters, vocab {model.config.vocab_size}, "
        f"context {block}; data: {cfg.data} ({len(train_ids):,} train / {len(val_ids):,} val tokens)")
    clock = {"t": time.perf_counter()}

    def batch_loss(s):
        x, y = get_batch(train_ids, cfg.batch_size, block, data_rng)
        clock["tokens"] = x.size
        return model.loss(x, y), {}

    def on_row(s, row):
        last["loss"] = row["loss"]
        now = time.perf_counter()
        row["tokens_per_s"] = round(clock["tokens"] / (now - clock["t"]), 1)
        clock["t"] = now
        if s % cfg.eval_interval == 0 or s == cfg.steps:
            last["val"] = evaluate(model, val_ids, block, cfg.batch_size, cfg.eval_batches)
            row["val_loss"] = round(last["val"], 6)
            clock["t"] = time.perf_counter()  # evaluation time is not training speed

    def after_step(s):
        if cfg.snapshot_every and s % cfg.snapshot_every == 0:
            snapshot(s)
        if s % cfg.ckpt_interval == 0 and s < cfg.steps:
            checkpoint(s)
            clock["t"] = time.perf_counter()

    def postfix(row):
        post = {"loss": f"{row['loss']:.3f}", "tok/s": f"{row['tokens_per_s']:.0f}"}
        if last["val"] is not None:
            post["val"] = f"{last['val']:.3f}"
        return post

    if cfg.snapshot_every and step % cfg.snapshot_every == 0:
        snapshot(step)  # resumed at a multiple of N (--snapshot-every added on --resume)
    run.start_progress(cfg.steps, step, "pretrain")
    model.train()
    status, step = run_loop(
        run, optimizer=opt, batch_loss=batch_loss, start=step, total=cfg.steps, on_row=on_row,
        after_step=after_step, postfix=postfix,
        hint=f"The last good checkpoint (if any) is kept in {ckpt_dir}. Try a lower --lr.")
    run.end_progress()
    if cfg.snapshot_every and status == "completed":
        snapshot(step)  # the last step, also when it is not a multiple of N
    checkpoint(step)
    if status == "interrupted":
        log(f"interrupted: checkpoint saved at step {step} in {ckpt_dir} (continue with --resume)")
    return {"status": status, "step": step, "loss": last["loss"], "val_loss": last["val"],
            "out": str(out), "ckpt": str(ckpt_dir), "parameters": n_params,
            "snapshots": str(snap_dir) if cfg.snapshot_every else None, "model": model,
            "tokenizer": tokenizer}


def _tidy_snapshots(snap_dir: Path, log) -> None:
    """What a killed snapshot save left in snapshots/ (checkpoint.clean_leftovers for each
    step: a finished temporary becomes the snapshot, partial ones go)."""
    for name in names_with_leftovers(snap_dir):
        clean_leftovers(snap_dir, name, log)
