"""The paper's Table 5 in miniature: does generative pretraining help, and does the auxiliary
LM objective?

For each task, 3 seeds each of
  (a) pretrained + auxiliary LM   (lm_coef 0.5, GPT-1's fine-tuning)
  (b) pretrained, no auxiliary LM (lm_coef 0)
  (c) no pretraining              (the same architecture and tokenizer, random weights, lm_coef 0.5)
plus two non-neural baselines: the majority class and a bag-of-words logistic regression
(NumPy, trained on the same labelled examples). Tasks: Rotten Tomatoes sentiment (accuracy),
Shakespeare next-speech multiple choice (accuracy), Shakespeare character-name tagging
(entity-level F1).

The base model is pretrained here (cached in runs/, reused when its settings match) or given
with --init. Its corpus is unlabelled text from the training side of every split: the 33
training plays of Shakespeare and the Rotten Tomatoes snippets and plot synopses of the
training movies. No test-split text is ever seen, in pretraining or fine-tuning; no label is
used in pretraining.

    python benchmarks/ablation.py                 # pretrain (or reuse) + the full table
    python benchmarks/ablation.py --init runs/X   # fine-tune an existing pretrained model
    python benchmarks/ablation.py --quick         # a smoke run of a few seconds per cell
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt import tasks as T  # noqa: E402
from minigpt.training import FinetuneConfig, finetune  # noqa: E402

TASKS = {  # data set -> (task, metric name, training examples, test examples)
    "rotten_tomatoes": ("classify", "accuracy", 1200, 1000),
    "shakespeare_next_speech": ("choice", "accuracy", 600, 400),   # 4 sequences per example
    "shakespeare_names": ("tag", "f1", 800, 800),
}
CONDITIONS = {  # name -> (pretrained, lm_coef)
    "pretrained + aux LM": (True, 0.5),
    "pretrained, no aux LM": (True, 0.0),
    "no pretraining": (False, 0.5),
}

# the base model: the `tiny` preset (4 layers, width 128, 4 heads, context 64), GPT-1's
# lower-cased BPE with 500 base tokens. Why these (measured with a PyTorch twin of the model,
# 2000 steps of this corpus): this post-LN, tied-embedding model first settles on the unigram
# distribution and has to escape that plateau; with a 2000-token vocabulary it escaped after
# ~300 steps at lr 1e-3 (and not at all at 2e-3 or 3e-3, nor at width 256), while with 500
# tokens it leaves the plateau within the first 100 steps at lr 1e-3 (never at 2e-3).
BASE = dict(preset="tiny", tokenizer="bpe", bpe_vocab_size=500, steps=700, batch_size=32,
            block_size=64, lr=1e-3, warmup=100, eval_interval=100, eval_batches=4,
            ckpt_interval=100, seed=1337)
# fine-tuning: GPT-1's recipe (3 epochs, batch 32, warmup_linear 0.2%, clf dropout 0.1, lm_coef
# 0.5) except the learning rate. GPT-1's 6.25e-5 (1/4 of its pretraining peak) suits a 117M
# model fine-tuned for thousands of updates; here (~40-110 updates) 1/4 of the base model's
# peak, 2.5e-4, left the heads near chance on the *dev* split (`--dev`: examples held out of
# the training split; pretrained name tagging F1 0.4 at 2.5e-4 against 35.1 at 1e-3), so the
# rate is 1e-3, the base model's own peak, for every condition. Never chosen on the test split.
FINETUNE = dict(epochs=3, batch_size=32, warmup=0.002, clf_pdrop=0.1, lr=1e-3)


# ----------------------------------------------------------------------------- pretraining

def build_corpus(path: Path) -> None:
    """Shakespeare's training plays (scene by scene) and the training movies' Rotten Tomatoes
    text (one movie per document), documents shuffled with a fixed seed so that the last 10%
    (the pretraining validation split) holds both."""
    from minigpt.data import play_split, render_speeches, shakespeare_plays
    train_plays, _ = play_split(shakespeare_plays())
    docs = [render_speeches(scene) for p in train_plays for scene in p.scenes]
    _, rows = T.rotten_tomatoes_rows()
    allowed = set(T.rotten_tomatoes_unlabeled("train"))  # no text that a test movie also has
    by_movie = {}
    for r in rows:
        text = " ".join(r["text"].split())
        if text in allowed and not T.is_test_movie(r["movie_name"]):
            by_movie.setdefault(r["movie_name"], []).append(text)
    docs += ["\n".join(v) + "\n\n" for _, v in sorted(by_movie.items())]
    order = np.random.default_rng(0).permutation(len(docs))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(docs[i] for i in order), encoding="utf-8")


def pretrained_base(runs: Path, base: dict, log=print) -> Path:
    """The cached base model's run directory, pretraining it first when needed."""
    from minigpt.training import TrainConfig, pretrain
    key = hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:8]
    out = runs / f"ablation-base-{key}"
    state = out / "ckpt" / "state.json"
    if state.is_file() and json.loads(state.read_text()).get("step") == base["steps"]:
        log(f"base model: reusing {out} (pretrained {base['steps']} steps)")
        return out
    corpus = runs / "ablation-corpus.txt"
    build_corpus(corpus)
    log(f"base model: pretraining {out} on {corpus} ({corpus.stat().st_size / 1e6:.1f} MB)")
    t0 = time.perf_counter()
    summary = pretrain(TrainConfig(data=str(corpus), out=str(out), **base), force=True,
                       progress=sys.stderr.isatty(), log=log)
    if summary["status"] != "completed":
        raise SystemExit(f"pretraining stopped: {summary['status']}")
    log(f"base model: {summary['step']} steps in {time.perf_counter() - t0:.0f} s, train loss "
        f"{summary['loss']:.3f}, validation loss {summary['val_loss']:.3f}")
    return out


# ----------------------------------------------------------------------------- baselines

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def _bow_tokens(text: str) -> list:
    return _TOKEN.findall(text.lower())


class _Vocab:
    def __init__(self, docs, max_size=20000):
        counts = Counter(w for d in docs for w in set(d))
        self.words = [w for w, _ in counts.most_common(max_size)]
        self.index = {w: i for i, w in enumerate(self.words)}

    def bow(self, docs):
        X = np.zeros((len(docs), len(self.words)))
        for i, d in enumerate(docs):
            for w in d:
                j = self.index.get(w)
                if j is not None:
                    X[i, j] = 1.0
        return X


def _fit_softmax(score, n_params, y, l2=1e-3, steps=300, lr=0.05):
    """Minimise mean cross-entropy of softmax(score(w)) + l2 |w|^2 with Adam (full batch).
    score(w) -> (logits (N, K), a function g -> dL/dw)."""
    w = np.zeros(n_params)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(1, steps + 1):
        z, back = score(w)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g_z = p.copy()
        g_z[np.arange(len(y)), y] -= 1.0
        g = back(g_z / len(y)) + 2 * l2 * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return w


def bow_classify(train, test, labels):
    vocab = _Vocab([_bow_tokens(e.text) for e in train])
    Xtr, Xte = vocab.bow([_bow_tokens(e.text) for e in train]), vocab.bow([_bow_tokens(e.text) for e in test])
    Xtr, Xte = np.hstack([Xtr, np.ones((len(Xtr), 1))]), np.hstack([Xte, np.ones((len(Xte), 1))])
    K, D = len(labels), Xtr.shape[1]
    y = np.array([labels.index(e.label) for e in train])

    def score(w):
        W = w.reshape(D, K)
        return Xtr @ W, lambda g: (Xtr.T @ g).reshape(-1)
    W = _fit_softmax(score, D * K, y).reshape(D, K)
    pred = (Xte @ W).argmax(1)
    return {"accuracy": float(np.mean([labels[k] == e.label for k, e in zip(pred, test)]))}


def bow_choice(train, test):
    """A conditional logit over the choices: score = w . bow(answer) + u . (bow(context) *
    bow(answer)) (the second term learns which shared words matter)."""
    docs = [_bow_tokens(c) for e in train for c in (e.text,) + e.choices]
    vocab = _Vocab(docs)
    D = len(vocab.words)

    def feats(exs):
        K = len(exs[0].choices)
        C = vocab.bow([_bow_tokens(e.text) for e in exs])                       # (N, D)
        A = vocab.bow([_bow_tokens(c) for e in exs for c in e.choices])        # (N*K, D)
        A = A.reshape(len(exs), K, D)
        return np.concatenate([A, A * C[:, None, :]], axis=2)                 # (N, K, 2D)
    Ftr, Fte = feats(train), feats(test)
    y = np.array([e.label for e in train])

    def score(w):
        return Ftr @ w, lambda g: np.einsum("nk,nkd->d", g, Ftr)
    w = _fit_softmax(score, 2 * D, y)
    pred = (Fte @ w).argmax(1)
    return {"accuracy": float(np.mean([k == e.label for k, e in zip(pred, test)]))}


def _tag_features(words, i):
    w = words[i]
    f = [f"w={w.lower()}", f"cap={w[:1].isupper()}", f"allcap={w.isupper()}",
         f"first={i == 0}", "bias"]
    f.append(f"prev={words[i - 1].lower() if i else '<s>'}")
    f.append(f"next={words[i + 1].lower() if i + 1 < len(words) else '</s>'}")
    return f


def bow_tag(train, test, labels):
    """Per-word logistic regression on the word, its shape (capitalised, all capitals,
    sentence-initial) and its neighbours."""
    tr = [(_tag_features(e.words, i), labels.index(t)) for e in train
          for i, t in enumerate(e.label)]
    vocab = _Vocab([f for f, _ in tr], max_size=50000)
    X = vocab.bow([f for f, _ in tr])
    y = np.array([t for _, t in tr])
    K, D = len(labels), X.shape[1]

    def score(w):
        W = w.reshape(D, K)
        return X @ W, lambda g: (X.T @ g).reshape(-1)
    W = _fit_softmax(score, D * K, y, steps=200).reshape(D, K)
    pred = []
    for e in test:
        Xe = vocab.bow([_tag_features(e.words, i) for i in range(len(e.words))])
        pred.append([labels[k] for k in (Xe @ W).argmax(1)])
    return T.entity_prf([list(e.label) for e in test], pred)


def majority(task, train, test, labels):
    if task == "tag":
        return T.entity_prf([list(e.label) for e in test], [["O"] * len(e.words) for e in test])
    top = Counter(e.label for e in train).most_common(1)[0][0]
    return {"accuracy": float(np.mean([e.label == top for e in test]))}


def lm_zero_shot_choice(init, examples) -> float:
    """Accuracy of the pretrained LM scoring each choice by the summed log-probability of its
    tokens after the context's (no special tokens, no training): is the knowledge there?"""
    from minigpt.autograd import no_grad
    from minigpt.training import load_checkpoint
    from minigpt.functional import log_softmax
    model, tok, _ = load_checkpoint(init)
    model.eval()
    half = model.config.n_ctx // 2
    correct = 0
    with no_grad():
        for e in examples:
            ctx = tok.encode(e.text)[-half:]
            answers = [tok.encode(c)[:half] for c in e.choices]
            T_ = max(len(ctx) + len(a) for a in answers)
            idx = np.zeros((len(answers), T_), dtype=np.int64)
            mask = np.zeros_like(idx)
            for k, a in enumerate(answers):
                idx[k, :len(ctx) + len(a)] = ctx + a
                mask[k, :len(ctx) + len(a)] = 1
            lp = log_softmax(model(idx, mask)).data
            scores = [lp[k, np.arange(len(ctx) - 1, len(ctx) + len(a) - 1), a].sum()
                      for k, a in enumerate(answers)]
            correct += int(np.argmax(scores) == e.label)
    return correct / max(len(examples), 1)


# ----------------------------------------------------------------------------- the table

def fmt(values):
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", help="a pretrained run/checkpoint (default: pretrain one, cached)")
    ap.add_argument("--runs", default=str(ROOT / "runs"), help="where the base model is cached")
    ap.add_argument("--out", default=None, help="results directory (default: runs/ablation)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated data sets")
    ap.add_argument("--base-steps", type=int, default=BASE["steps"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    ap.add_argument("--dev", action="store_true",
                    help="evaluate on examples held out of the training split instead of the "
                         "test split (to check settings without looking at the test split)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    runs = Path(args.runs)
    out = Path(args.out) if args.out else runs / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.txt"
    log_file = log_path.open("w", encoding="utf-8")

    def log(msg=""):
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    started = datetime.datetime.now().astimezone()
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} "
               f"{platform.release()}, Python {platform.python_version()}, NumPy {np.__version__}")
    command = "python benchmarks/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    log(f"minigpt ablation, started {started:%Y-%m-%d %H:%M %Z}; machine: {machine}")
    log(f"command: {command.strip()}")
    if args.dev:
        log("DEV MODE: scores are on examples held out of the training split, not the test split")

    base = dict(BASE, steps=args.base_steps)
    if args.quick:
        base.update(steps=30, eval_interval=30, ckpt_interval=30)
    init = Path(args.init) if args.init else pretrained_base(runs, base, log)
    t_base = time.perf_counter() - t_start
    lr = FINETUNE["lr"]
    log(f"fine-tuning: {FINETUNE}")

    results = {}
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    for name in names:
        if name not in TASKS:
            raise SystemExit(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
        task, metric, n_train, n_test = TASKS[name]
        if args.quick:
            n_train, n_test = 64, 64
        data = T.BUILTIN[name][1]()
        if args.dev:  # held-out part of the training split: for checking settings, not reporting
            order = np.random.default_rng(1).permutation(len(data.train))
            train = [data.train[i] for i in sorted(order[:n_train])]
            test = [data.train[i] for i in sorted(order[n_train:n_train + n_test])]
        else:
            train = _subset(data.train, n_train)
            test = _subset(data.test, n_test)
        log(f"\n== {name} [{task}]: {len(train)} training / {len(test)} test examples "
            f"(fixed subsets of {len(data.train)} / {len(data.test)}); metric: {metric}")
        row = {}
        t0 = time.perf_counter()
        row["majority class"] = [majority(task, train, test, data.labels)[metric]]
        if task == "classify":
            row["bag-of-words LR"] = [bow_classify(train, test, data.labels)[metric]]
        elif task == "choice":
            row["bag-of-words LR"] = [bow_choice(train, test)[metric]]
        else:
            row["bag-of-words LR"] = [bow_tag(train, test, data.labels)[metric]]
        log(f"baselines ({time.perf_counter() - t0:.0f} s): majority {fmt(row['majority class'])}, "
            f"bag-of-words LR {fmt(row['bag-of-words LR'])}")
        if task == "choice":  # does the base LM itself know the next speech? (a diagnostic)
            zs = lm_zero_shot_choice(init, test)
            results.setdefault("diagnostics", {})[name] = {"base LM zero-shot accuracy": zs}
            log(f"diagnostic: the base LM alone, choosing the ending of highest log-probability "
                f"after the context (no fine-tuning): accuracy {100 * zs:.1f}")
        sub = dataclasses.replace(data, train=train, test=test)
        for cond, (pretrained, lm_coef) in CONDITIONS.items():
            row[cond] = []
            for seed in range(args.seeds):
                cfg = FinetuneConfig(task=task, data=name, init=str(init), out=None,
                                     lm_coef=lm_coef, seed=seed, pretrained=pretrained,
                                     **FINETUNE)
                s = finetune(cfg, progress=False, log=lambda m: None, data=sub, save=False)
                row[cond].append(s["metrics"][metric])
                log(f"  {cond:22s} seed {seed}: {metric} {100 * s['metrics'][metric]:5.1f} "
                    f"({s['step']} updates, {s['seconds']:.0f} s, last task loss "
                    f"{s['last'].get('task_loss', float('nan')):.3f})")
            log(f"  {cond:22s} {fmt(row[cond])}")
        results[name] = {"task": task, "metric": metric, "train": len(train), "test": len(test),
                         "scores": row}

    # the table
    cols = ["majority class", "bag-of-words LR"] + list(CONDITIONS)
    lines = [f"| task (metric, train/test) | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    verdicts = []
    for name, r in results.items():
        if name == "diagnostics":
            continue
        cells = [fmt(r["scores"][c]) for c in cols]
        lines.append(f"| {name} ({r['metric']}, {r['train']}/{r['test']}) | " + " | ".join(cells) + " |")
        a, c = np.array(r["scores"]["pretrained + aux LM"]), np.array(r["scores"]["no pretraining"])
        if len(a) > 1:
            gap = 100 * (a.mean() - c.mean())
            spread = 100 * (a.std(ddof=1) + c.std(ddof=1))
            ok = gap > spread
            verdicts.append(f"{name}: pretraining {'beats' if ok else 'does NOT beat'} no "
                            f"pretraining by {gap:+.1f} points (seed spread, sum of the two std: "
                            f"{spread:.1f})")
    minutes = (time.perf_counter() - t_start) / 60
    log("\n" + "\n".join(lines))
    log(f"\nmean ± std over {args.seeds} seeds (std with ddof=1), in percent; baselines are "
        f"deterministic. Base model: {init} ({t_base / 60:.1f} min to pretrain or load).")
    for v in verdicts:
        log(v)
    log(f"finished {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {minutes:.1f} min "
        f"in all; machine: {machine}")
    (out / "results.json").write_text(json.dumps({
        "started": started.isoformat(), "machine": machine, "command": command.strip(),
        "minutes": minutes, "base": str(init), "base_config": base, "finetune": FINETUNE,
        "lr": lr, "results": results, "table": lines, "verdicts": verdicts}, indent=2))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    log_file.close()
    return 0


def _subset(examples, n):
    from minigpt.training.finetune import fixed_subset as subset
    return subset(examples, n)


if __name__ == "__main__":
    sys.exit(main())
