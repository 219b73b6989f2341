"""Language-model pretraining (the paper's L1 objective) with safe, exactly resumable checkpoints.

`pretrain(cfg)` is one plain loop, read top to bottom: draw a batch, the loss, the NaN guard,
backward, clip and step (Adam), record a metrics row, evaluate every `eval_interval` steps,
keep a snapshot every `snapshot_every` and a checkpoint every `ckpt_interval`, stop between
steps on Ctrl-C. The pieces it calls: `Run` and `check_finite` (run.py), the run folder's
safety (minigpt.runfolder), `save_checkpoint` (checkpoint.py).

A run directory holds:
    ckpt/          the latest checkpoint (see checkpoint.py), replaced by a crash-proof swap
    snapshots/     with snapshot_every N: step-000500/ ... a checkpoint (weights, tokenizer,
                   state.json; no optimizer state) at every multiple of N and at the last
                   step, for accuracy-vs-pretraining-steps curves; each is loadable like ckpt/
    metrics.jsonl  one JSON line per step: step, loss, lr, tokens_per_s, and val_loss when
                   evaluated (tokens/s counts training time only: not evaluation or saving)
    loss.png       the loss curves (written at the end, when matplotlib is installed)
    .lock          while a process trains there (see minigpt.runfolder)

Every argument and input (ranges, preset, corpus) is checked before the run directory is
touched. Each setting of TrainConfig is declared once, with its range and help text; the
`minigpt pretrain` options are generated from the fields.

Resuming restores weights, Adam moments, the step, and both random streams (dropout and batch
sampling), so a run stopped and resumed follows the uninterrupted run's loss curve exactly.
"""
from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import data
from .. import random as mgrandom
from ..autograd import no_grad
from ..fileio import atomic_write_bytes
from ..checks import (check_fields, fraction, nonneg_float, nonneg_int, positive_float,
                      positive_int, setting, short_list)
from ..data.shards import PreparedData, TokenShards, open_prepared
from ..distributed import (GlobalRowMasks, allreduce_gradients, check_split, check_weights_equal,
                           get_world, my_rows)
from ..model import GPT, PRESETS, GPTConfig
from ..optim import Adam, warmup_cosine
from ..tokenizers import BPETokenizer, CharTokenizer
from ..runfolder import (METRICS_FILE, CheckpointError, RunDirectory, TrainingError,
                         clean_leftovers, find_checkpoint, names_with_leftovers, read_metrics,
                         resolve_checkpoint, write_metrics)
from .checkpoint import load_checkpoint, save_checkpoint
from .run import Run, check_finite

__all__ = ["TrainConfig", "pretrain", "evaluate", "evaluate_full", "plot_losses",
           "snapshot_name", "SNAPSHOTS"]

RESUME_KEYS = ("step", "train_config", "data_rng", "dropout_rng", "optimizer")
SNAPSHOTS = "snapshots"
WEIGHT_CHECK_EVERY = 100  # data-parallel runs: compare the ranks' weights every N steps


def snapshot_name(step: int) -> str:
    """The folder name of the snapshot taken after update `step`: step-000500."""
    return f"step-{step:06d}"


@dataclass
class TrainConfig:
    """Pretraining settings. Each field is declared once with its range and help text
    (checks.setting): a value outside its range is a ValueError here, and `minigpt pretrain`
    has one option per field, generated from it (--batch-size for batch_size, ...)."""
    data: str = setting("shakespeare", None, "'shakespeare', a UTF-8 text file, or a folder "
                        "written by `minigpt prepare` (memory-mapped token shards)")
    preset: str = setting("tiny", None, "model size; gpt1 is GPT-1's", choices=sorted(PRESETS))
    tokenizer: str = setting("char", None, "char: one token per character; bpe: byte-pair "
                             "encoding learned from the corpus", choices=("char", "bpe"))
    bpe_vocab_size: int = setting(1000, positive_int, "the BPE vocabulary's size")
    bpe_keep_case: bool = setting(False, None, "BPE keeps capitals and accents (GPT-1's "
                                  "lowercases)")
    bpe_keep_newlines: bool = setting(False, None, "BPE makes each newline a token (GPT-1's "
                                      "reads it as a space)")
    steps: int | None = setting(1000, positive_int, "optimizer updates")  # None: resume's own
    batch_size: int = setting(32, positive_int, "sequences per update (the global batch: "
                              "split over mpiexec's N processes x --grad-accum micro-batches)")
    grad_accum: int = setting(1, positive_int, "micro-batches per process and update (same "
                              "numbers, less memory); not kept on --resume", metavar="K")
    block_size: int | None = setting(None, positive_int, "context length (default and maximum: "
                                     "the preset's n_ctx)")
    n_layer: int | None = setting(None, positive_int, "override the preset's number of blocks")
    n_embd: int | None = setting(None, positive_int, "override the preset's width (a multiple "
                                 "of the heads)")
    n_head: int | None = setting(None, positive_int, "override the preset's attention heads")
    lr: float = setting(2.5e-4, positive_float, "peak learning rate; the default is GPT-1's, "
                        "small models like more (the demo: 2e-3)")
    warmup: int = setting(100, nonneg_int, "linear warm-up updates, then cosine to 0; GPT-1: "
                          "2000")
    weight_decay: float = setting(0.01, nonneg_float, "decoupled weight decay of matrices and "
                                  "embeddings")
    max_grad_norm: float = setting(1.0, positive_float, "clip the global gradient norm to this")
    dropout: float | None = setting(None, fraction, "override the preset's dropout (all three), "
                                    "in [0, 1)")
    eval_interval: int = setting(100, positive_int, "evaluate every N steps and after the last")
    eval_batches: int = setting(8, positive_int, "validation batches per evaluation")
    ckpt_interval: int = setting(200, positive_int, "save a checkpoint every N steps and at the "
                                 "end")
    snapshot_every: int | None = setting(
        None, positive_int, "also keep a loadable checkpoint of every N-th step and of the last "
        "one in OUT/snapshots/step-000500/ ... (no optimizer state)", metavar="N")
    seed: int = setting(1337, nonneg_int, "seed of the weights, the batches and dropout")
    out: str = setting("runs/tiny", None, "run directory (checkpoint, metrics, loss.png)")

    def __post_init__(self):
        check_fields(self)  # every field's range and choices
        if self.tokenizer == "char":
            for name in ("bpe_keep_case", "bpe_keep_newlines"):
                if getattr(self, name):
                    raise ValueError(f"{name} (--{name.replace('_', '-')}) is an option of the "
                                     "BPE tokenizer (--tokenizer bpe): the char tokenizer "
                                     "already keeps every character, capitals and newlines")
        base = GPTConfig.preset(self.preset)
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


# ----------------------------------------------------------------------------- the loop

def pretrain(cfg: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True,
             log=print) -> dict:
    """Train (or resume) a GPT language model; returns a summary dict of the run.

    Order: arguments, corpus, tokenizer and model are checked first; only then is the run
    directory taken (minigpt.runfolder.RunDirectory: lock, --force keeping the old run until
    the new one's first checkpoint). cfg.steps None with resume: keep the checkpoint's own
    --steps (and cfg.snapshot_every None: its own snapshot_every).
    """
    out = Path(cfg.out)
    world = get_world()                              # mpiexec -n N: this rank of N; else 1 of 1
    if not world.is_main:                            # logs, progress bar and files: rank 0's
        log, progress = (lambda *args, **kwargs: None), False
    check_split(cfg.batch_size, world.size, cfg.grad_accum)
    folder = None
    if world.is_main:
        folder = RunDirectory(out, force=force, resume=resume, command="pretrain", log=log)
        folder.check()
    if not resume:  # everything a new run reads is checked before --out is touched
        if cfg.steps is None:
            raise ValueError("steps is required (None keeps a checkpoint's own steps, with "
                             "resume only)")
        corpus = load_training_data(cfg.data)  # a Corpus (text) or a PreparedData (shards)
        tokenizer = build_tokenizer(cfg, corpus)
        model = GPT(model_config(cfg, tokenizer.vocab_size), seed=cfg.seed)
        block = model.config.n_ctx  # = cfg.block_size when given
        train_ids, val_ids = encode_splits(tokenizer, corpus, block)

    with Run(folder, progress=progress, append_metrics=resume) as run:  # --out locked from here
        state = {}
        world.barrier()                              # rank 0 holds --out: the others may read it
        if resume:  # the checkpoint is read under the lock
            model, tokenizer, state = load_checkpoint(out, with_optimizer_state=True)
            cfg = resumed_config(out, state, cfg)
            check_split(cfg.batch_size, world.size, cfg.grad_accum)
            block = model.config.n_ctx
            train_ids, val_ids = encode_splits(tokenizer, load_training_data(cfg.data), block)
        opt = Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                   max_grad_norm=cfg.max_grad_norm, schedule=warmup_cosine(cfg.warmup, cfg.steps))
        data_rng = np.random.default_rng(cfg.seed)  # the batches' random stream
        mgrandom.manual_seed(cfg.seed)               # dropout's
        start = 0                                    # updates already made
        if resume:
            start = restore_training_state(out, state, opt, data_rng)
            if start >= cfg.steps:
                log(f"checkpoint is at step {start}, nothing to do for --steps {cfg.steps}")
            if world.is_main:
                keep_metrics_up_to(out / METRICS_FILE, start)
        check_weights_equal(model.parameters(), world, start)  # same start on every rank
        last_loss, last_val = state.get("last_loss"), state.get("last_val_loss")
        ckpt_dir, snap_dir = out / "ckpt", out / SNAPSHOTS
        if cfg.snapshot_every:
            tidy_snapshots(snap_dir, log)
        n_params = model.num_parameters()
        log(f"model: {cfg.preset} preset, {n_params:,} parameters, vocab "
            f"{model.config.vocab_size}, context {block}; data: {cfg.data} ({len(train_ids):,} "
            f"train / {len(val_ids):,} val tokens)")
        if cfg.snapshot_every and 0 < start and start % cfg.snapshot_every == 0:
            # resumed at a multiple of N (--snapshot-every added on --resume)
            save_snapshot(snap_dir, model, tokenizer, run_state(cfg, start, last_loss, last_val))
        hint = f"The last good checkpoint (if any) is kept in {ckpt_dir}. Try a lower --lr."

        run.start_progress(cfg.steps, start, "pretrain")
        model.train()
        status, steps_done = "completed", start
        clock = time.perf_counter()                  # tokens/s: training time only
        for step in range(start + 1, cfg.steps + 1):  # step: the number of this update
            if world.any(run.stop_requested):        # Ctrl-C (on any rank): stop between steps
                if step == 1:                        # a new run that trained nothing: no
                    raise KeyboardInterrupt          # checkpoint, no folder (like a failed start)
                status = "interrupted"
                break
            # the global batch, the same on every rank (same data_rng); this rank's rows of it
            x, y = data.get_batch(train_ids, cfg.batch_size, block, data_rng)  # (B, T) each
            opt.zero_grad()
            masks = GlobalRowMasks(cfg.batch_size)   # dropout masks by global row
            local_loss = 0.0
            for rows in my_rows(cfg.batch_size, world, cfg.grad_accum):  # K micro-batches
                with masks.rows(rows):
                    loss = model.loss(x[rows], y[rows])  # mean next-token cross-entropy
                share = (rows.stop - rows.start) / cfg.batch_size  # its share of the tokens
                (loss if share == 1 else loss * share).backward()  # .grad adds up
                local_loss += loss.item() * share
            # sum over the ranks (one Allreduce per bucket): the global batch's gradient, loss
            value = allreduce_gradients(model.parameters(), world, local_loss)
            value = check_finite(value, step, hint)  # NaN/inf: stop before the update
            # clip: opt.step() measures the global gradient norm, then each parameter's Adam
            # update first scales its gradient so that the global norm is at most
            # cfg.max_grad_norm (optim.py)
            opt.step()
            steps_done = step

            now = time.perf_counter()
            row = {"step": step, "loss": round(value, 6), "lr": opt.last_lr,
                   "tokens_per_s": round(x.size / (now - clock), 1)}
            clock = now
            last_loss = row["loss"]
            if world.is_main and (step % cfg.eval_interval == 0 or step == cfg.steps):
                last_val = evaluate(model, val_ids, block, cfg.batch_size, cfg.eval_batches)
                row["val_loss"] = round(last_val, 6)
                clock = time.perf_counter()          # evaluation time is not training speed
            run.record(row, progress_postfix(row, last_val))
            if step % WEIGHT_CHECK_EVERY == 0:
                check_weights_equal(model.parameters(), world, step)  # RanksDiverged if not

            if not world.is_main:                    # rank 0 alone writes the run folder
                continue
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                # before the checkpoint of the same step: a crash in between is redone on --resume
                save_snapshot(snap_dir, model, tokenizer, run_state(cfg, step, last_loss, last_val))
                clock = time.perf_counter()
            if step % cfg.ckpt_interval == 0 and step < cfg.steps:
                save_checkpoint(ckpt_dir, model, tokenizer, opt,
                                resume_state(cfg, step, last_loss, last_val, data_rng))
                run.checkpoint_saved()
                clock = time.perf_counter()          # nor is saving
        run.end_progress()

        if world.is_main and status == "completed" and cfg.snapshot_every:  # the last step
            save_snapshot(snap_dir, model, tokenizer,
                          run_state(cfg, steps_done, last_loss, last_val))
        if world.is_main:
            save_checkpoint(ckpt_dir, model, tokenizer, opt,
                            resume_state(cfg, steps_done, last_loss, last_val, data_rng))
            run.checkpoint_saved()
        if status == "interrupted":
            log(f"interrupted: checkpoint saved at step {steps_done} in {ckpt_dir} (continue "
                "with --resume)")
    png = plot_losses(out) if world.is_main else None
    return {"status": status, "step": steps_done, "loss": last_loss, "val_loss": last_val,
            "out": str(out), "ckpt": str(ckpt_dir), "parameters": n_params,
            "snapshots": str(snap_dir) if cfg.snapshot_every else None, "model": model,
            "tokenizer": tokenizer, "plot": str(png) if png else None}


def progress_postfix(row: dict, last_val: float | None) -> dict:
    """The progress bar's numbers: this step's loss and tokens/s, the last validation loss."""
    post = {"loss": f"{row['loss']:.3f}", "tok/s": f"{row['tokens_per_s']:.0f}"}
    if last_val is not None:
        post["val"] = f"{last_val:.3f}"
    return post


# ----------------------------------------------------------------------------- setting up

def load_training_data(name: str):
    """A folder written by `minigpt prepare` (PreparedData: shards mapped, not read), else the
    text of 'shakespeare' or a file (data.load_corpus)."""
    if Path(name).is_dir():
        return open_prepared(name)
    return data.load_corpus(name)


def build_tokenizer(cfg: TrainConfig, corpus):
    """The tokenizer cfg.tokenizer names, learned from the corpus (char: every character of
    both splits; bpe: merges learned from the training split); a prepared folder's own."""
    if isinstance(corpus, PreparedData):
        return corpus.tokenizer()
    if cfg.tokenizer == "bpe":
        return BPETokenizer.train(corpus.train, vocab_size=cfg.bpe_vocab_size,
                                  lowercase=not cfg.bpe_keep_case,
                                  keep_newlines=cfg.bpe_keep_newlines)
    return CharTokenizer.train(corpus.train + corpus.val)


def model_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
    """The preset's GPTConfig with cfg's overrides (sizes, block_size as n_ctx, dropout)."""
    overrides = {"vocab_size": vocab_size, **cfg.size_overrides()}
    if cfg.block_size is not None:
        overrides["n_ctx"] = cfg.block_size
    if cfg.dropout is not None:
        overrides.update(embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, resid_pdrop=cfg.dropout)
    return GPTConfig.preset(cfg.preset, **overrides)


def encode_splits(tokenizer, corpus, block: int):
    """(train ids, validation ids); a TrainingError if a split is shorter than one window. A
    prepared folder's splits are its TokenShards (the tokenizer must be the folder's)."""
    if isinstance(corpus, PreparedData):
        if tokenizer.vocab_size < corpus.vocab_size:
            raise TrainingError(f"{corpus.folder} was prepared with a vocabulary of "
                                f"{corpus.vocab_size:,} ids, the checkpoint's tokenizer has "
                                f"{tokenizer.vocab_size:,}: not the same tokenizer")
        train_ids, val_ids = corpus.train, corpus.val
    else:
        train_ids = data.encode_corpus(tokenizer, corpus.train)
        val_ids = data.encode_corpus(tokenizer, corpus.val)
    for name, ids in (("train", train_ids), ("validation", val_ids)):
        windows = ids.windows(block).sum() if isinstance(ids, TokenShards) else len(ids) - block
        if windows <= 0:
            raise TrainingError(f"the {name} split has {len(ids)} tokens, fewer than "
                                f"block_size + 1 = {block + 1}")
    return train_ids, val_ids


def evaluate(model: GPT, ids: np.ndarray, block_size: int, batch_size: int, n_batches: int,
             seed: int = 0) -> float:
    """Mean loss on n_batches random windows of `ids` drawn from a fresh generator (the same
    windows at each call)."""
    positive_int(n_batches, "n_batches")  # 0 batches would be a NaN mean
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    losses = []
    with no_grad():
        for _ in range(n_batches):
            x, y = data.get_batch(ids, batch_size, block_size, rng)  # (B, T) each
            losses.append(model.loss(x, y).item())
    model.train(was_training)
    return float(np.mean(losses))


def evaluate_full(model: GPT, ids: np.ndarray, block_size: int, batch_size: int = 16) -> float:
    """Mean next-token loss over the whole sequence `ids`, in consecutive non-overlapping
    windows."""
    n = (len(ids) - 1) // block_size
    if n == 0:
        raise TrainingError(f"validation data has {len(ids)} tokens, fewer than one window of "
                            f"{block_size + 1}")
    starts = np.arange(n) * block_size
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with no_grad():
        for i in range(0, n, batch_size):
            s = starts[i:i + batch_size]
            x = np.stack([ids[j:j + block_size] for j in s]).astype(np.int64)  # (B, T)
            y = np.stack([ids[j + 1:j + 1 + block_size] for j in s]).astype(np.int64)
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
    rows = read_metrics(run_dir / METRICS_FILE)
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
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write_bytes(out_png, png.getvalue())  # a link at loss.png is replaced, not followed
    return out_png


# ----------------------------------------------------------------------------- resuming

def resumed_config(out: Path, state: dict, cfg: TrainConfig) -> TrainConfig:
    """The checkpoint's training arguments (with a new --steps and --snapshot-every, if given);
    CheckpointError naming state.json when it is not a resumable pretraining state."""
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
        snapshot_every=saved.snapshot_every if cfg.snapshot_every is None else cfg.snapshot_every,
        grad_accum=cfg.grad_accum)  # how the batch is split is this start's choice


def restore_training_state(out: Path, state: dict, opt: Adam, data_rng) -> int:
    """Put Adam's moments and both random streams (batches, dropout) back as the checkpoint
    saved them; returns its step. A CheckpointError naming state.json if they do not fit."""
    try:
        opt.load_state_dict(state["optimizer"])
        data_rng.bit_generator.state = state["data_rng"]
        mgrandom.set_state(state["dropout_rng"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{resolve_checkpoint(out) / 'state.json'}: cannot restore "
                              f"the optimizer or random state ({type(e).__name__}: {e})"
                              ) from None
    return int(state["step"])


def keep_metrics_up_to(path: Path, step: int) -> None:
    """Drop the metrics rows after `step`: a crash after the checkpoint wrote lines beyond it
    (and maybe a torn last line, skipped with a warning)."""
    write_metrics(path, [r for r in read_metrics(path) if r["step"] <= step])


# ----------------------------------------------------------------------------- saving

def run_state(cfg: TrainConfig, step: int, last_loss, last_val) -> dict:
    """state.json of a snapshot: the step, the training arguments and the last losses."""
    return {"step": step, "train_config": dataclasses.asdict(cfg), "last_loss": last_loss,
            "last_val_loss": last_val}


def resume_state(cfg: TrainConfig, step: int, last_loss, last_val, data_rng) -> dict:
    """state.json of a checkpoint: run_state and both random streams (batches, dropout), what
    --resume needs besides the weights and Adam's moments (saved beside it)."""
    return {**run_state(cfg, step, last_loss, last_val),
            "data_rng": data_rng.bit_generator.state, "dropout_rng": mgrandom.get_state()}


def save_snapshot(snap_dir: Path, model: GPT, tokenizer, state: dict) -> None:
    """snapshots/step-000500/: the weights and tokenizer at state["step"], no optimizer state.
    One that exists (this run's, before a crash) is kept as it is, not rewritten."""
    name = snapshot_name(state["step"])
    if find_checkpoint(snap_dir, name) is None:
        save_checkpoint(snap_dir / name, model, tokenizer, None, state)


def tidy_snapshots(snap_dir: Path, log) -> None:
    """What a killed snapshot save left in snapshots/ (minigpt.runfolder.clean_leftovers for each
    step: a finished temporary becomes the snapshot, partial ones go)."""
    for name in names_with_leftovers(snap_dir):
        clean_leftovers(snap_dir, name, log)
