"""Supervised fine-tuning (the paper's section 3.2): L3 = L2 + lambda * L1.

    L2  the task loss: cross-entropy of the head's logits (tagging: first sub-tokens only)
    L1  the auxiliary language-model loss on the same input tokens (padding excluded), with
        the tied output embedding; lambda = --lm-coef (GPT-1: 0.5; 0 switches it off)

Defaults are GPT-1's release: Adam lr 6.25e-5, batch 32 (examples), 3 epochs, `warmup_linear`
with warm-up over 0.2% of the updates, weight decay 0.01 on matrices, gradient norm clipped
at 1, dropout 0.1 on the classifier input (and the pretrained model's own dropout).

`finetune(cfg)` is one plain loop, read top to bottom like pretraining's: a batch in the
epoch's order, L3, the NaN guard, backward, clip and step (Adam), a metrics row, stop between
updates on Ctrl-C; then the held-out evaluation and the checkpoint. Each FinetuneConfig
setting is declared once, with its range and help text; `minigpt finetune`'s options are
generated from the fields.

A run directory (`--out`; an existing run is replaced only with --force, and only once the
new run's checkpoint is written; locked while a process writes there, see minigpt.runfolder):
    ckpt/          the fine-tuned checkpoint: a normal minigpt checkpoint of the transformer
                   (config.json, model.safetensors, tokenizer with the special tokens,
                   state.json) plus head.safetensors and task.json (task, label names, head)
    metrics.jsonl  one line per update (loss, task loss, LM loss, lr)
    results.json   the held-out metrics (accuracy; entity-level P/R/F1 for tagging)
The checkpoint is written by the same crash-proof swap as pretraining's (checkpoint.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import random as mgrandom
from .. import safetensors
from ..autograd import no_grad
from ..distributed import (GlobalRowMasks, allreduce_gradients, check_split,
                           check_weights_equal, example_rows, get_world, loss_counts,
                           my_examples)
from ..checks import (check_fields, fraction, nonneg_float, nonneg_int, positive_float,
                      positive_int, setting)
from ..model import GPT
from ..optim import Adam, warmup_linear
from ..tasks import (TASKS, TaskData, TaskEncoder, Truncation, accuracy, add_special_tokens,
                     collate, entity_prf, lm_targets, load_task_data, read_user_file,
                     special_ids)
from ..fileio import atomic_write_text
from ..runfolder import CheckpointError, RunDirectory, resolve_checkpoint
from .checkpoint import load_checkpoint, save_checkpoint
from .heads import TaskModel, make_head, task_loss
from .run import Run, check_finite

__all__ = ["FinetuneConfig", "finetune", "finetune_loss", "evaluate_task", "predict",
           "load_base", "save_finetuned", "load_finetuned", "fixed_subset", "TASK_FILE",
           "HEAD_FILE"]

TASK_FILE = "task.json"
HEAD_FILE = "head.safetensors"
TASK_FORMAT = "minigpt-finetuned"


@dataclass
class FinetuneConfig:
    """Fine-tuning settings. Each field is declared once with its range and help text
    (checks.setting): a value outside its range is a ValueError here, and `minigpt finetune`
    has one option per field, generated from it. Defaults: GPT-1's release."""
    task: str = setting("classify", None, "the input transformation and head (the paper's "
                        "figure 1)", choices=TASKS)
    data: str = setting("rotten_tomatoes", None, "built-in data set (rotten_tomatoes, "
                        "shakespeare_genre, shakespeare_reply, shakespeare_same_play, "
                        "shakespeare_next_speech, shakespeare_names) or a file: .tsv/.csv/"
                        ".jsonl, CoNLL for tag, Story-Cloze .csv for choice")
    init: str | None = setting(None, None, "pretrained run or checkpoint directory (or a "
                               "HuggingFace directory)")
    out: str | None = setting(None, None, "run directory for the fine-tuned checkpoint (in the "
                              "library, None: no files)")
    test: str | None = setting(None, None, "test file for a user --data file (default: every "
                               "10th example of --data is held out)")
    lm_coef: float = setting(0.5, nonneg_float, "lambda of L3 = L2 + lambda * L1, the weight of "
                             "the auxiliary LM loss (0 switches it off)")
    epochs: int = setting(3, positive_int, "passes over the training examples")
    batch_size: int = setting(32, positive_int, "examples per update (a choice example is K "
                              "sequences); the global batch, split over mpiexec's N processes "
                              "x --grad-accum micro-batches")
    grad_accum: int = setting(1, positive_int, "micro-batches per process and update (same "
                              "numbers, less memory)", metavar="K")
    lr: float = setting(6.25e-5, positive_float, "peak learning rate")
    warmup: float = setting(0.002, fraction, "fraction of the updates spent warming up "
                            "(linear), then linear decay")
    weight_decay: float = setting(0.01, nonneg_float, "decoupled weight decay of matrices and "
                                  "embeddings")
    max_grad_norm: float = setting(1.0, positive_float, "clip the global gradient norm to this")
    clf_pdrop: float = setting(0.1, fraction, "classifier dropout, in [0, 1)")
    seed: int = setting(42, nonneg_int, "seed of the head, the special tokens' rows, the order "
                        "of the examples and dropout")
    pretrained: bool = setting(True, None, "ablation: the --init architecture and tokenizer, "
                               "random weights", flag="--no-pretrain")
    max_train: int | None = setting(None, positive_int, "train on a fixed random subset of N "
                                    "examples", metavar="N")
    max_test: int | None = setting(None, positive_int, "evaluate on a fixed random subset of N "
                                   "examples", metavar="N")
    eval_batch_size: int = setting(64, positive_int, "examples per batch in the held-out "
                                   "evaluation")

    def __post_init__(self):
        check_fields(self)  # every field's range, and the task among TASKS


# ----------------------------------------------------------------------------- model loading

def load_base(init, pretrained: bool = True, seed: int = 0):
    """(GPT, tokenizer) to fine-tune: the checkpoint's weights, or with pretrained=False the
    same architecture and tokenizer with freshly initialised weights (the "no pretraining"
    ablation). The tokenizer gets the start/delimiter/extract tokens and the embedding grows
    by their rows, drawn N(0, 0.02) from `seed`."""
    if init is None:
        raise ValueError("fine-tuning needs --init: a pretrained run or checkpoint directory "
                         "(its architecture and tokenizer are used even without pretraining)")
    p = Path(init)
    if (p / "config.json").is_file() and not (p / "state.json").is_file():  # HuggingFace dir
        from ..tokenizers import BPETokenizer
        model, tokenizer = GPT.from_pretrained(p), BPETokenizer.from_pretrained(p)
    else:
        model, tokenizer, _ = load_checkpoint(p)
        if (resolve_checkpoint(p) / TASK_FILE).is_file():
            raise CheckpointError(f"{init} is already a fine-tuned checkpoint; --init takes a "
                                  "pretrained one")
    if tokenizer is None:
        raise CheckpointError(f"checkpoint {init} has no tokenizer files")
    n_base = tokenizer.vocab_size
    if model.config.vocab_size < n_base:
        raise CheckpointError(f"{init}: the model has {model.config.vocab_size} embedding rows "
                              f"but its tokenizer {n_base} tokens")
    if not pretrained:
        model = GPT(model.config, seed=seed)
    add_special_tokens(tokenizer)
    if tokenizer.vocab_size > model.config.vocab_size:
        model.resize_token_embeddings(tokenizer.vocab_size, seed=seed)
    return model, tokenizer


# ----------------------------------------------------------------------------- checkpoints

def save_finetuned(path, model: TaskModel, tokenizer, info: dict, state: dict | None = None) -> Path:
    """Write a fine-tuned checkpoint directory: the transformer's checkpoint plus the head and
    task.json, all swapped in together by save_checkpoint's crash-proof swap."""
    def head_and_task(directory: Path) -> None:
        safetensors.save_file(dict(model.head.state_dict()), directory / HEAD_FILE,
                              metadata={"format": "np"})
        atomic_write_text(directory / TASK_FILE,
                          json.dumps({"format": TASK_FORMAT, "version": 1, **info}, indent=2))
    return save_checkpoint(path, model.transformer, tokenizer, None, state or {},
                           extra=head_and_task)


def load_finetuned(path):
    """(TaskModel in eval mode, tokenizer, task info, state) from a fine-tuned run/checkpoint."""
    ckpt = resolve_checkpoint(path)
    task_file = ckpt / TASK_FILE
    if not task_file.is_file():
        raise CheckpointError(f"{path} is not a fine-tuned checkpoint (no {TASK_FILE}); "
                              "fine-tune one with `minigpt finetune`")
    try:
        info = json.loads(task_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{task_file}: corrupt JSON: {e}") from None
    if info.get("format") != TASK_FORMAT:
        raise CheckpointError(f"{task_file}: not a minigpt fine-tuning file")
    transformer, tokenizer, state = load_checkpoint(ckpt)
    if tokenizer is None:
        raise CheckpointError(f"{ckpt}: no tokenizer files")
    head = make_head(info["task"], transformer.config.n_embd, len(info["labels"]),
                     pdrop=info.get("clf_pdrop", 0.1), dtype=np.dtype(transformer.config.dtype))
    try:
        head.load_state_dict(safetensors.load_file(ckpt / HEAD_FILE))
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise CheckpointError(f"{ckpt / HEAD_FILE}: {e}") from None
    model = TaskModel(transformer, head, info["task"])
    model.eval()
    return model, tokenizer, info, state


# ----------------------------------------------------------------------------- evaluation

def _batches(encoded, batch_size, task):
    for i in range(0, len(encoded), batch_size):
        yield encoded[i:i + batch_size], collate(encoded[i:i + batch_size], task)


def predict_encoded(model: TaskModel, encoded, task: str, batch_size: int = 64):
    """Per example: (predicted class index, probabilities) or, for tagging, the tag id of each
    kept word. Runs in eval mode without a graph."""
    was = model.training
    model.eval()
    out = []
    with no_grad():
        for items, b in _batches(encoded, batch_size, task):
            logits, _ = model(b.idx, b.mask, b.extract, b.group)
            z = np.asarray(logits.numpy(), dtype=np.float64)
            z = np.exp(z - z.max(axis=-1, keepdims=True))
            probs = z / z.sum(axis=-1, keepdims=True)
            if task == "tag":
                for i, it in enumerate(items):
                    out.append(probs[i, it.first].argmax(-1).tolist())
            else:
                out.extend((int(p.argmax()), p) for p in probs)
    model.train(was)
    return out


def evaluate_task(model: TaskModel, encoded, task: str, labels, batch_size: int = 64) -> dict:
    """Accuracy (classify/entail/similar/choice) or entity-level P/R/F1 (tag) on `encoded`."""
    preds = predict_encoded(model, encoded, task, batch_size)
    if task == "tag":
        gold = [[labels[t] for t in it.label] for it in encoded]
        pred = [[labels[t] for t in p] for p in preds]
        res = entity_prf(gold, pred)
        res["token_accuracy"] = accuracy([t for g in gold for t in g], [t for p in pred for t in p])
        res["examples"] = len(encoded)
        return res
    return {"accuracy": accuracy([it.label for it in encoded], [p for p, _ in preds]),
            "examples": len(encoded)}


def headline(task: str, metrics: dict) -> str:
    if task == "tag":
        return (f"entity F1 {metrics['f1']:.4f} (precision {metrics['precision']:.4f}, recall "
                f"{metrics['recall']:.4f}) on {metrics['examples']} held-out sentences")
    return f"accuracy {metrics['accuracy']:.4f} on {metrics['examples']} held-out examples"


# ----------------------------------------------------------------------------- training

def fixed_subset(examples, n, seed=0):
    """A fixed random subset (the same for every run seed and every ablation condition)."""
    if n is None or n >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:n])
    return [examples[i] for i in keep]


def finetune_loss(model: TaskModel, batch, task: str, lm_coef: float):
    """(L3, L2, L1) of one collated batch, as Tensors: L2 the task loss of the head's logits,
    L1 the language-model loss of the same tokens (padding excluded), L3 = L2 + lm_coef * L1.
    With lm_coef 0, L1 is not computed: (L2, L2, None)."""
    logits, h = model(batch.idx, batch.mask, batch.extract, batch.group)
    l2 = task_loss(task, logits, batch.labels)
    if lm_coef <= 0:
        return l2, l2, None
    l1 = model.lm_loss(h, lm_targets(batch.idx, batch.mask))
    return l2 + l1 * lm_coef, l2, l1


def finetune(cfg: FinetuneConfig, force: bool = False, progress: bool = True, log=print,
             data: TaskData | None = None, save: bool = True) -> dict:
    """Fine-tune `cfg.init` on a task; returns a summary with the held-out metrics.

    data: an already loaded TaskData (else `cfg.data`/`cfg.test` are loaded). save=False (or
    cfg.out None) writes no files, for experiments that only want the metrics.
    """
    out = Path(cfg.out) if cfg.out else None
    world = get_world()                              # mpiexec -n N: this rank of N; else 1 of 1
    if not world.is_main:                            # logs, progress bar and files: rank 0's
        log, progress = (lambda *args, **kwargs: None), False
    check_split(cfg.batch_size, world.size, cfg.grad_accum)
    save = save and out is not None
    folder = None
    if save and world.is_main:
        folder = RunDirectory(out, force=force, command="finetune", log=log)
    if folder is not None:
        folder.check()

    # every input is read and checked before the output folder is touched
    t0 = time.perf_counter()
    if data is None:
        data = load_task_data(cfg.task, cfg.data, cfg.test)
    elif data.task != cfg.task:
        raise ValueError(f"data set {data.name} is a {data.task!r} task, not {cfg.task!r}")
    log(data.counts())
    model_gpt, tokenizer = load_base(cfg.init, cfg.pretrained, cfg.seed)
    train_ex = fixed_subset(data.train, cfg.max_train)
    test_ex = fixed_subset(data.test, cfg.max_test)
    if len(train_ex) < len(data.train) or len(test_ex) < len(data.test):
        log(f"using {len(train_ex)} of {len(data.train)} training and {len(test_ex)} of "
            f"{len(data.test)} test examples (fixed random subsets)")

    n_ctx = model_gpt.config.n_ctx
    encoder = TaskEncoder(cfg.task, tokenizer, n_ctx, data.labels)
    tr_trunc, te_trunc = Truncation(), Truncation()
    train_enc = encoder.encode(train_ex, tr_trunc)
    test_enc = encoder.encode(test_ex, te_trunc)
    for trunc, what in ((tr_trunc, "training examples"), (te_trunc, "test examples")):
        msg = trunc.report(what)
        if msg:
            log(msg)

    mgrandom.manual_seed(cfg.seed)
    n_labels = len(data.labels)
    head = make_head(cfg.task, model_gpt.config.n_embd, n_labels, pdrop=cfg.clf_pdrop,
                     dtype=np.dtype(model_gpt.config.dtype), seed=cfg.seed + 1)
    model = TaskModel(model_gpt, head, cfg.task)
    steps_per_epoch = math.ceil(len(train_enc) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    opt = Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
               max_grad_norm=cfg.max_grad_norm, schedule=warmup_linear(total, cfg.warmup))
    order_rng = np.random.default_rng(cfg.seed)
    kind = "pretrained" if cfg.pretrained else "randomly initialised (no pretraining)"
    log(f"fine-tuning {kind} model ({model.num_parameters():,} parameters, context {n_ctx}) on "
        f"{data.name} [{cfg.task}]: {cfg.epochs} epochs x {steps_per_epoch} updates of "
        f"{cfg.batch_size}, lr {cfg.lr:g}, lm_coef {cfg.lm_coef:g}")

    with Run(folder, progress=progress) as run:  # --out locked from here
        check_weights_equal(model.parameters(), world, 0)  # the same start on every rank
        run.start_progress(total, 0, f"finetune {cfg.task}")
        model.train()
        status, steps_done, last = "completed", 0, {}
        for step in range(1, total + 1):            # step: the number of this update
            if world.any(run.stop_requested):        # Ctrl-C (any rank): stop between updates
                if step == 1:                        # nothing trained: no checkpoint, no
                    raise KeyboardInterrupt          # folder (like a failed start)
                status = "interrupted"
                break
            epoch, i = divmod(step - 1, steps_per_epoch)
            if i == 0:                               # each epoch sees the examples in a new order
                order = order_rng.permutation(len(train_enc))
            picked = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            # the global batch, the same on every rank; this rank's examples of it
            batch = collate([train_enc[k] for k in picked], cfg.task)  # idx, mask: (B*G, T)
            opt.zero_grad()
            n_labels, n_targets = loss_counts(batch)     # what L2 and L1 average over
            masks = GlobalRowMasks(len(picked))          # dropout masks by global row
            local = np.zeros(3)                          # this rank's shares of L3, L2, L1
            for rows, used in my_examples(len(picked), world, cfg.grad_accum):
                part = example_rows(batch, rows)
                with masks.rows(rows):
                    loss, l2, l1 = finetune_loss(model, part, cfg.task, cfg.lm_coef)
                c2, c1 = loss_counts(part) if used else (0, 0)
                w2, w1 = c2 / max(n_labels, 1), c1 / max(n_targets, 1)  # shares of the counts
                l2_part = w2 * l2.item() if c2 else 0.0
                l1_part = w1 * l1.item() if c1 and l1 is not None else 0.0
                terms = ([l2 * w2] if c2 else []) + ([l1 * (cfg.lm_coef * w1)] if l1_part else [])
                if terms:
                    sum(terms[1:], terms[0]).backward()  # .grad adds up over micro-batches
                local += [l2_part + cfg.lm_coef * l1_part, l2_part, l1_part]
            # summed over the ranks: the global batch's gradient and L3, L2, L1
            value, l2_value, l1_value = allreduce_gradients(model.parameters(), world, local)
            value = check_finite(value, step, "Try a lower --lr.", what="update")
            # clip: opt.step() measures the global gradient norm, then each parameter's Adam
            # update first scales its gradient so that the global norm is at most
            # cfg.max_grad_norm (optim.py)
            opt.step()
            steps_done = step

            row = {"step": step, "loss": round(value, 6), "epoch": epoch + 1,
                   "task_loss": round(float(l2_value), 6)}
            if l1 is not None:
                row["lm_loss"] = round(float(l1_value), 6)
            row["lr"] = opt.last_lr
            last = row
            run.record(row, {"loss": f"{row['loss']:.3f}", "task": f"{row['task_loss']:.3f}"})
        run.end_progress()
        train_time = time.perf_counter() - t0

        metrics = None
        if status == "completed":
            metrics = evaluate_task(model, test_enc, cfg.task, data.labels, cfg.eval_batch_size)
            log(f"held-out {data.name}: {headline(cfg.task, metrics)}")
        info = {"task": cfg.task, "labels": list(data.labels), "clf_pdrop": cfg.clf_pdrop,
                "data": data.name, "data_source": data.source, "metrics": metrics,
                "special_tokens": special_ids(tokenizer)}
        summary = {"status": status, "step": steps_done, "total_steps": total, "metrics": metrics,
                   "last": dict(last), "seconds": round(time.perf_counter() - t0, 1),
                   "train_seconds": round(train_time, 1), "model": model,
                   "tokenizer": tokenizer, "labels": list(data.labels),
                   "truncated_train": tr_trunc.truncated_examples,
                   "truncated_test": te_trunc.truncated_examples}
        if save and world.is_main:                   # rank 0 alone writes the run folder
            ckpt = save_finetuned(out / "ckpt", model, tokenizer, info, {
                "step": steps_done, "status": status, "finetune_config": dataclasses.asdict(cfg),
                "last": dict(last)})
            run.checkpoint_saved()
            atomic_write_text(out / "results.json", json.dumps({
                "status": status, "step": steps_done, "metrics": metrics, "data": data.name,
                "task": cfg.task, "config": dataclasses.asdict(cfg),
                "train_examples": len(train_enc), "test_examples": len(test_enc)}, indent=2))
            summary["ckpt"] = str(ckpt)
            if status == "interrupted":
                log(f"interrupted at update {steps_done} of {total}: checkpoint saved in {ckpt} "
                    "(not evaluated)")
    return summary


# ----------------------------------------------------------------------------- prediction

def predict(ckpt, input_path, batch_size: int = 64, out=None, log=None) -> dict:
    """Print predictions for a file in the task's format (labels optional; when the file has
    them, accuracy or entity F1 is reported too). Returns {"predictions": [...], "metrics"}."""
    out = out or sys.stdout
    log = log or (lambda m: print(m, file=sys.stderr))
    model, tokenizer, info, _ = load_finetuned(ckpt)
    task, labels = info["task"], info["labels"]
    examples = read_user_file(input_path, task, labelled=None)
    encoder = TaskEncoder(task, tokenizer, model.transformer.config.n_ctx, labels)
    has_labels = all(ex.label is not None for ex in examples)
    if task == "choice" and len(examples[0].choices) != len(labels):
        log(f"note: {input_path} has {len(examples[0].choices)} endings per example; the model "
            f"was fine-tuned with {len(labels)} (the head scores any number)")
    if not has_labels:
        examples = [dataclasses.replace(ex, label=None) for ex in examples]
    trunc = Truncation()
    enc = encoder.encode(examples, trunc)
    msg = trunc.report("inputs")
    if msg:
        log(msg)
    preds = predict_encoded(model, enc, task, batch_size)
    results = []
    for ex, p in zip(examples, preds):
        if task == "tag":
            tags = [labels[t] for t in p] + ["O"] * (len(ex.words) - len(p))
            results.append(tags)
            for w, t in zip(ex.words, tags):
                print(f"{w}\t{t}", file=out)
            print(file=out)
        elif task == "choice":
            k, probs = p
            results.append(k)
            print(f"{k + 1}\t{probs[k]:.4f}\t{ex.choices[k]}", file=out)
        else:
            k, probs = p
            results.append(labels[k])
            shown = ex.text if task == "classify" else f"{ex.text}\t{ex.text2}"
            print(f"{labels[k]}\t{probs[k]:.4f}\t{shown}", file=out)
    metrics = None
    if has_labels:
        if task == "tag":
            metrics = entity_prf([list(ex.label) for ex in examples], results)
        else:
            metrics = {"accuracy": accuracy([ex.label for ex in examples], results)}
        summary = (f"entity F1 {metrics['f1']:.4f}" if task == "tag"
                   else f"accuracy {metrics['accuracy']:.4f}")
        log(f"{len(examples)} labelled examples in {input_path}: {summary}")
    return {"predictions": results, "metrics": metrics, "task": task}
